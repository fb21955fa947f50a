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
3. ``latency``: a 1-text request alone (idle p50/p95) and while 8 clients post 64-text
   batches back to back (loaded p50/p95), and the bulk tokens/s meanwhile, on this tree's
   scheduler and, in the same run, on the scheduler of ``--baseline-ref`` (the revision
   exported with git archive, run through PYTHONPATH); ``round_ms`` is the idle latency of
   one request that fills one round (--ctx tokens). Goal: loaded p95 <= 3 x idle p95 +
   round_ms, bulk throughput >= 0.9x the baseline's. ``bulk_alone_tok_s``: the same bulk
   clients for half as long without the probe. llama.cpp gets --threads 1.

Models: the tiny test model and the shape-true random Qwen3-Embedding-0.6B (Q8_0, or F16
with --f16) from edge_embed.testing, both on the CPU, written once into --cache (.bench/).
Both sides of every ratio run in the same run; each row carries the load average, since
on a shared machine wall times are mostly waiting for a core.

Usage:
    python scripts/bench_serve.py                 # both models, 20 queries each
    python scripts/bench_serve.py --quick         # tiny model only, fewer runs
    python scripts/bench_serve.py --no-tiny --runs 10 --files 6 --texts-per-client 2
    python scripts/bench_serve.py --quick --only latency --seconds 20
