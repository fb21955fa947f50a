"""The GPU offload planner and hardware detection, with simulated cards.

Shapes are the real Qwen3-Embedding architectures with realistic file sizes; cards are
the consumer sizes the project targets (12 GB RTX 3060 class, 8 GB, 6 GB, 2 GB, none),
with a little VRAM already taken by the desktop as on a real machine.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from edge_embed.cli.wording import cli_text
from edge_embed.errors import EdgeEmbedError
from edge_embed.modelfile import read_model_info
from edge_embed.runtime import hardware, plan
from edge_embed.runtime.hardware import MIB, GpuInfo
from edge_embed.runtime.plan import (
    ModelShape,
    RuntimeSettings,
    compute_buffer_bytes,
    make_plan,
    padded_ctx,
    vram_use,
)
from edge_embed.testing import write_tiny_qwen3


def notes_of(p: plan.Plan) -> list[str]:
    """A plan's notes as the CLI says them (doctor): each face words them (errors.Phrase)."""
    return [cli_text(note) for note in p.notes]

GIB = 1 << 30
SHAPES = {
    "0.6b": ModelShape.estimated(28, 1024, 16, 8, 128, 3072, 639_000_000, 32768),
    "4b": ModelShape.estimated(36, 2560, 32, 8, 128, 9728, 2_500_000_000, 32768),
    "8b": ModelShape.estimated(36, 4096, 32, 8, 128, 12288, 4_700_000_000, 32768),
}
CARDS = {
    "12gb": GpuInfo(0, "NVIDIA GeForce RTX 3060", 12288 * MIB, 11500 * MIB),
    "8gb": GpuInfo(0, "NVIDIA GeForce RTX 3070", 8192 * MIB, 7600 * MIB),
    "6gb": GpuInfo(0, "NVIDIA GeForce RTX 2060", 6144 * MIB, 5600 * MIB),
    "2gb": GpuInfo(0, "NVIDIA GeForce GT 1030", 2048 * MIB, 1800 * MIB),
}
AUTO = RuntimeSettings()


def auto_plan(model: str, card: str | None, cores: int = 2) -> plan.Plan:
    return make_plan(SHAPES[model], AUTO, CARDS[card] if card else None, True, cores=cores)


def fits(shape: ModelShape, p: plan.Plan, n_gpu_layers: int) -> bool:
    """Whether ``n_gpu_layers`` would fit the card under the plan's own context and headroom."""
    assert p.gpu is not None
    need = vram_use(shape, n_gpu_layers, p.n_ctx, p.n_ubatch).total
    return need + p.headroom <= p.gpu.free_bytes


# --- the target hardware ---------------------------------------------------------------


@pytest.mark.parametrize("card", ["12gb", "8gb", "6gb"])
def test_4b_q4_k_m_runs_entirely_on_12_8_and_6_gb_cards(card: str) -> None:
    p = auto_plan("4b", card)
    assert p.device == "cuda"
    assert p.n_gpu_layers == 37 and p.gpu_blocks == 36 and p.output_on_gpu
    assert p.n_ctx == 8192
    assert p.flash_attn


def test_4b_leaves_most_of_a_12_gb_card_free() -> None:
    p = auto_plan("4b", "12gb")
    assert p.expected_vram < 5 * GIB
    assert CARDS["12gb"].free_bytes - p.expected_vram > 6 * GIB
    assert "to spare" in notes_of(p)[0]


def test_8b_is_full_on_12_gb_and_partial_on_6_gb() -> None:
    full = auto_plan("8b", "12gb")
    assert full.device == "cuda" and full.output_on_gpu
    partial = auto_plan("8b", "6gb")
    assert partial.device == "cuda"
    assert 0 < partial.n_gpu_layers < 36 and not partial.output_on_gpu
    assert f"{partial.n_gpu_layers} of 36 layers" in notes_of(partial)[0]


