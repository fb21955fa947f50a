"""What this machine can run on: NVIDIA GPUs and whether the llama.cpp build can use them.

GPUs are found with ``nvidia-smi`` rather than through llama.cpp because the answer is
needed *before* a model is loaded (to plan how many layers fit in the free VRAM) and
also when the installed llama-cpp-python is a CPU-only build, so that ``doctor`` can
say "you have a GPU, but this build cannot use it".

``EDGE_EMBED_FAKE_GPU="name:total_mib:free_mib"`` (for example
``EDGE_EMBED_FAKE_GPU="RTX 3060:12288:11000"``) replaces detection with one simulated
card, so the planner and ``doctor`` can be exercised on a machine without one (it does
not make llama.cpp offload anything: the build must still support it).
``CUDA_VISIBLE_DEVICES`` is honoured the way CUDA does (a list of indices, or empty
for "no GPU"), so the planned card is the one llama.cpp will see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from edge_embed.errors import EdgeEmbedError

MIB = 1 << 20
NVIDIA_SMI_TIMEOUT_S = 5.0
NVIDIA_SMI_QUERY = [
    "--query-gpu=index,name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
]
FAKE_GPU_ENV = "EDGE_EMBED_FAKE_GPU"


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA card as nvidia-smi reports it (memory in bytes)."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int


def detect_gpus() -> list[GpuInfo]:
    """The NVIDIA GPUs CUDA will see, or [] when there are none or nvidia-smi fails."""
    fake = os.environ.get(FAKE_GPU_ENV)
    if fake:
        return [parse_fake_gpu(fake)]
    return visible_to_cuda(query_nvidia_smi(), os.environ.get("CUDA_VISIBLE_DEVICES"))


def query_nvidia_smi() -> list[GpuInfo]:
    """Every GPU nvidia-smi lists; a missing binary, an error, a hang or garbage gives []."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        done = subprocess.run(
            [binary, *NVIDIA_SMI_QUERY],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(output: str) -> list[GpuInfo]:
    """Parse ``index, name, total MiB, free MiB`` lines; lines that do not parse are skipped.

    The name is everything between the first and the last two fields, so a card name
    with a comma in it still parses.
    """
    gpus = []
    for line in output.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 4:
            continue
        try:
            index, total_mib, free_mib = int(fields[0]), int(fields[-2]), int(fields[-1])
        except ValueError:  # "[N/A]", "[Insufficient Permissions]", an error message...
            continue
        name = ", ".join(fields[1:-2])
        if total_mib <= 0 or free_mib < 0 or not name:
            continue
        gpus.append(GpuInfo(index, name, total_mib * MIB, min(free_mib, total_mib) * MIB))
    return gpus


def visible_to_cuda(gpus: list[GpuInfo], cuda_visible_devices: str | None) -> list[GpuInfo]:
    """Apply ``CUDA_VISIBLE_DEVICES`` as CUDA does: filter, reorder and renumber from 0.

    nvidia-smi ignores that variable but llama.cpp does not, so without this the plan
    could size layers for a card llama.cpp cannot see. Entries that are not indices
    (GPU UUIDs, MIG names) cannot be matched with the query above: the list is then
    left as it is.
    """
    if cuda_visible_devices is None:
        return gpus
    entries = [entry.strip() for entry in cuda_visible_devices.split(",") if entry.strip()]
    if not entries:
        return []
    if not all(entry.lstrip("-").isdigit() for entry in entries):
        return gpus
    by_index = {gpu.index: gpu for gpu in gpus}
    visible = []
    for wanted in (int(entry) for entry in entries):
        if wanted not in by_index:
            break  # CUDA stops at the first invalid index
        gpu = by_index[wanted]
        visible.append(GpuInfo(len(visible), gpu.name, gpu.total_bytes, gpu.free_bytes))
    return visible


def parse_fake_gpu(spec: str) -> GpuInfo:
    """``name:total_mib:free_mib`` -> GpuInfo (index 0); a malformed value is a user error."""
    name, _, sizes = spec.rpartition(":")
    name, _, total = name.rpartition(":")
    try:
        total_mib, free_mib = int(total), int(sizes)
    except ValueError:
        total_mib = free_mib = -1
    if not name or total_mib <= 0 or not 0 <= free_mib <= total_mib:
        raise EdgeEmbedError(
            f'{FAKE_GPU_ENV}="{spec}" is not "name:total_mib:free_mib" '
            f'(for example "RTX 3060:12288:11000"); fix or unset it'
        )
    return GpuInfo(0, name, total_mib * MIB, free_mib * MIB)


def best_gpu(gpus: list[GpuInfo]) -> GpuInfo | None:
    """The card with the most free VRAM: the plan puts the whole model on one card."""
    return max(gpus, key=lambda gpu: gpu.free_bytes, default=None)


def build_supports_offload() -> bool:
    """Whether the installed llama-cpp-python was compiled with a GPU backend (CUDA...).

    Imported lazily: loading llama.cpp's shared library is slow and not needed to plan.
    A missing or broken install counts as "cannot offload".
    """
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # ImportError, OSError from a library that fails to load
        return False


def build_description() -> str:
    """One line on the llama.cpp build: version, GPU backend or CPU-only, CPU features."""
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info()
        version = llama_cpp.__version__
    except Exception as exc:  # report, never crash: doctor exists to diagnose this
        return f"llama-cpp-python not usable ({exc.__class__.__name__}: {exc})"
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return f"llama-cpp-python {version}, {describe_system_info(text)}"


def describe_system_info(system_info: str) -> str:
    """Summarise llama.cpp's ``system_info`` ("CUDA : ARCHS = ... | CPU : AVX2 = 1 | ...").

    The backends are the segments whose first key names one (e.g. ``CUDA``); for the
    CPU the enabled instruction sets that matter most for speed are listed.
    """
    backends = []
    cpu_features = []
    for segment in system_info.split("|"):
        head, _, value = segment.partition("=")
        backend, colon, feature = head.partition(":")
        if colon:
            backends.append(backend.strip())
            head = feature
        if value.strip() == "1" and head.strip() in {"AVX2", "AVX512", "NEON", "FMA"}:
            cpu_features.append(head.strip())
    gpu_backends = [name for name in backends if name not in {"CPU", ""}]
    kind = f"{'/'.join(gpu_backends)} build" if gpu_backends else "CPU-only build"
    return f"{kind} (CPU: {', '.join(cpu_features) or 'baseline'})"


def available_cores() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity where known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
