"""Whether llama.cpp's Intel AMX kernels can run here, found out once and remembered.

Some virtual machines advertise AMX (``amx_tile amx_int8`` in /proc/cpuinfo) and even
grant the permission to use it (``arch_prctl(ARCH_REQ_XCOMP_PERM)`` succeeds), yet fault
on the instructions: SIGSEGV or SIGILL in the first decode of a quantized model. A native
llama.cpp build compiles those kernels whenever the build machine advertises AMX, and
reaches them only through its AMX buffer type, one of the CPU's "extra" buffer types.
Where AMX faults, that one buffer type is taken out of llama.cpp's list before any model
loads (``hardware.drop_cpu_extra_buffer_type``): the other one, weight repacking for the
AVX2/AVX-512 kernels, stays, so models run as fast as with a ``-mno-amx`` build (measured
in docs/benchmarks.md, "AMX fallback"). Only when the list cannot be reached do models load
with ``use_extra_bufts = False``, which also gives up repacking (0.69x).

No check short of running the kernels tells, so the first load on such a machine runs a
probe in a child process: a tiny Q8_0 model (``edge_embed.testing``), one decode, with
extra buffer types on. A crash there costs nothing but the child. When it dies, a second
child decodes without AMX: if that dies too, the build itself cannot run on this CPU (seen
on an H200 machine's Xeon under gVisor, where every decode of a native build died, GPU
offload included), and every load then fails with an error that says how to rebuild,
instead of the process dying. The verdict is cached
per llama.cpp library (path, size and mtime of its files) and CPU model, so the normal
cost is one small file read per process, and none at all when the build has no AMX or
the CPU does not advertise it.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_embed.errors import LlamaCppCrashes
from edge_embed.paths import read_cache_entry, write_cache_entry
from edge_embed.runtime import hardware
from edge_embed.runtime.hardware import system_info

CACHE_FILE = "amx-probe-v2.json"  # v2: "faults" means the probe without AMX decoded (v1 never ran it)
PROBE_TIMEOUT_S = 120.0
AMX_CPU_FLAGS = ("amx_tile", "amx_int8")
PROBE_OK = "amx-probe-ok"
CPU_FAULT_SIGNALS = frozenset(getattr(signal, name) for name in ("SIGILL", "SIGSEGV", "SIGBUS") if hasattr(signal, name))
# What turning the extra buffer types off costs, from docs/benchmarks.md ("AMX fallback").
FALLBACK_COST = "AMX's faster prefill of quantized weights is not used"
AMX_BUFFER_TYPE = "AMX"  # ggml_backend_buft_name of llama.cpp's AMX buffer type
REBUILD_ADVICE = (
    "rebuild it without native CPU code: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install --force-reinstall "
    "--no-cache-dir llama-cpp-python (add -DGGML_CUDA=on to CMAKE_ARGS for a CUDA build)"
)


@dataclass(frozen=True)
class AmxVerdict:
    """Whether models may load with llama.cpp's AMX buffer type, and why.

    ``state`` is "no-amx-build" (the library has no AMX kernels), "not-advertised" (the CPU
    does not offer AMX), "works" (the probe decoded), "faults" (the probe died of a CPU
    fault, and decoded without AMX: AMX is avoided, remembered), "extra-faults" (it died
    without AMX too, and decoded with no extra buffer type at all: those are off,
    remembered), "crashes" (it died every way: no model can load, remembered) or
    "inconclusive" (it failed otherwise, say out of memory or time: AMX avoided in this
    process only, probed again next time).
    ``detail`` says how the probe ended.
    """

    state: str
    detail: str = ""

    @property
    def amx_allowed(self) -> bool:
        return self.state in ("no-amx-build", "not-advertised", "works")

    @property
    def worth_remembering(self) -> bool:
        """A CPU fault is a property of the machine; any other failure may pass."""
        return self.state != "inconclusive"

    def describe(self) -> str:
        """One line for ``doctor``."""
        if self.state == "faults":
            return (
                f"this CPU advertises AMX but faults on it ({self.detail}): models load without "
                f"llama.cpp's AMX buffer type (weight repacking stays), so {FALLBACK_COST}"
            )
        if self.state == "extra-faults":
            return (
                f"this CPU faults in llama.cpp's AMX and repacked kernels ({self.detail}): models load "
                "without llama.cpp's extra buffer types"
            )
        if self.state == "crashes":
            return f"llama.cpp dies on this CPU, with or without AMX ({self.detail}): {REBUILD_ADVICE}"
        if self.state == "inconclusive":
            return (
                f"the AMX probe was inconclusive ({self.detail}): models load without llama.cpp's AMX "
                "buffer type in this process, and the next run probes again"
            )
        return {
            "no-amx-build": "this llama.cpp build has no AMX kernels",
            "not-advertised": "this CPU does not advertise AMX",
            "works": "AMX kernels run here (probed once)",
        }[self.state]


_FIRST_VERDICT = threading.Lock()


def amx_verdict() -> AmxVerdict:
    """The verdict for this process's llama.cpp library and CPU (probing at most once a
    machine). The embedder and the reranker may load first on two threads at once (a
    server's first search that reranks): the second waits for the first one's probe
    instead of running its own, up to two minutes of a core each."""
    with _FIRST_VERDICT:
        return process_verdict()


@functools.cache
def process_verdict() -> AmxVerdict:
    """``amx_verdict`` without the lock: found once a process."""
    if not build_has_amx(system_info()):
        return AmxVerdict("no-amx-build")
    cpuinfo = read_cpuinfo()
    if not cpu_advertises_amx(cpuinfo):
        return AmxVerdict("not-advertised")
    key = probe_key(library_files(), cpu_model(cpuinfo))
    cached = read_cached_verdict(key)
    if cached is not None:
        return cached
    verdict = probe_this_machine()
    if verdict.worth_remembering:
        write_cached_verdict(key, verdict)
    return verdict


def extra_buffer_types_allowed() -> bool:
    """``use_extra_bufts`` for the next model load: on, with the AMX buffer type taken out
    of llama.cpp's list first where the verdict says AMX may fault; off only when that
    list cannot be changed (a build without the CPU backend's list, say). Where the build
    dies even without AMX, ``LlamaCppCrashes`` instead of a load that would kill us."""
    verdict = amx_verdict()
    if verdict.state == "crashes":
        raise LlamaCppCrashes(verdict.describe(), verdict.detail)
    if verdict.amx_allowed:
        return True
    if verdict.state == "extra-faults":
        return False
    with _FIRST_VERDICT:  # llama.cpp's own array: two first loads must not rewrite it at once
        return hardware.drop_cpu_extra_buffer_type(AMX_BUFFER_TYPE)


def build_has_amx(info: str) -> bool:
    """``AMX_INT8 = 1`` in llama.cpp's system info: the CPU backend carries AMX kernels."""
    return any(
        key.strip() == "AMX_INT8" and value.strip() == "1"
        for key, _, value in (segment.partition("=") for segment in info.split("|"))
    )


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: no AMX-advertising VMs known there
        return ""


def cpu_advertises_amx(cpuinfo: str) -> bool:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            return all(flag in flags for flag in AMX_CPU_FLAGS)
    return False


def cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine()


def library_files() -> list[Path]:
    """The shared libraries of the installed llama-cpp-python (llama, ggml and its backends)."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    return sorted(path for path in lib_dir.glob("*") if path.is_file())


def probe_key(files: list[Path], cpu: str) -> str:
    """A verdict holds for these exact library files on this CPU model."""
    parts = [cpu]
    for path in files:
        stat = path.stat()
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_cached_verdict(key: str) -> AmxVerdict | None:
    entry = read_cache_entry(CACHE_FILE, key)
    try:
        return AmxVerdict(state=entry["state"], detail=entry.get("detail", ""))
    except (KeyError, TypeError, AttributeError):
        return None


def write_cached_verdict(key: str, verdict: AmxVerdict) -> None:
    write_cache_entry(CACHE_FILE, key, asdict(verdict))


PROBE_COMMAND = (sys.executable, "-m", "edge_embed.runtime.amx")
FALLBACK_PROBE_COMMAND = (*PROBE_COMMAND, "--without-amx")
NO_EXTRA_PROBE_COMMAND = (*PROBE_COMMAND, "--no-extra-buffer-types")


def probe_this_machine() -> AmxVerdict:
    """The probe with AMX; where it dies of a CPU fault, the probes without AMX, then
    without any extra buffer type, find the narrowest fallback that decodes. A fallback
    probe that fails otherwise (a timeout, say) leaves the verdict inconclusive."""
    verdict = run_probe(PROBE_COMMAND)
    if verdict.state != "faults":
        return verdict
    for command, state, fell_back in (
        (FALLBACK_PROBE_COMMAND, "faults", ""),
        (NO_EXTRA_PROBE_COMMAND, "extra-faults", ", and without AMX too"),
    ):
        fallback = run_probe(command)
        if fallback.state == "works":
            return AmxVerdict(state, verdict.detail + fell_back)
        if fallback.state != "faults":
            return AmxVerdict("inconclusive", f"{verdict.detail}; then {fallback.detail}")
    return AmxVerdict("crashes", f"{verdict.detail}, and without extra buffer types too")


def run_probe(command: tuple[str, ...] = PROBE_COMMAND, timeout_s: float = PROBE_TIMEOUT_S) -> AmxVerdict:
    """Load a tiny Q8_0 model with extra buffer types on and decode once, in a child process."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            stdin=subprocess.DEVNULL,  # `edge-embed mcp` speaks its protocol on stdin
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return AmxVerdict("inconclusive", f"the probe took over {timeout_s:.0f} s")
    return verdict_from_exit(done.returncode, done.stdout, done.stderr)


def verdict_from_exit(returncode: int, stdout: str, stderr: str) -> AmxVerdict:
    """A clean decode prints PROBE_OK; death by a CPU fault (SIGILL, SIGSEGV, SIGBUS) is
    what faulting AMX kernels do; any other end says nothing about AMX (inconclusive)."""
    if returncode == 0 and PROBE_OK in stdout:
        return AmxVerdict("works")
    if returncode < 0:
        state = "faults" if -returncode in CPU_FAULT_SIGNALS else "inconclusive"
        return AmxVerdict(state, f"the probe died of {signal_name(-returncode)}")
    last = (stderr.strip().splitlines() or ["no output"])[-1]
    return AmxVerdict("inconclusive", f"the probe exited {returncode}: {last[:200]}")


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def probe_main(mode: str = "") -> None:
    """The child: one decode of a tiny quantized model with extra buffer types on, or
    without AMX (``--without-amx``), or with none (``--no-extra-buffer-types``)."""
    from edge_embed.modelfile import read_model_info
    import numpy as np

    from edge_embed.runtime.engine import decode_one, load_session
    from edge_embed.runtime.plan import ModelShape, RuntimeSettings, cpu_plan
    from edge_embed.testing import write_tiny_qwen3_quantized

    with tempfile.TemporaryDirectory(prefix="edge-embed-amx-") as tmp:
        info = read_model_info(write_tiny_qwen3_quantized(Path(tmp) / "probe-q8_0.gguf").path)
        plan = cpu_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=1), 256, 1, ())
        extra = mode != "--no-extra-buffer-types"
        if mode == "--without-amx":
            extra = hardware.drop_cpu_extra_buffer_type(AMX_BUFFER_TYPE)  # False: as a load would, none
        session = load_session(info, plan, last_pooling=True, extra_buffer_types=extra)
        try:
            decode_one(session, list(range(1, 33)), np.empty((1, info.n_embd), dtype=np.float32))
        finally:
            session.close()
    print(PROBE_OK, flush=True)


if __name__ == "__main__":
    probe_main(sys.argv[1] if len(sys.argv) > 1 else "")
