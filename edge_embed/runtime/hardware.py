"""What this machine can run on: the devices llama.cpp drives, and GPUs it cannot.

The devices come from llama.cpp itself (ggml's backend device API: ``ggml_backend_dev_count``,
``_get``, ``_type``, ``_name``, ``_description``, ``_memory``, called through ctypes on the
library llama-cpp-python loaded), so every GPU the installed build can drive is planned
for: CUDA, ROCm/HIP, Metal (unified memory: its "free" is what macOS lets the GPU use),
Vulkan, SYCL... The answer is needed *before* a model is loaded (to plan how many layers
fit in the free memory); listing devices loads no model.

``nvidia-smi`` stays for one question only: is there an NVIDIA card that this build
cannot use? Then ``doctor`` and the plan say "rebuild with CUDA".

``EDGE_EMBED_FAKE_GPU="name:total_mib:free_mib"`` (for example
``EDGE_EMBED_FAKE_GPU="RTX 3060:12288:11000"``) replaces detection with one simulated
card, so the planner and ``doctor`` can be exercised on a machine without one (it does
not make llama.cpp offload anything: the build must still support it).
``CUDA_VISIBLE_DEVICES`` is honoured the way CUDA does (a list of indices, or empty
for "no GPU"), so the planned card is the one llama.cpp will see.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from edge_embed.config import current
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
    """One GPU (memory in bytes). ``index`` counts the GPUs llama.cpp drives, in its order
    (what ``main_gpu`` means); ``backend`` is the ggml backend driving it ("CUDA", "Metal",
    "Vulkan"...); ``unified_memory``: it shares the system RAM (Apple silicon, integrated)."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    backend: str = "CUDA"
    unified_memory: bool = False


@dataclass(frozen=True)
class DeviceInfo:
    """One device as llama.cpp reports it: ``kind`` is "cpu", "gpu", "igpu" or "accel"."""

    name: str
    description: str
    kind: str
    backend: str
    total_bytes: int
    free_bytes: int


DEVICE_KINDS = ("cpu", "gpu", "igpu", "accel", "meta")  # enum ggml_backend_dev_type, in order
METAL_BACKENDS = frozenset({"Metal", "MTL"})  # ggml has named Apple's backend both ways: unified memory


def detect_gpus() -> list[GpuInfo]:
    """The GPUs this llama.cpp build can drive ([] for a CPU-only build or no card)."""
    fake = current().fake_gpu
    if fake:
        return [parse_fake_gpu(fake)]
    return gpus_from_devices(llama_devices())


@dataclass(frozen=True)
class GpuSurvey:
    """The GPUs llama.cpp drives, and (only when it drives none) the NVIDIA cards it cannot."""

    driven: list[GpuInfo]
    undriven: list[GpuInfo]
    offload_supported: bool

    def planned(self) -> tuple[GpuInfo | None, bool]:
        """The card to plan for and whether llama.cpp can drive it: the best driven card,
        else an undriven NVIDIA card (with False: the plan says "rebuild with CUDA")."""
        if self.driven:
            return best_gpu(self.driven), self.offload_supported
        return best_gpu(self.undriven), False


def survey_gpus() -> GpuSurvey:
    """Ask llama.cpp for its GPUs; nvidia-smi only when it has none. A simulated card
    (EDGE_EMBED_FAKE_GPU) counts as driven when the build can offload at all."""
    if current().fake_gpu:
        return GpuSurvey(detect_gpus(), [], build_supports_offload())
    driven = detect_gpus()
    return GpuSurvey(driven, [] if driven else undriven_nvidia_gpus(), bool(driven))


def usable_gpu() -> tuple[GpuInfo | None, bool]:
    """The card to plan for and whether llama.cpp can drive it (``GpuSurvey.planned``)."""
    return survey_gpus().planned()


def undriven_nvidia_gpus() -> list[GpuInfo]:
    """The NVIDIA cards CUDA would see (nvidia-smi), for the "rebuild with CUDA" hint."""
    return visible_to_cuda(query_nvidia_smi(), current().cuda_visible_devices)


def gpus_from_devices(devices: list[DeviceInfo]) -> list[GpuInfo]:
    """The GPU and integrated-GPU devices, numbered in llama.cpp's order.

    llama.cpp offloads to dedicated GPUs when it has any and uses an integrated GPU only
    when there is none, so integrated GPUs count only then.
    """
    dedicated = [device for device in devices if device.kind == "gpu"]
    chosen = dedicated or [device for device in devices if device.kind == "igpu"]
    return [
        GpuInfo(
            index=i,
            name=device.description or device.name,
            total_bytes=device.total_bytes,
            free_bytes=min(device.free_bytes, device.total_bytes),
            backend=device.backend,
            unified_memory=device.kind == "igpu" or device.backend in METAL_BACKENDS,
        )
        for i, device in enumerate(chosen)
    ]


