"""How a model will run here: how many layers go to the GPU, context and batch sizes.

``make_plan`` is a pure function of the model's shape, the user's settings and the card
(no llama.cpp import), so every decision can be unit-tested with simulated cards, and
``doctor`` can explain a plan for a model that is not even downloaded yet.

VRAM accounting (all in bytes; a layer = one transformer block):

* weights: the tensors of the offloaded blocks (llama.cpp offloads the *last* k blocks)
  plus, when every block is offloaded, the output head (``n_gpu_layers = n_layer + 1``
  in llama.cpp terms). Qwen3 files often tie the head to the token embedding; llama.cpp
  then duplicates that matrix on the GPU, so a tied head counts as the embedding's size.
  The token embedding itself always stays on the CPU (llama.cpp's input layer).
* KV cache: f16 K and V, ``2 * n_head_kv * head_dim * 2`` bytes per token and offloaded
  block, for ``n_ctx`` tokens (llama-cpp-python uses one unified cache for all packed
  inputs, so ``n_ctx`` bounds the tokens of one decode as well as of one input).
* compute buffer, estimated conservatively for one micro-batch of ``n_ubatch`` tokens
  (f32): activations ``n_ubatch * (4 * n_embd + 3 * n_ff) * 4``; logits
  ``n_ubatch * n_vocab * 4`` (llama.cpp reserves the lm-head output even for
  embeddings: ~300 MiB for Qwen3's 151,669-token vocabulary at 512 tokens); the
  attention mask ``n_ubatch * n_ctx * 4``; without flash attention also the scores
  ``n_ubatch * n_ctx * n_head * 4``. With a partial offload add room to stage the
  largest CPU-side weight (a block or the head), which llama.cpp copies to the GPU to
  run big-batch matrix products there.
* CUDA overhead: the CUDA context and cuBLAS workspace, ~400 MiB, invisible to
  nvidia-smi's "free" until the process starts.
* headroom: 10% of the free VRAM, at least 512 MiB, left for the desktop, other
  programs and estimation error. An automatic plan keeps
  ``expected_vram + headroom <= free``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from edge_embed.catalog import CPU_DEFAULT_MODEL as SMALL_MODEL
from edge_embed.config import current
from edge_embed.errors import TERMS, Phrase
from edge_embed.modelfile import Hyperparameters, ModelInfo
from edge_embed.runtime.hardware import GpuInfo, available_cores, usable_gpu

if TYPE_CHECKING:
    from edge_embed.catalog import CatalogEntry

MIB = 1 << 20
GIB = 1 << 30
QWEN3_VOCAB = 151669
F32_BYTES = 4
KV_BYTES_PER_VALUE = 2  # f16 K and V cache

DEFAULT_CTX = 8192
MIN_AUTO_CTX = 2048  # the smallest context the planner picks by itself to keep all layers on the GPU
LLAMA_CTX_PAD = 256  # llama.cpp rounds the context up to a multiple of this
# Defaults; the engine benchmark tunes them. On the GPU big micro-batches keep the card
# busy; on the CPU smaller ones were faster (attention over a packed batch grows with it).
GPU_BATCH, GPU_UBATCH = 2048, 512
# scripts/bench_embed.py (0.6B Q8_0, 2 cores): budget 512 + micro-batch 512 beat 256/256 and
# 1024/512; packing more tokens per decode only adds masked cross-sequence attention.
CPU_BATCH, CPU_UBATCH = 512, 512
MAX_PARALLEL_SEQUENCES = 256  # llama_max_parallel_sequences() in llama-cpp-python 0.3.36

CUDA_OVERHEAD_BYTES = 400 * MIB
HEADROOM_FRACTION = 0.10
MIN_HEADROOM_BYTES = 512 * MIB

# CPU speed, measured on a 2-core x86 CPU: Qwen3-Embedding-0.6B Q8_0 embeds ~100 tokens/s
# (Q4_K_M ~135, the 4B ~7x slower). Scaled by cores, parameters and sqrt(bits per weight).
CPU_REF_TOKENS_PER_S = 100.0
CPU_REF_CORES = 2
CPU_REF_BITS_PER_WEIGHT = 8.5
CUDA_REBUILD = 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'


def layer_parameters(hidden: int, heads: int, kv_heads: int, head_dim: int, ff: int) -> int:
    """Weights of one Qwen3 block: q/k/v/o projections, gated FFN, RMS norms (incl. q/k norms)."""
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    return attention + 3 * hidden * ff + 2 * hidden + 2 * head_dim


# Qwen3-Embedding-0.6B: 28 blocks of hidden 1024 (16 heads, 8 KV heads of 128, FFN 3072).
SMALL_MODEL_PARAMETERS = 28 * layer_parameters(1024, 16, 8, 128, 3072) + QWEN3_VOCAB * 1024


@dataclass(frozen=True)
class ModelShape(Hyperparameters):
    """What the planner needs to know about a model: its sizes and tensor bytes."""

    layer_bytes: tuple[int, ...]
    other_bytes: int  # token embedding + output norm + output head (if not tied)
    output_bytes: int  # the output head; 0 when tied to the token embedding

    @classmethod
    def from_model_info(cls, info: ModelInfo) -> "ModelShape":
        """The shape of a downloaded GGUF, from its header (tensor sizes are exact)."""
        sizes = {f.name: getattr(info, f.name) for f in fields(Hyperparameters)}
        return cls(
            **{**sizes, "n_vocab": info.n_vocab or QWEN3_VOCAB},
            layer_bytes=tuple(info.layer_bytes),
            other_bytes=info.other_bytes,
            output_bytes=info.output_bytes,
        )

    @classmethod
    def estimated(
        cls,
        layers: int,
        hidden: int,
        heads: int,
        kv_heads: int,
        head_dim: int,
        ff: int,
        file_size: int,
        context: int,
    ) -> "ModelShape":
        """A catalog model not downloaded yet: spread the file size over its parameters.

        Every weight is assumed to cost the file's average bits per weight; the token
        embedding (vocabulary x hidden) is the part that is not in a block. Quantization
        mixes differ per tensor, but the totals are what the plan needs.
        """
        per_layer = layer_parameters(hidden, heads, kv_heads, head_dim, ff)
        parameters = layers * per_layer + QWEN3_VOCAB * hidden
        layer_size = per_layer * file_size // parameters
        return cls(
            n_layer=layers,
            n_embd=hidden,
            n_head=heads,
            n_head_kv=kv_heads,
            head_dim=head_dim,
            n_ff=ff,
            n_vocab=QWEN3_VOCAB,
            context_length=context,
            layer_bytes=(layer_size,) * layers,
            other_bytes=file_size - layer_size * layers,
            output_bytes=0,
        )

    @property
    def weights_bytes(self) -> int:
        return sum(self.layer_bytes) + self.other_bytes

    @property
    def output_head_bytes(self) -> int:
        """What the output head costs on the GPU (a tied head is a copy of the embedding)."""
        return self.output_bytes or self.other_bytes

    @property
    def kv_bytes_per_token_layer(self) -> int:
        return 2 * self.n_head_kv * self.head_dim * KV_BYTES_PER_VALUE

    @property
    def parameters(self) -> int:
        """Parameters one token passes through: the blocks plus the output head."""
        per_layer = layer_parameters(self.n_embd, self.n_head, self.n_head_kv, self.head_dim, self.n_ff)
        return self.n_layer * per_layer + self.n_vocab * self.n_embd

    @property
    def bits_per_weight(self) -> float:
        return self.weights_bytes * 8 / self.parameters


@dataclass(frozen=True)
class RuntimeSettings:
    """What the user asked for (None = let the planner choose)."""

    gpu_layers: int | None = None
    ctx: int | None = None
    batch: int | None = None
    threads: int | None = None
    force_cpu: bool = False
    # GPU memory another model of this process will take before this one loads (the index's
    # embedder, planned but not loaded yet, when the reranker is planned): not free for this one.
    reserved_vram: int = 0

    @classmethod
    def from_env(cls, **overrides: Any) -> "RuntimeSettings":
        """Settings from the run's ``Config`` (EDGE_EMBED_CPU=1) plus explicit values (None = not given)."""
        given = {name: value for name, value in overrides.items() if value is not None}
        given["force_cpu"] = bool(given.get("force_cpu")) or current().force_cpu
        return cls(**given)


