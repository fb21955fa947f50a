#!/usr/bin/env python
"""What `edge-embed serve` buys: query latency through a warm server, and packing.

1. ``query``: wall time of real `edge-embed query` processes (start to exit), each model:
   * cold: ``--no-server``, the model loaded by every process (today's path);
   * warm: the same command while `edge-embed serve --preload` runs for the index;
   p50/p95 of each and the ratio cold/warm. The warm client's own overhead is the warm
   wall time minus the server's own time for the same search (its ``Server-Timing``
   header: embedding + search), measured right after each warm run, median of those
   differences: process start, imports, HTTP, rendering; and, robust to a busy machine,
   the client process's own CPU time (user + system).
2. ``throughput``: concurrent clients (16) each sending single texts to /v1/embeddings,
   against the engine embedding the same texts in-process in one call: tokens/s ratio
   (the server packs concurrent requests into shared decodes; ``inputs_per_round`` from
   /health says how many texts each engine round embedded on average).

Models: the tiny test model and the shape-true random Qwen3-Embedding-0.6B (Q8_0, or F16
with --f16) from edge_embed.testing, both on the CPU, written once into --cache (.bench/).
Both sides of every ratio run in the same run; each row carries the load average, since
on a shared machine wall times are mostly waiting for a core.

Usage:
    python scripts/bench_serve.py                 # both models, 20 queries each
    python scripts/bench_serve.py --quick         # tiny model only, fewer runs
    python scripts/bench_serve.py --no-tiny --runs 10 --files 6 --texts-per-client 2
"""

from __future__ import annotations

import argparse
import compileall
import concurrent.futures
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

import edge_embed
from edge_embed.api import Index, TextEmbedder
from edge_embed.indexer import IndexOptions
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.server.discovery import find_server
from edge_embed.testing import write_shape_true_qwen3, write_tiny_qwen3

QUERY = "how do I rotate the API keys"
CLIENTS = 16
CTX = 512
RUNTIME = RuntimeSettings(force_cpu=True, ctx=CTX)  # the throughput run's server gets the same --ctx
CACHE = Path(__file__).resolve().parent.parent / ".bench"
# What a user runs: the console script next to this Python (PYTHONPATH still picks the
# source tree), else `python -m edge_embed`, which also pays for runpy.
SCRIPT = Path(sys.executable).with_name("edge-embed")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "edge_embed"]


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=20) if len(values) > 1 else [values[0]] * 19
    return statistics.median(values), cuts[18]


def write_corpus(folder: Path, files: int = 50) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        lines = [f"# Note {i}", f"Rotate the API keys of service {i} every {i + 30} days."]
        lines += [f"Line {j} of note {i} talks about topic {(i * j) % 17}." for j in range(20)]
        (folder / f"note{i}.md").write_text("\n".join(lines), encoding="utf-8")


def build_index(base: Path, model: Path, files: int) -> Path:
    write_corpus(base / "notes", files)
    db = base / "index.db"
    with Index.open(db, RUNTIME) as index:
        index.index([base / "notes"], IndexOptions(chunk_tokens=256, overlap=0), model=str(model))
    return db


def run_query(db: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `edge-embed query` process.

    The CPU time (user + system of the child) is the client's own cost whatever else
    the machine is doing; wall time includes waiting for the CPU on a busy machine.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [*COMMAND, "query", QUERY, "--db", str(db), "--json", *extra],
        capture_output=True, text=True, env=os.environ,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        raise SystemExit(f"query failed: {result.stderr}")
    return elapsed, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> float:
    """The 1-minute load average: how busy the (shared) machine was."""
    return round(os.getloadavg()[0], 2)


def start_server(db: Path | None, model: Path | None, *flags: str) -> tuple[subprocess.Popen, str]:
    """`edge-embed serve --preload` in a subprocess; returns once its model is loaded."""
    args = [sys.executable, "-m", "edge_embed", "serve", "--port", "0", "--preload", *flags]
    args += ["--db", str(db)] if db else ["--model", str(model)]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=os.environ)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        info = find_server(db=str(db.resolve())) if db else find_server(model=str(model.resolve()))
        if info is not None and info.pid == process.pid:
            try:
                if httpx.get(info.base_url + "/health", timeout=5).json()["loaded"]:
                    return process, info.base_url
            except httpx.HTTPError:
                pass
        if process.poll() is not None:
            raise SystemExit(f"serve exited: {process.stderr.read()}")
        time.sleep(0.2)
    raise SystemExit("serve did not become ready")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


