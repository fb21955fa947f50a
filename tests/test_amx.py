"""AMX that faults is found by a probe in a child process, remembered, and avoided.

This machine's CPU may or may not advertise AMX; the decisions are tested on the text
llama.cpp and /proc/cpuinfo would give, the probe itself for real (here it decodes), the
crash path with a child that really dies of a signal, and the fallback with a real load.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_embed.modelfile import read_model_info
from edge_embed.runtime import amx, engine, hardware
from edge_embed.runtime.amx import AmxVerdict
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, cpu_plan
from edge_embed.testing import TinyModel, write_tiny_qwen3_quantized

AMX_BUILD_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
PLAIN_BUILD_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
AMX_CPUINFO = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n"
PLAIN_CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f\n"


CACHED_VERDICT = amx.process_verdict  # tests replace the module attributes; the cache is this one's


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
    monkeypatch.setattr(amx, "probe_this_machine", lambda: pytest.fail("no probe is needed"))
    verdict = amx.amx_verdict()
    assert verdict.state == state and verdict.amx_allowed


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

    monkeypatch.setattr(amx, "probe_this_machine", probe)
    first = amx.amx_verdict()
    CACHED_VERDICT.cache_clear()  # a new process
    second = amx.amx_verdict()
    assert first == second == AmxVerdict("faults", "the probe died of SIGSEGV") and len(probes) == 1
    assert not second.amx_allowed

    library.write_bytes(b"a rebuilt llama.cpp")  # another size: the old verdict does not apply
    CACHED_VERDICT.cache_clear()
    amx.amx_verdict()
    assert len(probes) == 2


def test_the_real_probe_decodes_a_quantized_model_in_a_child() -> None:
    """Where the build or the CPU has no AMX the kernels llama.cpp built run, and the child
    says so; on an AMX machine it may die of the fault instead, but only the child dies."""
    verdict = amx.run_probe()
    fallback = amx.run_probe(amx.FALLBACK_PROBE_COMMAND)  # the same decode without AMX
    no_extra = amx.run_probe(amx.NO_EXTRA_PROBE_COMMAND)  # and with no extra buffer type
    if amx.build_has_amx(amx.system_info()) and amx.cpu_advertises_amx(amx.read_cpuinfo()):
        assert verdict.state in ("works", "faults"), verdict
    else:
        assert verdict == fallback == no_extra == AmxVerdict("works")


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGSEGV, "SIGSEGV"), (signal.SIGILL, "SIGILL")])
def test_a_probe_that_dies_of_a_signal_means_faults(signum: int, name: str) -> None:
    suicide = (sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signum)})")
    verdict = amx.run_probe(command=suicide)
    assert verdict == AmxVerdict("faults", f"the probe died of {name}")
    assert not verdict.amx_allowed
    assert "faults on it (the probe died of" in verdict.describe()


SEGFAULT = (sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
DECODES = (sys.executable, "-c", f"print({amx.PROBE_OK!r})")


FAILS = (sys.executable, "-c", "raise SystemExit('no llama.cpp')")


@pytest.mark.parametrize(
    ("with_amx", "without_amx", "without_extra", "verdict"),
    [
        (DECODES, SEGFAULT, SEGFAULT, AmxVerdict("works")),  # no fallback is probed
        (SEGFAULT, DECODES, SEGFAULT, AmxVerdict("faults", "the probe died of SIGSEGV")),
        (SEGFAULT, SEGFAULT, DECODES, AmxVerdict("extra-faults", "the probe died of SIGSEGV, and without AMX too")),
        (SEGFAULT, SEGFAULT, SEGFAULT,
         AmxVerdict("crashes", "the probe died of SIGSEGV, and without extra buffer types too")),
        (SEGFAULT, FAILS, DECODES,
         AmxVerdict("inconclusive", "the probe died of SIGSEGV; then the probe exited 1: no llama.cpp")),
    ],
)
def test_where_the_probe_dies_the_narrowest_fallback_that_decodes_is_found(
    monkeypatch, with_amx, without_amx, without_extra, verdict
) -> None:
    """As seen on an H200 machine's Xeon under gVisor: the native build died there with AMX
    and without it (GPU offload included), so "faults" would have promised a fallback that
    also dies. A fallback never seen to decode is not remembered (inconclusive)."""
    monkeypatch.setattr(amx, "PROBE_COMMAND", with_amx)
    monkeypatch.setattr(amx, "FALLBACK_PROBE_COMMAND", without_amx)
    monkeypatch.setattr(amx, "NO_EXTRA_PROBE_COMMAND", without_extra)
    assert amx.probe_this_machine() == verdict


def test_a_build_that_crashes_on_this_cpu_is_an_error_that_says_how_to_rebuild(monkeypatch, tiny_q8) -> None:
    from click.testing import CliRunner

    from edge_embed.cli import cli
    from edge_embed.errors import LlamaCppCrashes

    crashes = AmxVerdict("crashes", "the probe died of SIGSEGV, and without AMX too")
    monkeypatch.setattr(amx, "amx_verdict", lambda: crashes)
    assert not crashes.amx_allowed and crashes.worth_remembering
    with pytest.raises(LlamaCppCrashes) as raised:
        load(tiny_q8)
    assert raised.value.detail == crashes.detail and "-DGGML_NATIVE=OFF" in str(raised.value)
    result = CliRunner().invoke(cli, ["embed", "--model", str(tiny_q8.path), "hi"])
    assert result.exit_code != 0 and not isinstance(result.exception, LlamaCppCrashes), result.output
    assert "llama.cpp dies on this CPU, with or without AMX" in result.output
    assert "llama.cpp dies on this CPU" in CliRunner().invoke(cli, ["doctor"]).stdout


def test_a_server_whose_build_crashes_answers_503_with_the_rebuild_and_logs_it(monkeypatch, tiny_q8, caplog) -> None:
    import httpx
    from serving import running_server

    monkeypatch.setattr(amx, "amx_verdict", lambda: AmxVerdict("crashes", "the probe died of SIGSEGV"))
    with running_server(None, str(tiny_q8.path)) as (url, _):
        # The second request too: a load that failed used to kill the engine thread, and
        # every later request waited forever.
        replies = [httpx.post(url + "/v1/embeddings", json={"input": ["hi"]}, timeout=30) for _ in range(2)]
    assert [reply.status_code for reply in replies] == [503, 503], replies[-1].text
    reply = replies[0]
    assert "-DGGML_NATIVE=OFF" in reply.json()["error"]["message"]
    assert any("llama.cpp dies on this CPU" in record.getMessage() for record in caplog.records)


def test_a_probe_that_hangs_fails_or_is_killed_is_inconclusive_and_not_remembered(monkeypatch, tmp_path) -> None:
    """A timeout on a busy machine, a missing module or a kill says nothing about AMX: the
    fallback holds for this process only, and the next run probes again."""
    hang = (sys.executable, "-c", "import time; time.sleep(30)")
    assert amx.run_probe(command=hang, timeout_s=0.5).state == "inconclusive"
    failing = (sys.executable, "-c", "raise SystemExit('no llama.cpp')")
    assert amx.run_probe(command=failing) == AmxVerdict("inconclusive", "the probe exited 1: no llama.cpp")
    killed = amx.run_probe(command=(sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert killed == AmxVerdict("inconclusive", "the probe died of SIGKILL")
    assert not killed.amx_allowed and "probes again" in killed.describe()

    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path))
    monkeypatch.setattr(amx, "system_info", lambda: AMX_BUILD_INFO)
    monkeypatch.setattr(amx, "read_cpuinfo", lambda: AMX_CPUINFO)
    monkeypatch.setattr(amx, "library_files", lambda: [])
    probes = []
    monkeypatch.setattr(amx, "probe_this_machine", lambda: probes.append(1) or killed)
    assert amx.amx_verdict() == killed
    CACHED_VERDICT.cache_clear()  # a new process
    amx.amx_verdict()
    assert len(probes) == 2


def test_two_first_loads_at_once_share_one_probe(monkeypatch, tmp_path) -> None:
    """A server's first search that reranks loads the embedder and the reranker on two
    threads: both asked for the verdict before either had it, and each ran the probe
    (up to two minutes of a core, twice)."""
    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path))
    monkeypatch.setattr(amx, "system_info", lambda: AMX_BUILD_INFO)
    monkeypatch.setattr(amx, "read_cpuinfo", lambda: AMX_CPUINFO)
    monkeypatch.setattr(amx, "library_files", lambda: [])
    probes = []
    first_probe_started = threading.Event()

    def slow_probe() -> AmxVerdict:
        probes.append(1)
        first_probe_started.set()
        time.sleep(0.3)
        return AmxVerdict("faults", "the probe died of SIGSEGV")

    monkeypatch.setattr(amx, "probe_this_machine", slow_probe)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(amx.amx_verdict)
        first_probe_started.wait(5)
        second = pool.submit(amx.amx_verdict)
        verdicts = {first.result(), second.result()}
    assert verdicts == {AmxVerdict("faults", "the probe died of SIGSEGV")} and len(probes) == 1


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


def test_a_faulting_verdict_takes_amx_out_and_keeps_the_other_extra_buffer_types(monkeypatch, tiny_q8) -> None:
    dropped = []
    real_drop = hardware.drop_cpu_extra_buffer_type  # really dropped: this may be an AMX-faulting host
    monkeypatch.setattr(hardware, "drop_cpu_extra_buffer_type", lambda name: dropped.append(name) or real_drop(name))
    monkeypatch.setattr(amx, "amx_verdict", lambda: AmxVerdict("faults", "the probe died of SIGILL"))
    assert loaded_with_extra_buffer_types(tiny_q8) is True and dropped == ["AMX"]
    assert "AMX" not in hardware.cpu_extra_buffer_types()

    # Where llama.cpp's list cannot be changed, no extra buffer type is used at all.
    monkeypatch.setattr(hardware, "drop_cpu_extra_buffer_type", lambda name: dropped.append(name) or False)
    assert loaded_with_extra_buffer_types(tiny_q8) is False

    monkeypatch.setattr(amx, "amx_verdict", lambda: AmxVerdict("extra-faults", "the probe died of SIGILL"))
    assert loaded_with_extra_buffer_types(tiny_q8) is False and dropped == ["AMX", "AMX"]

    monkeypatch.setattr(amx, "amx_verdict", lambda: AmxVerdict("works"))
    assert loaded_with_extra_buffer_types(tiny_q8) is True and dropped == ["AMX", "AMX"]


def loaded_with_extra_buffer_types(model: TinyModel) -> bool:
    session = load(model)
    try:
        return session.model.params.use_extra_bufts
    finally:
        session.close()


def test_keeping_in_place_moves_the_kept_entries_up_and_nulls_the_rest() -> None:
    array = ctypes.cast((ctypes.c_void_p * 5)(11, 22, 33, 44, None), ctypes.POINTER(ctypes.c_void_p))
    hardware.keep_in_place(array, lambda entry: entry != 22)
    assert [array[i] for i in range(5)] == [11, 33, 44, None, None]
    hardware.keep_in_place(array, lambda entry: False)
    assert [array[i] for i in range(5)] == [None] * 5


DROP_CHILD = """
import contextlib, json, sys
import numpy as np
from edge_embed.modelfile import read_model_info
from edge_embed.runtime import engine, hardware
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, cpu_plan
from edge_embed.testing import write_tiny_qwen3_quantized

