"""pull / cached_model_path / resolve_model against a fake hub on 127.0.0.1.

The model served is the tiny qwen3 GGUF from edge_embed.testing, registered under the
catalog's repo and file names, so the code under test runs exactly as for the real files.
"""

from __future__ import annotations

import shutil
import socket
from collections import namedtuple
from pathlib import Path

import pytest
from hubserver import FakeHub, fake_hub  # noqa: F401  (fake_hub is a fixture)

from edge_embed import download
from edge_embed.catalog import CPU_DEFAULT_MODEL, DEFAULT_MODEL, CatalogEntry, get_entry
from edge_embed.download import cached_model_path, pull, resolve_model
from edge_embed.errors import EdgeEmbedError, ModelFileError, ModelNotFound
from edge_embed.runtime import hardware
from edge_embed.testing import TinyModel

SMALL = get_entry("qwen3-embedding-0.6b")


@pytest.fixture
def model_bytes(tiny_model: TinyModel) -> bytes:
    return tiny_model.path.read_bytes()


@pytest.fixture
def hub(fake_hub: FakeHub, model_bytes: bytes) -> FakeHub:
    """The fake hub serving the tiny model as the 0.6B catalog file."""
    fake_hub.add_file(SMALL.repo, SMALL.file, model_bytes)
    return fake_hub


def blobs_dir(entry: CatalogEntry) -> Path:
    return download.HubSettings.from_env().cache_dir / f"models--{entry.repo.replace('/', '--')}" / "blobs"


def partial_files(entry: CatalogEntry) -> list[Path]:
    return sorted(blobs_dir(entry).glob(f"*{download.PARTIAL_SUFFIX}"))


def test_pull_into_empty_cache_stores_the_served_file_in_the_hf_cache(hub: FakeHub, model_bytes: bytes) -> None:
    assert cached_model_path(SMALL) is None

    path = pull(SMALL, progress=False)

    assert path.read_bytes() == model_bytes
    assert path.name == SMALL.file
    assert "snapshots" in path.parts and path.is_relative_to(download.HubSettings.from_env().cache_dir)
    assert cached_model_path(SMALL) == path
    assert [r.range for r in hub.gets()] == [None]
    assert partial_files(SMALL) == []


def test_second_pull_is_a_no_op_without_any_request(hub: FakeHub) -> None:
    first = pull(SMALL, progress=False)
    hub.requests.clear()

    assert pull(SMALL, progress=False) == first
    assert hub.requests == []


def test_connection_cut_mid_transfer_resumes_with_a_range_request(hub: FakeHub, model_bytes: bytes) -> None:
    cut = len(model_bytes) // 3
    hub.cut_next_download(cut)

    path = pull(SMALL, progress=False)

    first, second = hub.gets()
    assert first.sent == cut
    resumed_at = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= cut
    assert second.status == 206 and second.sent == len(model_bytes) - resumed_at
    assert path.read_bytes() == model_bytes


def test_failed_pull_keeps_its_partial_file_and_the_next_pull_resumes_it(hub: FakeHub, model_bytes: bytes) -> None:
    cut = len(model_bytes) // 2
    hub.cut_next_download(cut, then_unavailable=True)

    with pytest.raises(EdgeEmbedError, match="HTTP 503.*resumes"):
        pull(SMALL, progress=False)
    [partial] = partial_files(SMALL)
    kept = partial.stat().st_size
    assert 0 < kept <= cut and partial.read_bytes() == model_bytes[:kept]

    hub.unavailable = False
    hub.requests.clear()
    path = pull(SMALL, progress=False)

    [resumed] = hub.gets()
    assert resumed.range == f"bytes={kept}-" and resumed.sent == len(model_bytes) - kept
    assert path.read_bytes() == model_bytes
    assert partial_files(SMALL) == []


def test_a_hub_that_ignores_range_still_yields_the_exact_file(hub: FakeHub, model_bytes: bytes) -> None:
    hub.cut_next_download(len(model_bytes) // 2, then_unavailable=True)
    with pytest.raises(EdgeEmbedError):
        pull(SMALL, progress=False)
    hub.unavailable = False
    hub.honour_range = False

    path = pull(SMALL, progress=False)

    assert hub.gets()[-1].status == 200
    assert path.read_bytes() == model_bytes


def test_offline_mode_without_the_file_is_a_clear_error_and_sends_nothing(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(EdgeEmbedError, match="HF_HUB_OFFLINE") as info:
        pull(SMALL, progress=False)

    assert "\n" not in str(info.value)
    assert hub.requests == []


def test_offline_mode_with_the_file_cached_returns_it(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull(SMALL, progress=False)
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert pull(SMALL, progress=False) == path
    assert hub.requests == []


@pytest.mark.parametrize(
    ("arrange", "expected"),
    [
        (lambda hub, data: hub.add_file(SMALL.repo, "other.gguf", data), r"not in Qwen/Qwen3-Embedding-0\.6B-GGUF"),
        (lambda hub, data: None, "not found or needs a login.*HF_TOKEN"),
        (lambda hub, data: (hub.add_file(SMALL.repo, SMALL.file, data), hub.gated.add(SMALL.repo)), "gated.*TOKEN"),
    ],
    ids=["file-404", "repo-401", "gated-403"],
)
def test_hub_refusals_become_one_line_errors_with_the_fix(
    fake_hub: FakeHub, model_bytes: bytes, arrange, expected: str
) -> None:
    arrange(fake_hub, model_bytes)

    with pytest.raises(EdgeEmbedError, match=expected) as info:
        pull(SMALL, progress=False)

    assert "\n" not in str(info.value)
    assert cached_model_path(SMALL) is None


def test_hf_token_is_sent_to_a_hub_that_requires_it(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.token = "hf_test_token"
    with pytest.raises(EdgeEmbedError, match="HF_TOKEN"):
        pull(SMALL, progress=False)

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert pull(SMALL, progress=False).is_file()
    assert hub.gets()[-1].authorization == "Bearer hf_test_token"


def test_unreachable_hub_is_a_network_error_that_says_what_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_hub: FakeHub
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")

    with pytest.raises(EdgeEmbedError, match=f"cannot reach http://127.0.0.1:{closed_port}.*connection"):
        pull(SMALL, progress=False)


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) - 1000], lambda data: b"<html>proxy login page</html>" + data[40:]],
    ids=["truncated", "not-gguf"],
)
def test_a_broken_file_from_the_hub_is_rejected_and_deleted(fake_hub: FakeHub, model_bytes: bytes, damage) -> None:
    fake_hub.add_file(SMALL.repo, SMALL.file, damage(model_bytes))

    with pytest.raises(ModelFileError, match=f"not a complete GGUF.*download {SMALL.name} again"):
        pull(SMALL, progress=False)

    assert cached_model_path(SMALL) is None
    assert list(blobs_dir(SMALL).iterdir()) == []