"""

from __future__ import annotations

import argparse
import functools
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
import threading
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
# A person or an agent querying now and then, not in a closed loop: the probe's own CPU
# (client and server side) must not be what the bulk throughput of the two schedulers differs by.
PROBE_PAUSE_S = 0.25
UNBOUNDED_SCHEDULER = "a6d9b27"  # the last revision whose engine rounds took every queued request at once
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


def start_server(
    db: Path | None, model: Path | None, *flags: str, source: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """`edge-embed serve --preload` in a subprocess; returns once its model is loaded.
    ``source``: run the edge_embed package found there (another revision) instead of ours."""
    args = [sys.executable, "-m", "edge_embed", "serve", "--port", "0", "--preload", *flags]
    args += ["--db", str(db)] if db else ["--model", str(model)]
    env = {**os.environ, "PYTHONPATH": str(source)} if source else os.environ
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=source)  # cwd: first on sys.path
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


@functools.cache  # once a run: each model's latency bench compares with the same baseline
def export_revision(ref: str, workdir: Path) -> Path:
    """The edge_embed package as of git ``ref``, in a folder of its own (for PYTHONPATH)."""
    target = workdir / f"rev-{ref}"
    target.mkdir(parents=True)
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", ref, "edge_embed", "models"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    (target / "edge_embed" / "models").mkdir(exist_ok=True)
    for toml in (target / "models").glob("*.toml"):  # installed as edge_embed.models
        toml.rename(target / "edge_embed" / "models" / toml.name)
    found = subprocess.run(
        [sys.executable, "-c", "import edge_embed.server.worker as w; print(w.__file__)"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(target)}, check=True, cwd=target,
    ).stdout.strip()
    if not found.startswith(str(target)):
        raise SystemExit(f"PYTHONPATH did not win over the installed edge_embed: {found}")
    return target


def bulk_texts(client: int, batch: int, size: int) -> list[str]:
    return [f"client {client} batch {batch} text {t}: rotate the API keys of service {t} every quarter" for t in range(size)]


def one_text_latencies(http: httpx.Client, count: int, pause_s: float = 0.0, stop: threading.Event | None = None) -> list[float]:
    """Seconds of ``count`` single-text requests sent one after another (fewer if ``stop``)."""
    latencies = []
    for i in range(count):
        if stop is not None and stop.is_set():
            break
        started = time.perf_counter()
        http.post("/v1/embeddings", json={"input": f"one short text {i}"}).raise_for_status()
        latencies.append(time.perf_counter() - started)
        time.sleep(pause_s)
    return latencies


def under_load(
    base_url: str, clients: int, batch: int, seconds: float, probe: bool = True
) -> tuple[list[float], float, int]:
    """(1-text latencies, bulk tokens/s, bulk requests) while ``clients`` post ``batch``-text
    requests back to back for ``seconds``; the probe (if any) starts once the bulk work queues."""
    stop = threading.Event()

    def bulk(client: int, http: httpx.Client) -> tuple[int, int]:
        tokens, sent = 0, 0
        while not stop.is_set():
            answer = http.post("/v1/embeddings", json={"input": bulk_texts(client, sent, batch)})
            answer.raise_for_status()
            tokens += answer.json()["usage"]["prompt_tokens"]
            sent += 1
        return tokens, sent

    https = [httpx.Client(base_url=base_url, timeout=600) for _ in range(clients + 1)]
    try:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients + 1) as pool:
            workers = [pool.submit(bulk, c, https[c]) for c in range(clients)]
            time.sleep(min(1.0, seconds / 10))
            probing = pool.submit(one_text_latencies, https[-1], 10**6 if probe else 0, PROBE_PAUSE_S, stop)
            time.sleep(seconds)
            stop.set()
            done = [w.result() for w in workers]
            latencies = probing.result()
        elapsed = time.perf_counter() - started
    finally:
        for http in https:
            http.close()
    return latencies, sum(t for t, _ in done) / elapsed, sum(n for _, n in done)


def round_request(base_url: str, budget: int) -> list[str]:
    """Texts whose model inputs fill one round (``budget`` tokens) as closely as they can."""
    texts: list[str] = []
    with httpx.Client(base_url=base_url, timeout=600) as http:
        while True:
            candidate = bulk_texts(99, 0, len(texts) + 1)
            used = http.post("/v1/embeddings", json={"input": candidate}).json()["usage"]["prompt_tokens"]
            if used > budget:
                return texts
            texts = candidate


def latency_pass(model: Path, source: Path | None, clients: int, batch: int, seconds: float) -> dict:
    """One server (``source``: another revision's package): idle latencies, one round's
    latency, then the latencies and the bulk throughput under load."""
    server, base_url = start_server(None, model, "--ctx", str(CTX), "--threads", "1", source=source)
    try:
        with httpx.Client(base_url=base_url, timeout=600) as http:
            one_text_latencies(http, 5)  # warm-up
            idle = one_text_latencies(http, 40, 0.02)
            texts = round_request(base_url, CTX)
            round_s = []
            for _ in range(10):
                started = time.perf_counter()
                http.post("/v1/embeddings", json={"input": texts}).raise_for_status()
                round_s.append(time.perf_counter() - started)
        loaded, bulk_tok_s, bulk_requests = under_load(base_url, clients, batch, seconds)
        _, alone_tok_s, _ = under_load(base_url, clients, batch, seconds / 2, probe=False)
    finally:
        stop_server(server)
    return {"idle": idle, "round_s": statistics.median(round_s), "loaded": loaded, "bulk_tok_s": bulk_tok_s,
            "bulk_requests": bulk_requests, "alone_tok_s": alone_tok_s}


def bench_latency(
    name: str, model: Path, workdir: Path, seconds: float, clients: int, batch: int, ref: str, repeats: int
) -> list[dict]:
    """A 1-text request alone and while ``clients`` post ``batch``-text requests, and the
    bulk throughput meanwhile, on ``ref``'s scheduler and on ours, alternating ``repeats``
    times so both see the same spells of load: latencies pooled, the best bulk pass each."""
    sides = {f"baseline {ref}": export_revision(ref, workdir), "this tree": None}
    passes: dict[str, list[dict]] = {side: [] for side in sides}
    load_before = load()
    for _ in range(repeats):
        for side, source in sides.items():
            passes[side].append(latency_pass(model, source, clients, batch, seconds))
    rows = []
    for side, runs in passes.items():
        idle_p50, idle_p95 = percentiles([v for run in runs for v in run["idle"]])
        loaded_p50, loaded_p95 = percentiles([v for run in runs for v in run["loaded"]])
        rows.append({
            "model": name, "scheduler": side, "idle_p50_ms": idle_p50 * 1e3, "idle_p95_ms": idle_p95 * 1e3,
            "round_ms": statistics.median(run["round_s"] for run in runs) * 1e3, "loaded_p50_ms": loaded_p50 * 1e3,
            "loaded_p95_ms": loaded_p95 * 1e3, "probes": sum(len(run["loaded"]) for run in runs),
            "bulk_tok_s": max(run["bulk_tok_s"] for run in runs),
            "bulk_tok_s_of_passes": [round(run["bulk_tok_s"]) for run in runs],
            "bulk_alone_tok_s": max(run["alone_tok_s"] for run in runs),  # no probe: the bulk work alone
            "bulk_alone_tok_s_of_passes": [round(run["alone_tok_s"]) for run in runs],
            "load": [load_before, load()],
        })
    baseline, current = rows
    current["goal_p95_ms"] = 3 * current["idle_p95_ms"] + current["round_ms"]
    current["latency_goal_met"] = current["loaded_p95_ms"] <= current["goal_p95_ms"]
    current["throughput_ratio"] = current["bulk_tok_s"] / baseline["bulk_tok_s"]
    current["throughput_goal_met"] = current["throughput_ratio"] >= 0.9
    current["alone_throughput_ratio"] = current["bulk_alone_tok_s"] / baseline["bulk_alone_tok_s"]
    return rows


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
    parser.add_argument("--repeats", type=int, default=3, help="passes of each throughput/latency side, alternating")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the model files are kept between runs")
    parser.add_argument("--only", choices=("query", "throughput", "latency"), help="run one of the benchmarks")
    parser.add_argument("--seconds", type=float, default=20, help="how long the latency run's bulk clients post")
    parser.add_argument("--bulk-clients", type=int, default=8, help="clients posting batches in the latency run")
    parser.add_argument("--bulk-batch", type=int, default=64, help="texts per bulk request in the latency run")
    parser.add_argument("--baseline-ref", default=UNBOUNDED_SCHEDULER,
                        help="git revision whose scheduler the latency run compares with")
    args = parser.parse_args()
    runs = args.runs or (8 if args.quick else 20)
    compile_sources()
    models = cached_models(args.cache, not args.no_tiny, None if args.quick else ("F16" if args.f16 else "Q8_0"))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(workdir / "run"))
        os.environ["EDGE_EMBED_CPU"] = "1"
        for name, model in models.items():
            if args.only == "latency":
                rows = bench_latency(
                    name, model, workdir, args.seconds, args.bulk_clients, args.bulk_batch, args.baseline_ref, args.repeats
                )
                for row in rows:
                    print(json.dumps({"bench": "latency", **{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}}), flush=True)
                continue
            if args.only != "throughput":
                row = bench_query(name, model, runs, workdir, args.files)
                print(json.dumps({"bench": "query", **{k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}}), flush=True)
            if args.only != "query":
                row = bench_throughput(name, model, args.clients, args.texts_per_client, args.repeats)
                print(json.dumps({"bench": "throughput", **{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}}), flush=True)


if __name__ == "__main__":
    main()
