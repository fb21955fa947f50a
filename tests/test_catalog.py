"""The shipped catalog's content, and how the loader treats a malformed catalog."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge_embed import catalog
from edge_embed.catalog import DEFAULT_MODEL, get_entry, load_catalog
from edge_embed.errors import EdgeEmbedError
from edge_embed.testing import SHAPE_TRUE_CONFIGS

# (name, repo, file, quant, dims) as published on the hub; the 0.6B repo has no Q4_K_M.
EXPECTED_FILES = [
    ("qwen3-embedding-4b", "Qwen/Qwen3-Embedding-4B-GGUF", "Qwen3-Embedding-4B-Q4_K_M.gguf", "Q4_K_M", 2560),
    ("qwen3-embedding-4b:q8_0", "Qwen/Qwen3-Embedding-4B-GGUF", "Qwen3-Embedding-4B-Q8_0.gguf", "Q8_0", 2560),
    ("qwen3-embedding-0.6b", "Qwen/Qwen3-Embedding-0.6B-GGUF", "Qwen3-Embedding-0.6B-Q8_0.gguf", "Q8_0", 1024),
    ("qwen3-embedding-8b", "Qwen/Qwen3-Embedding-8B-GGUF", "Qwen3-Embedding-8B-Q4_K_M.gguf", "Q4_K_M", 4096),
    ("qwen3-reranker-0.6b", "ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF", "qwen3-reranker-0.6b-q8_0.gguf", "Q8_0", 1024),
]
SHAPE_OF = {"qwen3-embedding-0.6b": "0.6b", "qwen3-embedding-4b": "4b", "qwen3-embedding-4b:q8_0": "4b",
            "qwen3-embedding-8b": "8b", "qwen3-reranker-0.6b": "0.6b"}  # fmt: skip
# Parameters per model (hub model cards) and bits per weight of each llama.cpp quant, to
# check that the approximate sizes are the right order of magnitude.
PARAMS = {"0.6b": 0.6e9, "4b": 4.0e9, "8b": 7.6e9}
BITS_PER_WEIGHT = {"Q8_0": 8.5, "Q4_K_M": 4.85}


def test_default_is_the_4b_q4_k_m() -> None:
    assert DEFAULT_MODEL == "qwen3-embedding-4b"
    assert get_entry(DEFAULT_MODEL).quant == "Q4_K_M"


def test_the_reranker_is_the_ggml_org_conversion_and_never_the_default() -> None:
    """ggml-org's file carries cls.output.weight; only it scores through llama.cpp's RANK pooling."""
    assert catalog.DEFAULT_RERANKER == "qwen3-reranker-0.6b"
    assert [e.name for e in catalog.reranker_entries()] == ["qwen3-reranker-0.6b"]
    assert get_entry(DEFAULT_MODEL).kind == "embedding"


def test_catalog_names_the_published_files() -> None:
    found = [(e.name, e.repo, e.file, e.quant, e.dims) for e in load_catalog()]
    assert found == EXPECTED_FILES


@pytest.mark.parametrize("entry", load_catalog(), ids=lambda e: e.name)
def test_entry_shape_matches_the_shape_true_test_models(entry: catalog.CatalogEntry) -> None:
    """The planner sizes models from these numbers before download; the benchmark kit builds files with them."""
    config = SHAPE_TRUE_CONFIGS[SHAPE_OF[entry.name]]
    shape = (entry.layers, entry.hidden, entry.heads, entry.kv_heads, entry.head_dim, entry.ff, entry.context)
    expected = (config.n_layer, config.n_embd, config.n_head, config.n_head_kv, config.head_dim, config.n_ff,
                config.context_length)  # fmt: skip
    assert shape == expected
    assert entry.dims == entry.hidden and entry.min_dims == 32 <= entry.dims


@pytest.mark.parametrize("entry", load_catalog(), ids=lambda e: e.name)
def test_approximate_size_fits_parameters_times_quant_bits(entry: catalog.CatalogEntry) -> None:
    estimate = PARAMS[SHAPE_OF[entry.name]] * BITS_PER_WEIGHT[entry.quant] / 8
    assert 0.75 < entry.approx_size_bytes / estimate < 1.33
    assert entry.approx_size.startswith("~") and entry.approx_size.endswith(" GB")


def test_every_entry_carries_the_qwen3_query_instruction() -> None:
    for entry in load_catalog():
        assert entry.query_instruction == (
            "Given a web search query, retrieve relevant passages that answer the query"
        )
        assert entry.description and "\n" not in entry.description


def test_get_entry_is_case_insensitive_and_rejects_unknown_names_listing_the_known_ones() -> None:
    assert get_entry("Qwen3-Embedding-0.6B") is get_entry("qwen3-embedding-0.6b")
    with pytest.raises(EdgeEmbedError) as info:
        get_entry("qwen3-embedding-1b")
    message = str(info.value)
    assert "unknown model 'qwen3-embedding-1b'" in message
    assert all(e.name in message for e in load_catalog())


def test_load_catalog_returns_a_copy() -> None:
    entries = load_catalog()
    entries.clear()
    assert len(load_catalog()) == len(EXPECTED_FILES)


VALID_MODEL = """
[[model]]
name = "m"
description = "d"
repo = "o/r"
file = "f.gguf"
quant = "Q8_0"
approx_size_bytes = 1
dims = 8
layers = 1
hidden = 8
heads = 2
ff = 16
"""
DEFAULTS = """
[defaults]
min_dims = 4
context = 64
query_instruction = "q"
kv_heads = 1
head_dim = 4
"""


@pytest.fixture
def catalog_text(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Replace the shipped TOML with the text a test puts in the yielded list."""
    text: list[str] = []
    monkeypatch.setattr(catalog, "_catalog_text", lambda: text[0])
    catalog._read_catalog.cache_clear()
    yield text
    catalog._read_catalog.cache_clear()