def server_time(http: httpx.Client) -> float:
    """Seconds the server itself spent on one search (embed + search), from Server-Timing."""
    answer = http.post("/v1/search", json={"query": QUERY})
    answer.raise_for_status()
    return float(answer.headers["server-timing"].partition(";dur=")[2]) / 1e3


def bench_query(name: str, model: Path, runs: int, workdir: Path, files: int) -> dict:
    db = build_index(workdir / f"{name}-index", model, files)
    load_before = load()
    cold = [run_query(db, "--no-server")[0] for _ in range(runs)]
    server, base_url = start_server(db, None)
    warm, warm_cpu, served = [], [], []
    try:
        run_query(db)  # first request warms the server's caches
        with httpx.Client(base_url=base_url, timeout=600) as http:
            for _ in range(runs):  # alternating, so both series see the same spells of load
                wall_s, cpu_s = run_query(db)
                warm.append(wall_s)
                warm_cpu.append(cpu_s)
                served.append(server_time(http))
    finally:
        stop_server(server)
    cold_p50, cold_p95 = percentiles(cold)
    warm_p50, warm_p95 = percentiles(warm)
    server_p50, _ = percentiles(served)
    return {
        "model": name, "cold_p50_ms": cold_p50 * 1e3, "cold_p95_ms": cold_p95 * 1e3,
        "warm_p50_ms": warm_p50 * 1e3, "warm_p95_ms": warm_p95 * 1e3, "ratio": cold_p50 / warm_p50,
        "server_p50_ms": server_p50 * 1e3,
        "client_overhead_ms": statistics.median(w - s for w, s in zip(warm, served)) * 1e3,  # of neighbours in time
        "client_cpu_p50_ms": statistics.median(warm_cpu) * 1e3, "load": [load_before, load()],
    }


@dataclass
class Pass:
    """One timed pass over the texts: wall seconds and CPU seconds spent (by process)."""

    wall_s: float
    cpu_s: dict[str, float]


def in_process_pass(embedder: TextEmbedder, texts: list[str]) -> tuple[Pass, int]:
    """The engine embedding every text in one call: (pass, tokens)."""
    engine = embedder.engine()
    tokens, started, cpu = engine.stats.tokens, time.perf_counter(), time.process_time()
    embedder.embed(texts)
    elapsed = Pass(time.perf_counter() - started, {"in_process": time.process_time() - cpu})
    return elapsed, engine.stats.tokens - tokens


def served_pass(server: subprocess.Popen, base_url: str, shares: list[list[str]]) -> tuple[Pass, int, dict]:
    """Each share sent text by text by its own client, all clients at once:
    (pass, tokens, what /health counted meanwhile: engine rounds and inputs).

    The clients exist before the clock starts, as a service's clients do: creating an
    httpx.Client costs ~50 ms of CPU (its SSL context), which would otherwise be charged
    to the server's throughput."""

    def client(http: httpx.Client, mine: list[str]) -> int:
        used = 0
        for text in mine:
            answer = http.post("/v1/embeddings", json={"input": text})
            answer.raise_for_status()
            used += answer.json()["usage"]["prompt_tokens"]
        return used

    https = [httpx.Client(base_url=base_url, timeout=600) for _ in shares]
    try:
        before = httpx.get(base_url + "/health").json()
        started, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu_s(server.pid)
        with concurrent.futures.ThreadPoolExecutor(len(shares)) as pool:
            tokens = sum(pool.map(client, https, shares))
        wall_s = time.perf_counter() - started
        cpu_s = {"server": process_cpu_s(server.pid) - server_cpu, "clients": time.process_time() - cpu}
        after = httpx.get(base_url + "/health").json()
    finally:
        for http in https:
            http.close()
    counted = {key: after[key] - before[key] for key in ("rounds", "inputs_embedded")}
    return Pass(wall_s, cpu_s), tokens, counted


