"""Every GPU llama.cpp drives is planned for, and a new index gets the model that fits.

Devices come from llama.cpp's own device list: this CPU-only build reports its CPU alone
(checked for real); CUDA, Metal, Vulkan, ROCm and SYCL machines are simulated as the
device lists their builds report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_embed.catalog import CPU_DEFAULT_MODEL, DEFAULT_MODEL
from edge_embed.cli import cli
from edge_embed.runtime import hardware
from edge_embed.runtime.choice import choose_default_model
from edge_embed.runtime.hardware import DeviceInfo, GpuInfo, GpuSurvey
from edge_embed.runtime.plan import RuntimeSettings, catalog_shape, make_plan
from edge_embed.catalog import get_entry

GIB = 1 << 30
CPU = DeviceInfo("CPU", "AMD Ryzen 7 5800X", "cpu", "CPU", 32 * GIB, 20 * GIB)


def device(name: str, description: str, kind: str, backend: str, total_gib: float, free_gib: float) -> DeviceInfo:
    return DeviceInfo(name, description, kind, backend, int(total_gib * GIB), int(free_gib * GIB))


SIMULATED = {
    "cuda": [device("CUDA0", "NVIDIA GeForce RTX 3060", "gpu", "CUDA", 12, 11), CPU],
    "metal": [device("MTL0", "Apple M2 Pro", "gpu", "MTL", 21.3, 21.3), CPU],
    "vulkan": [
        device("Vulkan0", "AMD Radeon RX 7800 XT (RADV NAVI32)", "gpu", "Vulkan", 16, 15.5),
        device("Vulkan1", "AMD Radeon Graphics (RADV RAPHAEL_MENDOCINO)", "igpu", "Vulkan", 8, 7.5),
        CPU,
    ],
    "rocm": [device("ROCm0", "AMD Radeon RX 7900 XTX", "gpu", "ROCm", 24, 23.5), CPU],
    "sycl": [device("SYCL0", "Intel(R) Arc(TM) A770 Graphics", "gpu", "SYCL", 16, 15.9), CPU],
    "laptop-igpu": [device("Vulkan0", "Intel(R) Iris(R) Xe Graphics", "igpu", "Vulkan", 7.6, 6), CPU],
}


def test_this_cpu_only_build_reports_its_cpu_device_alone() -> None:
    if hardware.build_supports_offload():
        pytest.skip("a GPU build: it reports its GPUs too (scripts/gpu_check.sh checks those)")
    devices = hardware.llama_devices()
    assert [(d.kind, d.backend) for d in devices] == [("cpu", "CPU")]
    assert devices[0].total_bytes > 0 and devices[0].name
    assert hardware.gpus_from_devices(devices) == []


@pytest.mark.parametrize(
    ("machine", "name", "backend", "unified"),
    [
        ("cuda", "NVIDIA GeForce RTX 3060", "CUDA", False),
        ("metal", "Apple M2 Pro", "MTL", True),
        ("vulkan", "AMD Radeon RX 7800 XT (RADV NAVI32)", "Vulkan", False),
        ("rocm", "AMD Radeon RX 7900 XTX", "ROCm", False),
        ("sycl", "Intel(R) Arc(TM) A770 Graphics", "SYCL", False),
        ("laptop-igpu", "Intel(R) Iris(R) Xe Graphics", "Vulkan", True),
    ],
)
def test_each_backend_gives_a_gpu_the_planner_uses(machine: str, name: str, backend: str, unified: bool) -> None:
    gpus = hardware.gpus_from_devices(SIMULATED[machine])
    assert len(gpus) == 1, "an integrated GPU counts only when there is no dedicated one"
    gpu = gpus[0]
    assert (gpu.index, gpu.name, gpu.backend, gpu.unified_memory) == (0, name, backend, unified)
    plan = make_plan(catalog_shape(get_entry(DEFAULT_MODEL)), RuntimeSettings(), gpu, True, cores=8)
    assert plan.device == backend.lower() and plan.output_on_gpu, plan.notes


def test_no_driven_gpu_but_an_nvidia_card_says_rebuild_with_cuda() -> None:
    card = GpuInfo(0, "NVIDIA GeForce RTX 3060", 12 * GIB, 11 * GIB)
    survey = GpuSurvey(driven=[], undriven=[card], offload_supported=False)
    plan = make_plan(catalog_shape(get_entry(DEFAULT_MODEL)), RuntimeSettings(), *survey.planned(), cores=2)
    assert plan.device == "cpu"
    assert str(plan.notes[0]).startswith("NVIDIA GeForce RTX 3060 found, but this llama-cpp-python build cannot offload")
    assert "-DGGML_CUDA=on" in str(plan.notes[0])


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("cuda", DEFAULT_MODEL), ("metal", DEFAULT_MODEL), ("none", CPU_DEFAULT_MODEL), ("tiny-gpu", CPU_DEFAULT_MODEL)],
)
def test_the_default_model_is_the_4b_only_when_it_fits_whole_on_a_gpu(monkeypatch, machine: str, expected: str) -> None:
    lists = {**SIMULATED, "none": [CPU], "tiny-gpu": [device("CUDA0", "NVIDIA GeForce GT 1030", "gpu", "CUDA", 2, 1.8), CPU]}
    monkeypatch.delenv("EDGE_EMBED_FAKE_GPU", raising=False)
    monkeypatch.setattr(hardware, "llama_devices", lambda: lists[machine])
    monkeypatch.setattr(hardware, "undriven_nvidia_gpus", lambda: [])
    choice = choose_default_model()
    assert choice.name == expected
    if expected == CPU_DEFAULT_MODEL:
        assert str(choice.reason).startswith(f"default model {CPU_DEFAULT_MODEL}, not {DEFAULT_MODEL}: ")
    else:
        assert "fits whole on" in str(choice.reason)


def test_index_without_a_model_or_gpu_picks_the_small_model_and_says_so(tmp_path: Path, monkeypatch) -> None:
    """The catalog model is not downloaded in tests: the choice shows in the pull it asks for."""
    for name in ("EDGE_EMBED_MODEL", "EDGE_EMBED_FAKE_GPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("hello\n")
    result = CliRunner().invoke(cli, ["index", str(notes), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"default model {CPU_DEFAULT_MODEL}, not {DEFAULT_MODEL}: no GPU that this llama.cpp build")
    assert f"`edge-embed pull {CPU_DEFAULT_MODEL}`" in result.stderr
    assert not (tmp_path / "x.db").exists(), "nothing is created before the model is there"


def test_an_existing_index_keeps_its_model_and_says_no_default(tmp_path: Path, tiny_model, monkeypatch) -> None:
    monkeypatch.delenv("EDGE_EMBED_MODEL", raising=False)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("hello there\n")
    db = str(tmp_path / "x.db")
    runner = CliRunner()
    first = runner.invoke(cli, ["index", str(notes), "--db", db, "--model", str(tiny_model.path), "--threads", "1"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli, ["index", str(notes), "--db", db, "--threads", "1"])
    assert again.exit_code == 0, again.output
    assert "default model" not in again.stderr