engine._backend_init = engine._init_backends  # keep llama.cpp's log on
engine._loader_log_quiet = contextlib.nullcontext  # the loader's log too
import llama_cpp._logger
llama_cpp._logger.set_verbose(True)

model = write_tiny_qwen3_quantized(sys.argv[1])
info = read_model_info(model.path)
plan = cpu_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=1), 256, 1, ())

def embed():
    session = engine.load_session(info, plan, last_pooling=True, extra_buffer_types=True)
    out = np.empty((1, info.n_embd), dtype=np.float32)
    engine.decode_one(session, model.tokenize("abc") + [model.eos_id], out)
    session.close()
    return out[0].tolist()

before = hardware.cpu_extra_buffer_types()
print("LOAD-1", file=sys.stderr, flush=True)
first = embed()
absent = hardware.drop_cpu_extra_buffer_type("NO-SUCH-BUFFER-TYPE")
after_absent = hardware.cpu_extra_buffer_types()
dropped = hardware.drop_cpu_extra_buffer_type(before[-1]) if before else None
print("LOAD-2", file=sys.stderr, flush=True)
second = embed()
print(json.dumps({"before": before, "absent": absent, "after_absent": after_absent, "dropped": dropped,
                  "after": hardware.cpu_extra_buffer_types(), "first": first, "second": second}))
