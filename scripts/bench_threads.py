#!/usr/bin/env python
"""llama.cpp's CPU threads and OpenMP's wait policy, on a quiet machine and a busy one.

On a busy desktop the default (one llama.cpp thread per core) can be slower than one
thread: OpenMP's threads spin while they wait for each other, and a spinning thread that
the OS took its core from holds up every other one (issue 18: --threads 1 did 492-653
tok/s, the default 196-237, and a 3-token request took 1.3-1.7 s instead of 0.01 s).

For each thread count (1, half the cores, all of them) and wait policy (``spin``: OpenMP's
own default, libgomp spinning 300000 times before it sleeps; ``passive``:
``OMP_WAIT_POLICY=PASSIVE``, sleep at once, what edge-embed sets unless the user chose;
``spincount0``: ``GOMP_SPINCOUNT=0``), a fresh process loads the model and measures

* ``short_ms``: the median latency of embedding one short text (``--short-runs`` times), and
* ``tok_s``: tokens/s embedding ``--texts`` texts of one sentence each in one call (best of 2),

first with no extra load, then while one busy-loop process per core competes for the CPU
(a build, a browser tab, another model). Both conditions run in the same run; each row
carries the load average, since on a shared machine nothing is ever fully idle.

Usage:
    python scripts/bench_threads.py                       # the shape-true 0.6B F16 (in .bench/)
    python scripts/bench_threads.py --model tiny
    python scripts/bench_threads.py --short-runs 5 --texts 1      # quicker, on a slow machine
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".bench"
# "spin": OpenMP's own default, which edge_embed.runtime replaces by PASSIVE unless the
# user chose a policy: the child takes that setting back out before llama.cpp loads.
POLICIES = {"spin": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spincount0": {"GOMP_SPINCOUNT": "0"}}
SHORT_TEXT = "rotate keys"
LONG_TEXTS = [f"text {i}: rotate the API keys of service {i} every quarter, and write down who did it" for i in range(4)]


def measure(model: str, policy: str, threads: int, short_runs: int, texts: int) -> dict:
    """In the child process: load, warm up, then the two figures."""
    import edge_embed.runtime
    from edge_embed.api import TextEmbedder
    from edge_embed.runtime.plan import RuntimeSettings

    if policy == "spin":
        os.environ.pop("OMP_WAIT_POLICY", None)
    assert os.environ.get("OMP_WAIT_POLICY") == POLICIES[policy].get("OMP_WAIT_POLICY"), edge_embed.runtime

    embedder = TextEmbedder.open(model, RuntimeSettings(force_cpu=True, ctx=512, threads=threads))
    engine = embedder.engine()
    embedder.embed([SHORT_TEXT])
    short = []
    for _ in range(short_runs):
        started = time.perf_counter()
        embedder.embed([SHORT_TEXT])
        short.append(time.perf_counter() - started)
    tokens = sum(len(engine.input_tokens(text)) for text in LONG_TEXTS[:texts])
    passes = []
    for _ in range(2):
        started = time.perf_counter()
        embedder.embed(LONG_TEXTS[:texts])
        passes.append(time.perf_counter() - started)
    short_tokens = len(engine.input_tokens(SHORT_TEXT))
    embedder.close()
    return {"short_ms": statistics.median(short) * 1e3, "tok_s": tokens / min(passes), "short_tokens": short_tokens}


def spin() -> None:
    while True:
        pass


def run_child(model: Path, threads: int, policy: str, short_runs: int, texts: int) -> dict:
    env = {**{k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}, **POLICIES[policy]}
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(model), policy, str(threads), str(short_runs), str(texts)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="0.6b", choices=("0.6b", "tiny"))
    parser.add_argument("--short-runs", type=int, default=20, help="short requests timed per process (median)")
    parser.add_argument("--texts", type=int, default=len(LONG_TEXTS), help="texts of the throughput call")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], *(int(value) for value in args.child[2:]))))
        return
    from edge_embed.testing import write_shape_true_qwen3, write_tiny_qwen3

    CACHE.mkdir(exist_ok=True)
    model = CACHE / ("shape-0.6b-F16.gguf" if args.model == "0.6b" else "tiny.gguf")
    if not model.exists():
        write_shape_true_qwen3(model, "0.6b", "F16") if args.model == "0.6b" else write_tiny_qwen3(model)
    cores = len(os.sched_getaffinity(0))
    thread_counts = sorted({1, max(cores // 2, 1), cores})
    for condition in ("no extra load", "competing load"):
        spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(cores if condition == "competing load" else 0)]
        for process in spinners:
            process.start()
        try:
            for threads in thread_counts:
                for policy in POLICIES:
                    before = round(os.getloadavg()[0], 2)
                    row = run_child(model, threads, policy, args.short_runs, args.texts)
                    row = {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
                    print(json.dumps({"bench": "threads", "model": args.model, "condition": condition, "threads": threads,
                                      "policy": policy, **row, "load": [before, round(os.getloadavg()[0], 2)]}), flush=True)
        finally:
            for process in spinners:
                process.terminate()
                process.join()


if __name__ == "__main__":
    main()