@dataclass(frozen=True)
class VramUse:
    """Bytes a number of offloaded blocks costs on the card, by kind."""

    weights: int
    kv: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + CUDA_OVERHEAD_BYTES


@dataclass(frozen=True)
class Plan:
    """How llama.cpp will run the model; ``n_gpu_layers`` is passed to llama.cpp as is.

    ``n_gpu_layers`` counts offloaded blocks; ``n_layer + 1`` means every block *and*
    the output head (llama.cpp's convention). ``n_ctx`` is the most tokens of ONE input;
    ``n_batch`` the token budget of one ``llama_decode`` call that packs several inputs
    (at most ``n_seq_max`` of them); ``n_ubatch`` the micro-batch llama.cpp computes at
    once. The *_vram fields are estimates in bytes (0 on the CPU).
    """

    device: str
    gpu: GpuInfo | None
    n_gpu_layers: int
    n_layer: int
    n_ctx: int
    n_batch: int
    n_ubatch: int
    n_seq_max: int
    flash_attn: bool
    n_threads: int
    weights_vram: int = 0
    kv_vram: int = 0
    compute_vram: int = 0
    cuda_overhead: int = 0
    headroom: int = 0
    expected_vram: int = 0
    notes: tuple[Phrase, ...] = ()  # why this plan, what to try: each face words them (errors.Phrase)

    @property
    def gpu_blocks(self) -> int:
        """Transformer blocks on the GPU (0..n_layer)."""
        return min(self.n_gpu_layers, self.n_layer)

    @property
    def output_on_gpu(self) -> bool:
        return self.n_gpu_layers > self.n_layer

    def to_dict(self, words: Mapping[str, str] = TERMS) -> dict[str, Any]:
        """JSON-ready: every field plus the derived block count; the notes in ``words``."""
        data = asdict(self)
        data["notes"] = [note.render(words) for note in self.notes]
        data["gpu_blocks"] = self.gpu_blocks
        data["output_on_gpu"] = self.output_on_gpu
        return data


