"""``edge-embed doctor`` through the real CLI: CPU plan here, CUDA plan on a simulated card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from huggingface_hub.file_download import repo_folder_name

from edge_embed.catalog import get_entry
from edge_embed.cli import cli
from edge_embed.runtime import hardware
from edge_embed.testing import write_tiny_qwen3, write_tiny_qwen3_reranker

RTX_3060 = "NVIDIA GeForce RTX 3060:12288:11200"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model cache, no model/CPU variables, and no GPU visible to CUDA."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for name in ("EDGE_EMBED_MODEL", "EDGE_EMBED_FAKE_GPU", "EDGE_EMBED_CPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return cache


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 12 GB card and a build that says it can offload to it."""
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", RTX_3060)
    monkeypatch.setattr(hardware, "build_supports_offload", lambda: True)


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["doctor", *args])
    assert result.exit_code == 0, result.output
    return result


def run_json(*args: str) -> dict:
    return json.loads(run(*args, "--json").stdout)


def put_in_hf_cache(cache: Path, model_name: str, source: Path) -> Path:
    """Lay a file out the way huggingface_hub caches a download of the catalog entry."""
    entry = get_entry(model_name)
    repo = cache / repo_folder_name(repo_id=entry.repo, repo_type="model")
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    target = repo / "snapshots" / commit / entry.file
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    return target


def test_doctor_without_gpu_picks_the_small_model_plans_the_cpu_and_says_how_to_get_it() -> None:
    text = run().stdout
    assert "GPUs        none that this llama.cpp build can drive" in text
    assert "GPU offload: " in text
    assert (
        "model       default model qwen3-embedding-0.6b, not qwen3-embedding-4b: "
        "no GPU that this llama.cpp build can drive;" in text
    )
    assert "qwen3-embedding-0.6b: not downloaded yet" in text
    assert "`edge-embed pull qwen3-embedding-0.6b` fetches it" in text
    assert "device cpu, layers on GPU 0/28" in text
    assert "no catalog model yet" in text


def test_doctor_lists_the_devices_llama_cpp_reports() -> None:
    """This CPU-only build reports its CPU device alone, as llama.cpp names it."""
    report = run_json()
    assert [(d["kind"], d["backend"]) for d in report["devices"]] == [("cpu", "CPU")]
    assert report["devices"][0]["total_bytes"] > 0
    assert "\ndevices     CPU cpu " in run().stdout


def test_doctor_names_the_4b_and_its_cpu_speed_when_asked_for_it() -> None:
    text = run("--model", "qwen3-embedding-4b").stdout
    assert "qwen3-embedding-4b: not downloaded yet" in text and "default model" not in text
    assert "device cpu, layers on GPU 0/36" in text
    assert "qwen3-embedding-0.6b is ~7x faster" in text
    assert "sqlite-vec  v0." in text and "loads" in text


def test_doctor_json_without_gpu() -> None:
    report = run_json()
    assert report["gpus"] == [] and report["gpu_error"] is None
    assert isinstance(report["llama_cpp"]["gpu_offload"], bool)
    assert report["model"]["downloaded"] is False
    assert report["model"]["planned_from"] == "catalog estimate"
    assert report["model"]["name"] == "qwen3-embedding-0.6b" and "not qwen3-embedding-4b" in report["model"]["choice"]
    plan = report["plan"]
    assert plan["device"] == "cpu" and plan["n_gpu_layers"] == 0 and plan["n_layer"] == 28
    assert plan["n_ubatch"] <= plan["n_batch"] <= plan["n_ctx"] == 8192
    assert report["sqlite_vec"]["ok"] is True and report["sqlite_vec"]["version"].startswith("v")


def test_doctor_plans_the_4b_fully_on_a_12_gb_card(fake_cuda: None) -> None:
    report = run_json()
    assert report["gpus"][0]["name"] == "NVIDIA GeForce RTX 3060"
    plan = report["plan"]
    assert plan["device"] == "cuda" and plan["gpu"]["name"] == "NVIDIA GeForce RTX 3060"
    assert plan["n_gpu_layers"] == 37 and plan["output_on_gpu"] and plan["flash_attn"]
    assert plan["expected_vram"] + plan["headroom"] <= 11200 << 20
    text = run().stdout
    assert "model       default model qwen3-embedding-4b: it fits whole on NVIDIA GeForce RTX 3060" in text
    assert "#0 NVIDIA GeForce RTX 3060 (CUDA): 10.9 GiB free of 12.0 GiB" in text
    assert "device cuda (NVIDIA GeForce RTX 3060), layers on GPU 36/36 + output head" in text
    assert "flash attention on" in text
    assert "expected VRAM " in text and "KV cache 1.1 GiB" in text


