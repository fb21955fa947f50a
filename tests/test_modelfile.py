"""GGUF header inspection: shapes, flags, broken files, and the on-disk header cache."""

from __future__ import annotations

import os

import pytest

from edge_embed import modelfile
from edge_embed.errors import ModelFileError
from edge_embed.modelfile import read_model_info


def test_reads_shape_and_flags(tiny_model, tiny_model_no_eos):
    info = read_model_info(tiny_model.path)
    assert (info.architecture, info.n_layer, info.n_embd, info.n_head, info.n_head_kv) == ("qwen3", 2, 64, 4, 2)
    assert (info.head_dim, info.n_ff, info.n_vocab) == (16, 128, 258)
    assert info.pooling == "last" and info.add_eos_token is True and info.is_qwen3_embedding
    assert len(info.layer_bytes) == 2 and all(info.layer_bytes)
    assert info.output_bytes == 0, "output_norm is not an output head"
    assert read_model_info(tiny_model_no_eos.path).add_eos_token is None


def test_header_cache_survives_a_new_process_and_follows_changes(tiny_model, tmp_path, monkeypatch):
    copy = tmp_path / "model.gguf"
    copy.write_bytes(tiny_model.path.read_bytes())
    first = read_model_info(copy)
    modelfile._read_model_info_cached.cache_clear()
    monkeypatch.setattr(modelfile, "_parse_model_info", lambda *a: pytest.fail("parsed again despite the cache"))
    assert read_model_info(copy) == first
    modelfile._read_model_info_cached.cache_clear()
    os.utime(copy, ns=(1, 1))  # a changed file must be parsed again
    with pytest.raises(pytest.fail.Exception):
        read_model_info(copy)


def test_truncated_file_is_reported_with_the_fix(tiny_model, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.path.read_bytes()[:-4096])
    with pytest.raises(ModelFileError, match="truncated.*download it again"):
        read_model_info(cut)


@pytest.mark.parametrize("content", [b"", b"GGU", b"PK\x03\x04 a zip file", b"GGUF" + b"\x00" * 8])
def test_foreign_or_broken_files(tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError):
        read_model_info(bad)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        read_model_info(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="not a file"):
        read_model_info(tmp_path)