def catalog_shape(entry: CatalogEntry) -> ModelShape:
    """The shape of a catalog model that is not downloaded yet, estimated from the catalog."""
    return ModelShape.estimated(
        entry.layers,
        entry.hidden,
        entry.heads,
        entry.kv_heads,
        entry.head_dim,
        entry.ff,
        entry.approx_size_bytes,
        entry.context,
    )


def make_plan(
    shape: ModelShape,
    settings: RuntimeSettings,
    gpu: GpuInfo | None,
    offload_supported: bool,
    *,
    cores: int | None = None,
) -> Plan:
    """Choose device, layers, context and batch sizes (see the module docstring)."""
    cores = cores or available_cores()
    if gpu is not None and settings.reserved_vram:
        gpu = replace(gpu, free_bytes=max(gpu.free_bytes - settings.reserved_vram, 0))
    n_ctx, ctx_notes = context_size(shape, settings.ctx)
    cpu_reason = reason_for_cpu(settings, gpu, offload_supported)
    if cpu_reason is not None:
        return cpu_plan(shape, settings, n_ctx, cores, (cpu_reason, *ctx_notes))
    assert gpu is not None  # reason_for_cpu returns a reason when there is no card
    if settings.gpu_layers is not None:
        return gpu_plan(shape, settings, gpu, n_ctx, cores, requested_layers(shape, settings.gpu_layers), ctx_notes)
    return automatic_gpu_plan(shape, settings, gpu, n_ctx, cores, ctx_notes)