def llama_devices() -> list[DeviceInfo]:
    """Every device the installed llama.cpp reports; [] when the library cannot be loaded."""
    try:
        ggml = _ggml_library()
    except Exception:  # ImportError, OSError, a symbol missing: no llama.cpp to ask
        return []
    devices = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        kind_index = ggml.ggml_backend_dev_type(dev)
        devices.append(
            DeviceInfo(
                name=_text(ggml.ggml_backend_dev_name(dev)),
                description=_text(ggml.ggml_backend_dev_description(dev)),
                kind=DEVICE_KINDS[kind_index] if 0 <= kind_index < len(DEVICE_KINDS) else "other",
                backend=_text(ggml.ggml_backend_reg_name(ggml.ggml_backend_dev_backend_reg(dev))),
                total_bytes=int(total.value),
                free_bytes=int(free.value),
            )
        )
    return devices


GGML_BACKEND_DEVICE_TYPE_CPU = 0


def cpu_extra_buffer_types() -> list[str]:
    """The names of the CPU buffer types llama.cpp's model loader adds when
    ``use_extra_bufts`` is on, in its order (say ``["AMX", "CPU_REPACK"]``); [] when the
    build offers none or the list cannot be reached."""
    array = _extra_buffer_type_array()
    if array is None:
        return []
    return [_text(_ggml_library().ggml_backend_buft_name(buft)) for buft in _entries(array)]


def drop_cpu_extra_buffer_type(name: str) -> bool:
    """Take the buffer type ``name`` out of that list for every later model load in this
    process, keeping the others in their order. True when it is no longer there (dropped,
    or never listed); False when the list cannot be reached (then nothing changed).

    llama.cpp hands its loader a pointer to its own null-terminated array (the CPU
    backend's ``ggml_backend_dev_get_extra_bufts``): the entries after ``name`` move up one
    place and the last becomes the terminator, within the array's own length. This is how
    a faulting AMX buffer type is avoided while the weight repacking for AVX2/AVX-512
    kernels, the other extra buffer type, stays on (``runtime/amx.py``).
    """
    array = _extra_buffer_type_array()
    if array is None:
        return False
    buft_name = _ggml_library().ggml_backend_buft_name
    keep_in_place(array, lambda buft: _text(buft_name(buft)) != name)
    return True


def keep_in_place(array, keep: Callable[[int], bool]) -> None:
    """Keep the entries of a null-terminated pointer array for which ``keep`` is true, in
    their order, and null the places freed: the array never grows past its terminator."""
    entries = _entries(array)
    kept = [entry for entry in entries if keep(entry)]
    for i in range(len(entries)):
        array[i] = kept[i] if i < len(kept) else None


def _entries(array) -> list[int]:
    entries: list[int] = []
    while array[len(entries)]:
        entries.append(array[len(entries)])
    return entries


def _extra_buffer_type_array():
    """The CPU device's array of extra buffer types, as llama.cpp's model loader reads it."""
    try:
        ggml = _ggml_library()
        cpu = ggml.ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)
        if not cpu:
            return None
        address = ggml.ggml_backend_reg_get_proc_address(
            ggml.ggml_backend_dev_backend_reg(cpu), b"ggml_backend_dev_get_extra_bufts"
        )
    except Exception:  # no llama.cpp, or a build without these symbols
        return None
    if not address:
        return None
    array = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(address)(cpu)
    return array if array else None  # a NULL list: the loader takes it as empty


@functools.cache
def _ggml_library() -> ctypes.CDLL:
    """ggml's device API on the ggml library llama-cpp-python loaded (``llama_cpp._ggml``;
    on Windows its symbols do not resolve through libllama's handle), with the argument
    and result types declared."""
    from llama_cpp import _ggml

    lib = _ggml.libggml
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_count.argtypes = []
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_name.restype = ctypes.c_char_p
    lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_backend_buft_name.restype = ctypes.c_char_p
    lib.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    return lib


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


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

        text = system_info()
    except Exception as exc:  # report, never crash: doctor exists to diagnose this
        return f"llama-cpp-python not usable ({exc.__class__.__name__}: {exc})"
    return f"llama-cpp-python {llama_cpp.__version__}, {describe_system_info(text)}"


def system_info() -> str:
    """llama.cpp's system info line: its backends and the CPU features it was built with."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)


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