@pytest.mark.parametrize("model", sorted(SHAPES))
@pytest.mark.parametrize("card", sorted(CARDS))
def test_automatic_plans_never_exceed_free_vram_and_use_as_much_as_fits(model: str, card: str) -> None:
    """The 2 GB card included: partial or CPU, whatever the arithmetic says, but maximal."""
    shape, p = SHAPES[model], auto_plan(model, card)
    gpu = CARDS[card]
    if p.device == "cpu":
        assert p.expected_vram == 0 and p.n_gpu_layers == 0
        assert not fits(shape, make_plan(shape, RuntimeSettings(gpu_layers=1), gpu, True, cores=2), 1)
        assert "not even one layer fits" in notes_of(p)[0]
        return
    assert p.expected_vram + p.headroom <= gpu.free_bytes
    assert p.expected_vram == p.weights_vram + p.kv_vram + p.compute_vram + p.cuda_overhead
    assert p.headroom >= max(gpu.free_bytes // 10, 512 * MIB)
    if not p.output_on_gpu:
        assert not fits(shape, p, p.n_gpu_layers + 1)


def test_a_2_gb_card_cannot_hold_the_whole_4b_model() -> None:
    p = auto_plan("4b", "2gb")
    assert not p.output_on_gpu
    assert p.device == "cpu" or p.n_gpu_layers < 36


@pytest.mark.parametrize("model", sorted(SHAPES))
@pytest.mark.parametrize("card", [*sorted(CARDS), None])
def test_batch_sizes_are_consistent(model: str, card: str | None) -> None:
    p = auto_plan(model, card)
    assert 1 <= p.n_ubatch <= p.n_batch <= p.n_ctx
    assert 1 <= p.n_seq_max <= min(p.n_batch, 256)
    assert p.flash_attn == (p.device == "cuda")


# --- CPU fallback ------------------------------------------------------------------------


def test_no_gpu_runs_the_4b_on_the_cpu_and_points_to_the_small_model() -> None:
    p = auto_plan("4b", None)
    assert p.device == "cpu" and p.gpu is None and p.n_gpu_layers == 0
    assert p.expected_vram == p.weights_vram == p.kv_vram == 0
    assert notes_of(p)[0] == "no GPU that this llama.cpp build can drive"
    speed = notes_of(p)[-1]
    assert "roughly" in speed and "tokens/s" in speed
    assert "qwen3-embedding-0.6b is ~7x faster (--model qwen3-embedding-0.6b)" in speed


def test_cpu_speed_estimate_matches_the_measurements_and_scales_with_cores() -> None:
    """Measured on 2 cores: 0.6B Q8_0 ~100 tokens/s, the 4B about 7x slower."""
    small = plan.cpu_tokens_per_second(SHAPES["0.6b"], 2)
    large = plan.cpu_tokens_per_second(SHAPES["4b"], 2)
    assert 80 <= small <= 120
    assert 5 <= small / large <= 9
    assert plan.cpu_tokens_per_second(SHAPES["4b"], 8) == pytest.approx(4 * large)


def test_the_small_model_gets_no_hint_to_use_itself() -> None:
    p = auto_plan("0.6b", None)
    assert "faster (--model" not in " ".join(notes_of(p))


def test_a_build_without_gpu_support_says_how_to_rebuild() -> None:
    p = make_plan(SHAPES["4b"], AUTO, CARDS["12gb"], offload_supported=False, cores=2)
    assert p.device == "cpu"
    assert "NVIDIA GeForce RTX 3060 found" in notes_of(p)[0]
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in notes_of(p)[0]


def test_force_cpu_wins_over_a_big_card() -> None:
    p = make_plan(SHAPES["4b"], RuntimeSettings(force_cpu=True), CARDS["12gb"], True, cores=2)
    assert p.device == "cpu"
    assert "CPU forced" in notes_of(p)[0]


def test_edge_embed_cpu_env_forces_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_CPU", "1")
    assert RuntimeSettings.from_env().force_cpu
    assert RuntimeSettings.from_env(ctx=512, gpu_layers=None) == RuntimeSettings(ctx=512, force_cpu=True)
    monkeypatch.setenv("EDGE_EMBED_CPU", "0")
    assert not RuntimeSettings.from_env().force_cpu
    assert RuntimeSettings.from_env(force_cpu=True).force_cpu


# --- overrides ---------------------------------------------------------------------------


def test_gpu_layers_override_is_honoured_and_clamped() -> None:
    shape, gpu = SHAPES["4b"], CARDS["12gb"]
    ten = make_plan(shape, RuntimeSettings(gpu_layers=10), gpu, True, cores=2)
    assert ten.n_gpu_layers == 10 and not ten.output_on_gpu
    assert ten.weights_vram == sum(shape.layer_bytes[-10:])
    many = make_plan(shape, RuntimeSettings(gpu_layers=500), gpu, True, cores=2)
    assert many.n_gpu_layers == 37 and many.output_on_gpu
    zero = make_plan(shape, RuntimeSettings(gpu_layers=0), gpu, True, cores=2)
    assert zero.device == "cpu" and "--gpu-layers 0" in notes_of(zero)[0]


def test_gpu_layers_override_that_cannot_fit_is_kept_with_a_warning() -> None:
    p = make_plan(SHAPES["8b"], RuntimeSettings(gpu_layers=36), CARDS["6gb"], True, cores=2)
    assert p.n_gpu_layers == 37
    assert any("loading may fail" in note for note in notes_of(p))


def test_ctx_batch_and_threads_overrides() -> None:
    settings = RuntimeSettings(ctx=1024, batch=128, threads=3)
    p = make_plan(SHAPES["4b"], settings, CARDS["12gb"], True, cores=2)
    assert (p.n_ctx, p.n_batch, p.n_ubatch, p.n_threads) == (1024, 128, 128, 3)
    small_ctx = make_plan(SHAPES["4b"], RuntimeSettings(ctx=1024), CARDS["12gb"], True, cores=2)
    assert small_ctx.n_batch == 1024 and small_ctx.n_ubatch == 512
    assert small_ctx.kv_vram < p.kv_vram * 2  # KV scales with the context, not the batch


def test_ctx_beyond_the_model_is_clamped_with_a_note() -> None:
    p = make_plan(SHAPES["4b"], RuntimeSettings(ctx=100_000), CARDS["12gb"], True, cores=2)
    assert p.n_ctx == 32768
    assert any("--ctx 100000" in note for note in notes_of(p))


def test_context_is_lowered_to_keep_every_layer_on_the_gpu() -> None:
    """8B at 8192 tokens needs ~6.3 GiB + headroom; 4096 tokens fit a card with 6.6 GiB free."""
    gpu = GpuInfo(0, "NVIDIA GeForce RTX 3070", 8192 * MIB, 6750 * MIB)
    p = make_plan(SHAPES["8b"], AUTO, gpu, True, cores=2)
    assert p.output_on_gpu and p.n_ctx in (4096, 2048)
    assert any("context lowered from 8192" in note for note in notes_of(p))
    asked = make_plan(SHAPES["8b"], RuntimeSettings(ctx=8192), gpu, True, cores=2)
    assert asked.n_ctx == 8192 and not asked.output_on_gpu


# --- the accounting ----------------------------------------------------------------------


def test_kv_cache_is_144_kib_per_token_for_the_4b() -> None:
    """Qwen3-4B: 36 layers x 8 KV heads x 128 x (K+V) x f16 = 144 KiB per token."""
    p = auto_plan("4b", "12gb")
    assert p.kv_vram == 144 * 1024 * 8192


def test_compute_buffer_counts_attention_scores_only_without_flash_attention() -> None:
    shape = SHAPES["4b"]
    with_fa = compute_buffer_bytes(shape, 512, 8192, flash_attn=True)
    without = compute_buffer_bytes(shape, 512, 8192, flash_attn=False)
    assert without - with_fa == 512 * 8192 * 32 * 4
    assert with_fa > 512 * 151669 * 4  # the logits of one micro-batch alone are ~300 MiB


@pytest.mark.parametrize("flash_attn", [False, True])
def test_estimates_agree_with_what_llama_cpp_reserves(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], flash_attn: bool
) -> None:
    """KV cache exactly, compute buffer from above but within 2x (llama.cpp logs both)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    tiny = write_tiny_qwen3(tmp_path / "tiny.gguf")
    shape = replace(
        ModelShape.from_model_info(read_model_info(tiny.path)), n_vocab=tiny.config.n_vocab, n_ff=tiny.config.n_ff
    )
    capfd.readouterr()
    llm = llama_cpp.Llama(
        str(tiny.path), embedding=True, n_ctx=1000, n_batch=1000, n_ubatch=512, flash_attn=flash_attn,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST, verbose=True,
    )
    llm.close()
    log = capfd.readouterr().err
    kv_mib = float(re.search(r"KV buffer size =\s+([\d.]+) MiB", log).group(1))
    compute_mib = float(re.search(r"compute buffer size =\s+([\d.]+) MiB", log).group(1))
    assert kv_mib == pytest.approx(shape.n_layer * padded_ctx(1000) * shape.kv_bytes_per_token_layer / MIB, abs=0.01)
    estimate_mib = compute_buffer_bytes(shape, 512, 1000, flash_attn) / MIB
    assert compute_mib <= estimate_mib <= 2 * compute_mib


def test_estimated_shape_splits_the_file_between_blocks_and_embedding() -> None:
    shape = SHAPES["4b"]
    assert sum(shape.layer_bytes) + shape.other_bytes == 2_500_000_000
    embedding_at_average_bits = 151669 * 2560 * shape.bits_per_weight / 8
    assert shape.other_bytes == pytest.approx(embedding_at_average_bits, rel=0.01)
    assert 4.5 < shape.bits_per_weight < 5.5  # Q4_K_M averages ~5 bits per weight


def test_plan_from_a_real_gguf_header(tmp_path: Path) -> None:
    tiny = write_tiny_qwen3(tmp_path / "tiny.gguf")
    info = read_model_info(tiny.path)
    shape = ModelShape.from_model_info(info)
    assert (shape.n_layer, shape.n_embd, shape.n_head_kv, shape.head_dim) == (2, 64, 2, 16)
    assert len(shape.layer_bytes) == 2 and all(size > 0 for size in shape.layer_bytes)
    assert shape.weights_bytes == info.weights_bytes
    p = make_plan(shape, AUTO, CARDS["6gb"], True, cores=2)
    assert p.device == "cuda" and p.n_gpu_layers == 3
    assert p.n_ctx == 4096  # the file's context_length caps the default 8192
    assert p.weights_vram == sum(info.layer_bytes) + shape.output_head_bytes


def test_plan_for_uses_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", "RTX 3060:12288:11000")
    monkeypatch.setattr(hardware, "build_supports_offload", lambda: True)
    p = plan.plan_for(SHAPES["4b"], AUTO)
    assert p.device == "cuda" and p.gpu == GpuInfo(0, "RTX 3060", 12288 * MIB, 11000 * MIB)
    assert plan.plan_for(SHAPES["4b"], RuntimeSettings(force_cpu=True)).device == "cpu"


# --- hardware detection ------------------------------------------------------------------


def test_parse_nvidia_smi_output() -> None:
    output = "0, NVIDIA GeForce RTX 3060, 12288, 11023\n1, Tesla T4, 15360, 15000\n"
    assert hardware.parse_nvidia_smi(output) == [
        GpuInfo(0, "NVIDIA GeForce RTX 3060", 12288 * MIB, 11023 * MIB),
        GpuInfo(1, "Tesla T4", 15360 * MIB, 15000 * MIB),
    ]


@pytest.mark.parametrize(
    "garbage",
    ["", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
     "0, NVIDIA A100, [N/A], [N/A]", "a, b, c, d", "0, , 100, 50"],
)
def test_unparsable_nvidia_smi_output_means_no_gpu(garbage: str) -> None:
    assert hardware.parse_nvidia_smi(garbage) == []


def fake_nvidia_smi(directory: Path, script: str) -> None:
    path = directory / "nvidia-smi"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    "script, expected",
    [
        ("echo '0, NVIDIA GeForce RTX 3060, 12288, 11000'", 1),
        ("echo 'driver not loaded' >&2; exit 9", 0),
        ("echo 'complete garbage'", 0),
    ],
)
def test_undriven_nvidia_gpus_runs_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, expected: int
) -> None:
    fake_nvidia_smi(tmp_path, script)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("EDGE_EMBED_FAKE_GPU", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert len(hardware.undriven_nvidia_gpus()) == expected


def test_a_hanging_nvidia_smi_is_abandoned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path, "exec sleep 30")
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    monkeypatch.setattr(hardware, "NVIDIA_SMI_TIMEOUT_S", 0.2)
    assert hardware.query_nvidia_smi() == []


def test_no_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("EDGE_EMBED_FAKE_GPU", raising=False)
    assert hardware.undriven_nvidia_gpus() == []


def test_cuda_visible_devices_filters_and_renumbers() -> None:
    gpus = [GpuInfo(0, "A", 8 * GIB, 7 * GIB), GpuInfo(1, "B", 12 * GIB, 11 * GIB)]
    assert hardware.visible_to_cuda(gpus, "1") == [GpuInfo(0, "B", 12 * GIB, 11 * GIB)]
    assert hardware.visible_to_cuda(gpus, "") == []
    assert hardware.visible_to_cuda(gpus, "-1") == []
    assert hardware.visible_to_cuda(gpus, None) == gpus
    assert hardware.visible_to_cuda(gpus, "GPU-0a1b") == gpus


def test_fake_gpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", "NVIDIA GeForce RTX 3060:12288:11000")
    assert hardware.detect_gpus() == [GpuInfo(0, "NVIDIA GeForce RTX 3060", 12288 * MIB, 11000 * MIB)]
    for bad in ("RTX 3060", "RTX 3060:big:1", "RTX:100:200", ":100:50"):
        monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", bad)
        with pytest.raises(EdgeEmbedError, match="name:total_mib:free_mib"):
            hardware.detect_gpus()


def test_best_gpu_has_the_most_free_vram() -> None:
    small, big = GpuInfo(0, "A", 8 * GIB, 2 * GIB), GpuInfo(1, "B", 6 * GIB, 5 * GIB)
    assert hardware.best_gpu([small, big]) == big
    assert hardware.best_gpu([]) is None


def test_build_description_names_the_backend() -> None:
    cuda = "CUDA : ARCHS = 860 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | FMA = 1 | AVX512 = 0 |"
    assert hardware.describe_system_info(cuda) == "CUDA build (CPU: AVX2, FMA)"
    cpu = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | OPENMP = 1 |"
    assert hardware.describe_system_info(cpu) == "CPU-only build (CPU: AVX2, AVX512)"
    assert hardware.build_description().startswith("llama-cpp-python ")