def plan_for(shape: ModelShape, settings: RuntimeSettings) -> Plan:
    """Ask llama.cpp for its devices, then plan (nothing detected if --cpu)."""
    if settings.force_cpu:
        return make_plan(shape, settings, None, False)
    gpu, driven = usable_gpu()
    return make_plan(shape, settings, gpu, driven)


def context_size(shape: ModelShape, requested: int | None) -> tuple[int, tuple[Phrase, ...]]:
    """The per-input context: as asked (at most the model's), else 8192 or the model's."""
    if requested is None:
        return min(DEFAULT_CTX, shape.context_length), ()
    if requested > shape.context_length:
        return shape.context_length, (
            Phrase("{ctx} {requested} is more than the model's context; using {n_ctx}", requested=requested, n_ctx=shape.context_length),
        )
    return requested, ()


def reason_for_cpu(settings: RuntimeSettings, gpu: GpuInfo | None, offload_supported: bool) -> Phrase | None:
    """Why the plan must be CPU-only, or None when a GPU may be used."""
    if settings.force_cpu:
        return Phrase("CPU forced ({cpu} or EDGE_EMBED_CPU=1)")
    if settings.gpu_layers == 0:
        return Phrase("{gpu_layers} 0: everything runs on the CPU")
    if gpu is None:
        return Phrase("no GPU that this llama.cpp build can drive")
    if not offload_supported:
        return Phrase(
            "{gpu} found, but this llama-cpp-python build cannot offload to a GPU: reinstall it with CUDA: {rebuild_command}",
            gpu=gpu.name, rebuild_command=CUDA_REBUILD,
        )
    return None


def batch_sizes(requested: int | None, n_ctx: int, on_gpu: bool) -> tuple[int, int]:
    """(n_batch, n_ubatch): ``--batch`` sets both; never more than the context."""
    if requested is not None:
        size = min(requested, n_ctx)
        return size, size
    batch, ubatch = (GPU_BATCH, GPU_UBATCH) if on_gpu else (CPU_BATCH, CPU_UBATCH)
    n_batch = min(batch, n_ctx)
    return n_batch, min(ubatch, n_batch)


def requested_layers(shape: ModelShape, gpu_layers: int) -> int:
    """``--gpu-layers`` in llama.cpp terms: n_layer or more means all blocks and the head."""
    return shape.n_layer + 1 if gpu_layers >= shape.n_layer else max(gpu_layers, 0)


def headroom_for(gpu: GpuInfo) -> int:
    return max(int(gpu.free_bytes * HEADROOM_FRACTION), MIN_HEADROOM_BYTES)


def padded_ctx(n_ctx: int) -> int:
    return math.ceil(n_ctx / LLAMA_CTX_PAD) * LLAMA_CTX_PAD


def compute_buffer_bytes(shape: ModelShape, n_ubatch: int, n_ctx: int, flash_attn: bool) -> int:
    """The GPU compute buffer for one micro-batch (formula in the module docstring)."""
    activations = n_ubatch * (4 * shape.n_embd + 3 * shape.n_ff) * F32_BYTES
    logits = n_ubatch * shape.n_vocab * F32_BYTES
    mask = n_ubatch * padded_ctx(n_ctx) * F32_BYTES
    scores = 0 if flash_attn else n_ubatch * padded_ctx(n_ctx) * shape.n_head * F32_BYTES
    return activations + logits + mask + scores


def vram_use(shape: ModelShape, n_gpu_layers: int, n_ctx: int, n_ubatch: int) -> VramUse:
    """What ``n_gpu_layers`` (llama.cpp terms) costs on the card, flash attention on."""
    blocks = min(n_gpu_layers, shape.n_layer)
    on_gpu = shape.layer_bytes[shape.n_layer - blocks :] if blocks else ()
    on_cpu = shape.layer_bytes[: shape.n_layer - blocks]
    full = n_gpu_layers > shape.n_layer
    weights = sum(on_gpu) + (shape.output_head_bytes if full else 0)
    kv = blocks * padded_ctx(n_ctx) * shape.kv_bytes_per_token_layer
    staging = 0 if full else max(max(on_cpu, default=0), shape.output_head_bytes)
    return VramUse(weights, kv, compute_buffer_bytes(shape, n_ubatch, n_ctx, flash_attn=True) + staging)