def test_doctor_passes_the_runtime_options_to_the_plan(fake_cuda: None) -> None:
    threads = os.cpu_count() or 1  # --threads is bounded by the machine's logical CPUs
    plan = run_json("--gpu-layers", "5", "--ctx", "1024", "--batch", "64", "--threads", str(threads))["plan"]
    assert (plan["n_gpu_layers"], plan["n_ctx"], plan["n_batch"], plan["n_ubatch"], plan["n_threads"]) == (
        5,
        1024,
        64,
        64,
        threads,
    )
    assert run_json("--cpu")["plan"]["device"] == "cpu"


def test_edge_embed_cpu_forces_the_cpu(fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_CPU", "1")
    text = run().stdout
    assert "device cpu" in text and "CPU forced" in text


def test_doctor_plans_a_downloaded_model_from_its_file(isolated: Path, tmp_path: Path, fake_cuda: None) -> None:
    tiny = write_tiny_qwen3(tmp_path / "tiny.gguf")
    cached = put_in_hf_cache(isolated, "qwen3-embedding-0.6b", tiny.path)
    report = run_json("--model", "qwen3-embedding-0.6b")
    model = report["model"]
    assert model["downloaded"] is True and model["planned_from"] == "file header"
    assert (model["layers"], model["dims"], model["pooling"]) == (2, 64, "last")
    assert Path(model["path"]) == cached.resolve()
    assert report["plan"]["n_layer"] == 2 and report["plan"]["n_ctx"] == 4096
    assert report["cached_models"] == [
        {"name": "qwen3-embedding-0.6b", "path": str(cached), "size_bytes": cached.stat().st_size}
    ]
    assert f"qwen3-embedding-0.6b: {cached}" in run().stdout  # listed even when another model is selected


def test_doctor_accepts_a_gguf_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = write_tiny_qwen3(tmp_path / "my-model.gguf")
    monkeypatch.setenv("EDGE_EMBED_MODEL", str(tiny.path))
    text = run().stdout
    assert f"my-model.gguf: {tiny.path}" in text
    assert "2 layers, 64 dims, pooling last" in text
    assert "device cpu, layers on GPU 0/2" in text


def test_doctor_reports_problems_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite_vec

    def broken_load(connection) -> None:
        raise OSError("vec0.so: cannot open shared object file")

    monkeypatch.setattr(sqlite_vec, "load", broken_load)
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", "RTX 3060")
    text = run("--model", "no-such-model").stdout
    assert 'EDGE_EMBED_FAKE_GPU="RTX 3060" is not "name:total_mib:free_mib"' in text
    assert "no-such-model: unknown model 'no-such-model'" in text
    assert "plan        none (no usable model)" in text
    assert "sqlite-vec  does not load: OSError: vec0.so: cannot open shared object file" in text


def test_a_missing_gguf_path_is_reported() -> None:
    report = run_json("--model", "/nonexistent/model.gguf")
    assert "not found" in report["model"]["error"]
    assert report["plan"] is None


def test_a_chat_model_is_reported_as_not_an_embedding_model(tiny_chat_model) -> None:
    report = run_json("--model", str(tiny_chat_model.path))
    assert "not an embedding model: its pooling is NONE" in report["model"]["error"]
    assert report["plan"] is None


def test_doctor_says_reranking_is_off_on_the_cpu() -> None:
    text = run().stdout
    assert "rerank      off: the reranker would run on the CPU (no GPU that this llama.cpp build can drive" in text
    assert "after `edge-embed pull qwen3-reranker-0.6b`, --rerank uses it" in text


def test_doctor_says_reranking_is_on_when_the_reranker_fits_the_gpu(
    fake_cuda, isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "rerank      off: qwen3-reranker-0.6b is not downloaded; `edge-embed pull" in run().stdout
    put_in_hf_cache(isolated, "qwen3-reranker-0.6b", write_tiny_qwen3_reranker(tmp_path / "r.gguf").path)
    assert "rerank      on: qwen3-reranker-0.6b fits whole on the GPU (NVIDIA GeForce RTX 3060)" in run().stdout
    assert run_json()["rerank"]["default"] is True


def test_a_malformed_fake_gpu_without_a_model_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choosing the default model plans for the GPU: a bad EDGE_EMBED_FAKE_GPU made doctor
    itself exit with that error and no report."""
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", "RTX 3060")
    text = run().stdout
    assert 'EDGE_EMBED_FAKE_GPU="RTX 3060" is not "name:total_mib:free_mib"' in text
    assert "model       default model qwen3-embedding-0.6b: no GPU plan (" in text