"""


def test_a_dropped_buffer_type_is_gone_from_later_loads_and_vectors_stay_the_same(tmp_path: Path) -> None:
    """In a child (the change is process-wide): llama.cpp's loader names the buffer type it
    prefers for the weights in its log (here "cannot be used with preferred buffer type
    CPU_REPACK": x86 repacks no Q8_0); after the drop it no longer offers it."""
    if not amx.amx_verdict().amx_allowed:
        pytest.skip("the child loads with every extra buffer type, AMX included, which faults here")
    done = subprocess.run(
        [sys.executable, "-c", DROP_CHILD, str(tmp_path / "tiny-q8_0.gguf")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["before"]:
        pytest.skip("this llama.cpp build has no extra CPU buffer types")
    assert result["absent"] is True and result["after_absent"] == result["before"]
    name = result["before"][-1]
    assert result["dropped"] is True and result["after"] == result["before"][:-1]
    first_load, second_load = done.stderr.split("LOAD-1", 1)[1].split("LOAD-2", 1)
    assert name in first_load and name not in second_load, first_load[-2000:]
    assert np.allclose(result["first"], result["second"], atol=1e-6)


def test_without_extra_buffer_types_a_quantized_model_embeds_the_same(tiny_q8: TinyModel) -> None:
    if not amx.amx_verdict().amx_allowed:
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
    assert "AMX buffer type (weight repacking stays)" in text
    assert amx.FALLBACK_COST in text


def test_the_cache_file_is_json_in_the_cache_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path))
    amx.write_cached_verdict("key", AmxVerdict("works"))
    assert amx.read_cached_verdict("key") == AmxVerdict("works")
    assert amx.read_cached_verdict("other") is None
    (tmp_path / amx.CACHE_FILE).write_text("not json")
    assert amx.read_cached_verdict("key") is None