def layers_that_fit(shape: ModelShape, budget: int, n_ctx: int, n_ubatch: int) -> int:
    """The most layers (llama.cpp terms, n_layer + 1 = all) whose VRAM fits ``budget``."""
    for n_gpu_layers in range(shape.n_layer + 1, 0, -1):
        if vram_use(shape, n_gpu_layers, n_ctx, n_ubatch).total <= budget:
            return n_gpu_layers
    return 0


def automatic_gpu_plan(
    shape: ModelShape,
    settings: RuntimeSettings,
    gpu: GpuInfo,
    n_ctx: int,
    cores: int,
    ctx_notes: tuple[Phrase, ...],
) -> Plan:
    """All layers if they fit; else a smaller context (if not set) that lets them; else part."""
    budget = gpu.free_bytes - headroom_for(gpu)

    def fitting(ctx: int) -> int:
        return layers_that_fit(shape, budget, ctx, batch_sizes(settings.batch, ctx, on_gpu=True)[1])

    n_gpu_layers = fitting(n_ctx)
    if n_gpu_layers <= shape.n_layer and settings.ctx is None:
        smaller = next((ctx for ctx in smaller_contexts(n_ctx) if fitting(ctx) > shape.n_layer), None)
        if smaller is not None:
            ctx_notes = (
                *ctx_notes,
                Phrase(
                    "context lowered from {n_ctx} to {smaller} tokens per input so that every layer "
                    "fits on the GPU (longer inputs are truncated; {ctx} sets it)", n_ctx=n_ctx, smaller=smaller,
                ),
            )
            n_ctx, n_gpu_layers = smaller, shape.n_layer + 1
    if n_gpu_layers == 0:
        reason = Phrase(
            "{gpu} has {free} free VRAM: not even one layer fits next to the CUDA context, compute buffer and headroom",
            gpu=gpu.name, free=gib(gpu.free_bytes),
        )
        return cpu_plan(shape, settings, n_ctx, cores, (reason, *ctx_notes))
    return gpu_plan(shape, settings, gpu, n_ctx, cores, n_gpu_layers, ctx_notes)


def smaller_contexts(n_ctx: int) -> list[int]:
    """Halvings of the context down to MIN_AUTO_CTX, largest first."""
    sizes = []
    ctx = n_ctx // 2
    while ctx >= MIN_AUTO_CTX:
        sizes.append(ctx)
        ctx //= 2
    return sizes


def gpu_plan(
    shape: ModelShape,
    settings: RuntimeSettings,
    gpu: GpuInfo,
    n_ctx: int,
    cores: int,
    n_gpu_layers: int,
    ctx_notes: tuple[Phrase, ...],
) -> Plan:
    """A CUDA plan with ``n_gpu_layers`` (llama.cpp terms) and its VRAM accounting."""
    plan = device_plan(shape, settings, n_ctx, cores, gpu, n_gpu_layers)
    use = vram_use(shape, n_gpu_layers, n_ctx, plan.n_ubatch)
    plan = replace(
        plan,
        weights_vram=use.weights,
        kv_vram=use.kv,
        compute_vram=use.compute,
        cuda_overhead=CUDA_OVERHEAD_BYTES,
        headroom=headroom_for(gpu),
        expected_vram=use.total,
    )
    return replace(plan, notes=(*gpu_notes(shape, settings, plan), *ctx_notes))