def test_too_little_disk_space_stops_before_downloading(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10_000, 9_000, 1_000))

    with pytest.raises(EdgeEmbedError, match="not enough disk space.*HF_HOME"):
        pull(SMALL, progress=False)

    assert hub.gets() == []


# resolve_model: catalog names, paths, EDGE_EMBED_MODEL; it never downloads.


def test_resolve_a_downloaded_catalog_name(hub: FakeHub) -> None:
    path = pull(SMALL, progress=False)

    resolved = resolve_model(SMALL.name)

    assert (resolved.path, resolved.entry, resolved.label) == (path, SMALL, SMALL.name)


def test_resolve_a_catalog_name_not_downloaded_names_the_pull_command(hub: FakeHub) -> None:
    """The library says "download NAME" (its hint's {pull}); the CLI words it as the command."""
    from edge_embed.cli.wording import cli_message

    with pytest.raises(ModelNotFound, match=f"not downloaded yet; download {SMALL.name} ") as missing:
        resolve_model(SMALL.name)
    assert (missing.value.kind, missing.value.param, missing.value.model_name) == ("not_found", "model", SMALL.name)
    assert f"run `edge-embed pull {SMALL.name}` (" in cli_message(missing.value)
    assert hub.requests == []


def test_resolve_without_spec_uses_edge_embed_model(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull(SMALL, progress=False)
    monkeypatch.setenv("EDGE_EMBED_MODEL", SMALL.name)

    assert resolve_model(None).path == path


def test_resolve_without_spec_or_env_wants_the_default_for_this_machine(hub: FakeHub, monkeypatch) -> None:
    """No GPU here: the 0.6B; a (simulated) 12 GB card that the build drives: the 4B."""
    monkeypatch.delenv("EDGE_EMBED_FAKE_GPU", raising=False)
    with pytest.raises(ModelNotFound, match=f"download {CPU_DEFAULT_MODEL} "):
        resolve_model(None)
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", "NVIDIA GeForce RTX 3060:12288:11200")
    monkeypatch.setattr(hardware, "build_supports_offload", lambda: True)
    with pytest.raises(ModelNotFound, match=f"download {DEFAULT_MODEL} "):
        resolve_model(None)


def test_resolve_a_local_gguf_path(fake_hub: FakeHub, tiny_model: TinyModel, monkeypatch) -> None:
    resolved = resolve_model(str(tiny_model.path))
    assert (resolved.path, resolved.entry, resolved.label) == (tiny_model.path.resolve(), None, tiny_model.path.name)

    monkeypatch.setenv("EDGE_EMBED_MODEL", str(tiny_model.path))
    assert resolve_model(None).path == tiny_model.path.resolve()
    assert fake_hub.requests == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "not found"), (b"not a model at all", "not a GGUF"), ("truncated", "truncated")],
)
def test_resolve_a_bad_path_is_a_model_file_error(tmp_path: Path, tiny_model: TinyModel, content, expected) -> None:
    path = tmp_path / "model.gguf"
    if content == "truncated":
        path.write_bytes(tiny_model.path.read_bytes()[:-1000])
    elif content is not None:
        path.write_bytes(content)

    with pytest.raises(ModelFileError, match=expected):
        resolve_model(str(path))


def test_resolve_an_unknown_name_lists_the_catalog(fake_hub: FakeHub) -> None:
    with pytest.raises(EdgeEmbedError, match="unknown model 'qwen-typo'.*qwen3-embedding-0.6b") as info:
        resolve_model("qwen-typo")
    assert not isinstance(info.value, (ModelNotFound, ModelFileError))


def test_resolve_without_spec_follows_the_callers_cpu_setting(hub: FakeHub, monkeypatch) -> None:
    """`embed --cpu` on a machine whose GPU takes the 4B whole: the CPU's default, the 0.6B."""
    from edge_embed.runtime.plan import RuntimeSettings

    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", "NVIDIA GeForce RTX 3060:12288:11200")
    monkeypatch.setattr(hardware, "build_supports_offload", lambda: True)
    with pytest.raises(ModelNotFound, match=f"download {CPU_DEFAULT_MODEL} "):
        resolve_model(None, RuntimeSettings(force_cpu=True))