def test_defaults_apply_unless_an_entry_overrides_them(catalog_text: list[str]) -> None:
    catalog_text.append('default = "m"\ncpu_default = "m"\n' + DEFAULTS + VALID_MODEL + 'context = 128\n')

    [entry] = load_catalog()

    assert (entry.min_dims, entry.kv_heads, entry.context) == (4, 1, 128)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('default = "m"\n' + VALID_MODEL, r"model 'm' has missing keys \['context', 'head_dim'"),
        ('default = "m"\n' + DEFAULTS + VALID_MODEL + "colour = 1\n", r"unknown keys \['colour'\]"),
        ('default = "x"\ncpu_default = "m"\n' + DEFAULTS + VALID_MODEL, "default model 'x' is not in the catalog"),
        ('default = "m"\n' + DEFAULTS + VALID_MODEL + VALID_MODEL, "lists a model name twice"),
        ('default = "m"\ncpu_default = "y"\n' + DEFAULTS + VALID_MODEL, "cpu_default model 'y' is not in the catalog"),
    ],
    ids=["missing-key", "unknown-key", "bad-default", "duplicate", "bad-cpu-default"],
)
def test_a_malformed_catalog_is_reported_by_name(catalog_text: list[str], text: str, expected: str) -> None:
    catalog_text.append(text)
    with pytest.raises(EdgeEmbedError, match=expected):
        load_catalog()


def test_chunking_is_per_model_family_with_its_reason() -> None:
    bert, other = catalog.chunking_for("bert"), catalog.chunking_for("qwen3")
    assert (bert.chunk_tokens, bert.overlap) == (256, 25)
    assert (other.chunk_tokens, other.overlap) == (512, 51)
    assert catalog.chunking_for("unknown-arch") == other
    assert "256 tokens" in bert.reason and "random" in other.reason, "each default says why"
    assert catalog.chunking_summary("chunk_tokens") == "256 for BERT-family models, else 512"


def test_a_catalog_without_chunking_is_an_error_naming_the_table(catalog_text: list[str]) -> None:
    catalog_text.append('default = "m"\n' + DEFAULTS + VALID_MODEL)
    catalog._read_chunking.cache_clear()
    try:
        with pytest.raises(EdgeEmbedError, match="chunking"):
            catalog.chunking_for("bert")
    finally:
        catalog._read_chunking.cache_clear()
