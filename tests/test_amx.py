"""AMX that faults is found by a probe in a child process, remembered, and avoided.

This machine's CPU may or may not advertise AMX; the decisions are tested on the text
llama.cpp and /proc/cpuinfo would give, the probe itself for real (here it decodes), the
crash path with a child that really dies of a signal, and the fallback with a real load.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_embed.modelfile import read_model_info
from edge_embed.runtime import amx, engine
from edge_embed.runtime.amx import AmxVerdict
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, cpu_plan
from edge_embed.testing import TinyModel, write_tiny_qwen3_quantized

AMX_BUILD_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
PLAIN_BUILD_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
AMX_CPUINFO = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n"
PLAIN_CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f\n"


CACHED_VERDICT = amx.amx_verdict  # tests replace the module attribute; its cache is this one's


@pytest.fixture(autouse=True)
def fresh_verdict():
    CACHED_VERDICT.cache_clear()
    yield
    CACHED_VERDICT.cache_clear()


def test_build_and_cpu_flags_are_read_from_their_text() -> None:
    assert amx.build_has_amx(AMX_BUILD_INFO) and not amx.build_has_amx(PLAIN_BUILD_INFO)
    assert not amx.build_has_amx("CPU : AMX_INT8 = 0 | ")
    assert amx.cpu_advertises_amx(AMX_CPUINFO) and not amx.cpu_advertises_amx(PLAIN_CPUINFO)
    assert not amx.cpu_advertises_amx("")
    assert amx.cpu_model(AMX_CPUINFO) == "Intel(R) Xeon(R) Platinum 8481C"


@pytest.mark.parametrize(
    ("info", "cpuinfo", "state"),
    [(PLAIN_BUILD_INFO, AMX_CPUINFO, "no-amx-build"), (AMX_BUILD_INFO, PLAIN_CPUINFO, "not-advertised")],
)
def test_no_probe_without_both_an_amx_build_and_an_amx_cpu(monkeypatch, info, cpuinfo, state) -> None:
    monkeypatch.setattr(amx, "system_info", lambda: info)
    monkeypatch.setattr(amx, "read_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr(amx, "run_probe", lambda: pytest.fail("no probe is needed"))
    verdict = amx.amx_verdict()
    assert verdict.state == state and verdict.use_extra_buffer_types


def test_the_probe_runs_once_per_library_and_cpu_then_its_verdict_is_read_back(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path))
    monkeypatch.setattr(amx, "system_info", lambda: AMX_BUILD_INFO)
    monkeypatch.setattr(amx, "read_cpuinfo", lambda: AMX_CPUINFO)
    library = tmp_path / "libggml-cpu.so"
    library.write_bytes(b"one build")
    monkeypatch.setattr(amx, "library_files", lambda: [library])
    probes = []

    def probe() -> AmxVerdict:
        probes.append(1)
        return AmxVerdict("faults", "the probe died of SIGSEGV")

    monkeypatch.setattr(amx, "run_probe", probe)
    first = amx.amx_verdict()
    amx.amx_verdict.cache_clear()  # a new process
    second = amx.amx_verdict()
    assert first == second == AmxVerdict("faults", "the probe died of SIGSEGV") and len(probes) == 1
    assert not second.use_extra_buffer_types

    library.write_bytes(b"a rebuilt llama.cpp")  # another size: the old verdict does not apply
    amx.amx_verdict.cache_clear()
    amx.amx_verdict()
    assert len(probes) == 2


def test_the_real_probe_decodes_a_quantized_model_in_a_child() -> None:
    """Where the build or the CPU has no AMX the kernels llama.cpp built run, and the child
    says so; on an AMX machine it may die of the fault instead, but only the child dies."""
    verdict = amx.run_probe()
    if amx.build_has_amx(amx.system_info()) and amx.cpu_advertises_amx(amx.read_cpuinfo()):
        assert verdict.state in ("works", "faults"), verdict
    else:
        assert verdict == AmxVerdict("works")


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGSEGV, "SIGSEGV"), (signal.SIGILL, "SIGILL")])
def test_a_probe_that_dies_of_a_signal_means_faults(signum: int, name: str) -> None:
    suicide = (sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signum)})")
    verdict = amx.run_probe(command=suicide)
    assert verdict == AmxVerdict("faults", f"the probe died of {name}")
    assert not verdict.use_extra_buffer_types
    assert "faults on it (the probe died of" in verdict.describe()


def test_a_probe_that_hangs_fails_or_is_killed_is_inconclusive_and_not_remembered(monkeypatch, tmp_path) -> None:
    """A timeout on a busy machine, a missing module or a kill says nothing about AMX: the
    fallback holds for this process only, and the next run probes again."""
    hang = (sys.executable, "-c", "import time; time.sleep(30)")
    assert amx.run_probe(command=hang, timeout_s=0.5).state == "inconclusive"
    failing = (sys.executable, "-c", "raise SystemExit('no llama.cpp')")
    assert amx.run_probe(command=failing) == AmxVerdict("inconclusive", "the probe exited 1: no llama.cpp")
    killed = amx.run_probe(command=(sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert killed == AmxVerdict("inconclusive", "the probe died of SIGKILL")
    assert not killed.use_extra_buffer_types and "probes again" in killed.describe()

    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path))
    monkeypatch.setattr(amx, "system_info", lambda: AMX_BUILD_INFO)
    monkeypatch.setattr(amx, "read_cpuinfo", lambda: AMX_CPUINFO)
    monkeypatch.setattr(amx, "library_files", lambda: [])
    probes = []
    monkeypatch.setattr(amx, "run_probe", lambda: probes.append(1) or killed)
    assert amx.amx_verdict() == killed
    CACHED_VERDICT.cache_clear()  # a new process
    amx.amx_verdict()
    assert len(probes) == 2


@pytest.fixture(scope="module")
def tiny_q8(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_qwen3_quantized(tmp_path_factory.mktemp("models") / "tiny-q8_0.gguf")


def load(model: TinyModel, **kwargs) -> engine.LlamaSession:
    info = read_model_info(model.path)
    plan = cpu_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=1), 256, 1, ())
    return engine.load_session(info, plan, last_pooling=True, **kwargs)


def embed_abc(session: engine.LlamaSession, model: TinyModel) -> np.ndarray:
    out = np.empty((1, model.config.n_embd), dtype=np.float32)
    engine.decode_one(session, model.tokenize("abc") + [model.eos_id], out)
    return out[0] / np.linalg.norm(out[0])


def test_a_faulting_verdict_loads_every_model_without_extra_buffer_types(monkeypatch, tiny_q8) -> None:
    monkeypatch.setattr(amx, "amx_verdict", lambda: AmxVerdict("faults", "the probe died of SIGILL"))
    session = load(tiny_q8)
    try:
        assert session.model.params.use_extra_bufts is False
    finally:
        session.close()
    monkeypatch.setattr(amx, "amx_verdict", lambda: AmxVerdict("works"))
    session = load(tiny_q8)
    try:
        assert session.model.params.use_extra_bufts is True
    finally:
        session.close()


def test_without_extra_buffer_types_a_quantized_model_embeds_the_same(tiny_q8: TinyModel) -> None:
    if not amx.amx_verdict().use_extra_buffer_types:
        pytest.skip("extra buffer types fault on this CPU: loading with them would kill pytest")
    vectors = []
    for extra in (True, False):
        session = load(tiny_q8, extra_buffer_types=extra)
        try:
            vectors.append(embed_abc(session, tiny_q8))
        finally:
            session.close()
    reference = tiny_q8.embed(tiny_q8.tokenize("abc") + [tiny_q8.eos_id])
    reference /= np.linalg.norm(reference)
    assert float(vectors[0] @ vectors[1]) > 0.9999
    assert float(vectors[1] @ reference) > 0.99  # Q8_0 weights against the F32 reference


def test_doctor_names_the_fallback_and_what_it_costs(monkeypatch) -> None:
    from click.testing import CliRunner

    from edge_embed.cli import cli

    monkeypatch.setattr(amx, "amx_verdict", lambda: AmxVerdict("faults", "the probe died of SIGSEGV"))
    text = CliRunner().invoke(cli, ["doctor"]).stdout
    assert "this CPU advertises AMX but faults on it (the probe died of SIGSEGV): models load without" in text
    assert amx.FALLBACK_COST in text


def test_the_cache_file_is_json_in_the_cache_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path))
    amx.write_cached_verdict("key", AmxVerdict("works"))
    assert amx.read_cached_verdict("key") == AmxVerdict("works")
    assert amx.read_cached_verdict("other") is None
    (tmp_path / amx.CACHE_FILE).write_text("not json")
    assert amx.read_cached_verdict("key") is None