def bench_throughput(name: str, model: Path, clients: int, per_client: int, repeats: int) -> dict:
    """Both sides ``repeats`` times, alternating, so both see the same spells of load;
    the best pass of each side (the one least slowed by other jobs) gives the ratio."""
    texts = [f"client {c} text {t}: rotate the API keys of service {c * t} every quarter" for c in range(clients) for t in range(per_client)]
    shares = [texts[c * per_client:(c + 1) * per_client] for c in range(clients)]
    load_before = load()
    embedder = TextEmbedder.open(str(model), RUNTIME)
    embedder.embed(texts[:4])  # warm-up
    server, base_url = start_server(None, model, "--ctx", str(CTX))  # the in-process engine's settings
    local_passes, served_passes, counted = [], [], []
    try:
        served_pass(server, base_url, [texts[:1]])  # warm-up
        for _ in range(repeats):
            elapsed, tokens = in_process_pass(embedder, texts)
            local_passes.append(elapsed)
            elapsed, served_tokens, rounds = served_pass(server, base_url, shares)
            served_passes.append(elapsed)
            counted.append(rounds)
            assert served_tokens == tokens, (served_tokens, tokens)
    finally:
        stop_server(server)
        embedder.close()
    local, served = min(local_passes, key=lambda p: p.wall_s), min(served_passes, key=lambda p: p.wall_s)
    return {
        "model": name, "clients": clients, "texts": len(texts), "tokens": tokens, "repeats": repeats,
        "in_process_tok_s": tokens / local.wall_s, "served_tok_s": tokens / served.wall_s,
        "ratio": local.wall_s / served.wall_s,
        "ratios_of_passes": [round(a.wall_s / b.wall_s, 2) for a, b in zip(local_passes, served_passes)],
        "inputs_per_round": sum(c["inputs_embedded"] for c in counted) / max(sum(c["rounds"] for c in counted), 1),
        # where the CPU went in the best passes: the engine alone, vs the server and the HTTP clients
        **{f"{who}_cpu_s": seconds for who, seconds in {**local.cpu_s, **served.cpu_s}.items()},
        "load": [load_before, load()],
    }


def cached_models(cache: Path, tiny: bool, shape_true: str | None) -> dict[str, Path]:
    """The benchmark's GGUF files, written on first use (the 0.6B takes a while) and kept."""
    cache.mkdir(parents=True, exist_ok=True)
    models = {}
    if tiny:
        path = cache / "tiny.gguf"
        models["tiny"] = path if path.exists() else write_tiny_qwen3(path).path
    if shape_true:
        path = cache / f"shape-0.6b-{shape_true}.gguf"
        models[f"0.6b-{shape_true}"] = path if path.exists() else write_shape_true_qwen3(path, "0.6b", shape_true)
    return models


def compile_sources() -> None:
    """Byte-compile edge_embed as pip does at install: the processes timed here must not
    compile its sources on every start (PYTHONDONTWRITEBYTECODE may be set), which no
    installed copy does."""
    compileall.compile_dir(Path(edge_embed.__file__).parent, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model only, 8 queries (unless --runs)")
    parser.add_argument("--runs", type=int, help="query processes of each kind (default 20)")
    parser.add_argument("--f16", action="store_true", help="the 0.6B shape as F16 instead of Q8_0")
    parser.add_argument("--no-tiny", action="store_true", help="only the shape-true 0.6B model")
    parser.add_argument("--files", type=int, default=50, help="files in the indexed corpus")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent clients of the throughput run")
    parser.add_argument("--texts-per-client", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="passes of each throughput side, alternating")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the model files are kept between runs")
    parser.add_argument("--only", choices=("query", "throughput"), help="run one of the two benchmarks")
    args = parser.parse_args()
    runs = args.runs or (8 if args.quick else 20)
    compile_sources()
    models = cached_models(args.cache, not args.no_tiny, None if args.quick else ("F16" if args.f16 else "Q8_0"))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(workdir / "run"))
        os.environ["EDGE_EMBED_CPU"] = "1"
        for name, model in models.items():
            if args.only != "throughput":
                row = bench_query(name, model, runs, workdir, args.files)
                print(json.dumps({"bench": "query", **{k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}}), flush=True)
            if args.only != "query":
                row = bench_throughput(name, model, args.clients, args.texts_per_client, args.repeats)
                print(json.dumps({"bench": "throughput", **{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}}), flush=True)


if __name__ == "__main__":
    main()