def gpu_notes(shape: ModelShape, settings: RuntimeSettings, plan: Plan) -> tuple[Phrase, ...]:
    """Why this GPU plan: what fits, what does not, what to try."""
    gpu = plan.gpu
    assert gpu is not None
    usage = f"about {gib(plan.expected_vram)} of {gib(gpu.free_bytes)} free VRAM"
    if plan.output_on_gpu:
        fits = f"all {shape.n_layer} layers and the output head on {gpu.name}: {usage}"
        notes = [Phrase("{fits}, {spare} to spare", fits=fits, spare=gib(gpu.free_bytes - plan.expected_vram))]
    else:
        notes = [
            Phrase(
                "{blocks} of {layers} layers on {gpu} ({usage}); the other layers and the output head run on "
                "the CPU, which is much slower", blocks=plan.gpu_blocks, layers=shape.n_layer, gpu=gpu.name, usage=usage,
            )
        ]
    if settings.gpu_layers is not None:
        notes.append(Phrase("{gpu_layers} {asked} as asked", asked=settings.gpu_layers))
        if plan.expected_vram + plan.headroom > gpu.free_bytes:
            notes.append(
                Phrase(
                    "that needs about {expected} plus {headroom} headroom, more than the {free} free: loading may "
                    "fail; lower {gpu_layers} or {ctx}",
                    expected=gib(plan.expected_vram), headroom=gib(plan.headroom), free=gib(gpu.free_bytes),
                )
            )
    elif not plan.output_on_gpu:
        notes.append(Phrase("to fit every layer: a smaller {ctx}, less VRAM used by other programs, or a smaller model"))
    return tuple(notes)


def cpu_plan(
    shape: ModelShape,
    settings: RuntimeSettings,
    n_ctx: int,
    cores: int,
    notes: tuple[Phrase, ...],
) -> Plan:
    """Everything on the CPU; the notes say why and how fast that is, roughly."""
    plan = device_plan(shape, settings, n_ctx, cores, None, 0)
    return replace(plan, notes=(*notes, cpu_speed_note(shape, plan.n_threads)))


def device_plan(
    shape: ModelShape, settings: RuntimeSettings, n_ctx: int, cores: int, gpu: GpuInfo | None, n_gpu_layers: int
) -> Plan:
    """What a GPU plan and a CPU plan decide alike: decode batches (a GPU's are larger),
    sequences per decode and threads; flash attention on a GPU only. The VRAM figures and
    notes are ``gpu_plan``'s and ``cpu_plan``'s."""
    n_batch, n_ubatch = batch_sizes(settings.batch, n_ctx, on_gpu=gpu is not None)
    return Plan(
        device=gpu.backend.lower() if gpu is not None else "cpu",
        gpu=gpu,
        n_gpu_layers=n_gpu_layers,
        n_layer=shape.n_layer,
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        n_seq_max=min(n_batch, MAX_PARALLEL_SEQUENCES),
        flash_attn=gpu is not None,
        n_threads=settings.threads or cores,
    )


def cpu_tokens_per_second(shape: ModelShape, threads: int) -> float:
    """A rough CPU throughput: the 2-core measurement scaled by threads, size and quant."""
    size_factor = SMALL_MODEL_PARAMETERS / shape.parameters
    quant_factor = math.sqrt(CPU_REF_BITS_PER_WEIGHT / shape.bits_per_weight)
    return CPU_REF_TOKENS_PER_S * threads / CPU_REF_CORES * size_factor * quant_factor


def cpu_speedup(parameters: int) -> float:
    """How many times faster the CPU's catalog model embeds on a CPU than a model of
    ``parameters``: by parameters (measured 6.9x for the 4B, docs/benchmarks.md)."""
    return parameters / SMALL_MODEL_PARAMETERS


def cpu_speed_note(shape: ModelShape, threads: int) -> Phrase:
    """E.g. "the 4.0B model runs on the CPU at roughly 20 tokens/s here; ... ~7x faster"."""
    billions = shape.parameters / 1e9
    speed = cpu_tokens_per_second(shape, threads)
    note = f"the {billions:.1f}B model runs on the CPU at roughly {speed:.0f} tokens/s here ({threads} threads)"
    ratio = cpu_speedup(shape.parameters)
    if ratio >= 2:
        return Phrase(
            "{note}; {small} is ~{ratio}x faster ({model} {small})", note=note, small=SMALL_MODEL, ratio=f"{ratio:.0f}"
        )
    return Phrase("{note}", note=note)


def gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"
