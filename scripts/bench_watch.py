#!/usr/bin/env python3
"""`edge-embed watch` benchmark: save-to-searchable latency, a big checkout, idle cost.

1. Latency: one Markdown file of a 200-file tree edited 50 times under a running
   `edge-embed watch` (a separate process, as a user runs it); the clock runs from the
   write until the new text is committed to the index (a reader sees it). Baselines from
   the same run: the file's own embedding time (the engine alone, model loaded), and what
   it took before watch existed: a fresh `edge-embed index` process after the save.
2. A `git checkout` between two branches that differ in 5,000 short notes (2,500 edited,
   1,250 deleted, 1,250 added) under a library watcher: the index must equal a fresh `index` of
   the final tree (same files, chunks, vectors), and no file may be embedded twice.
3. Idle cost with 10,000 watched files: CPU (of one core) and RSS of `serve --watch`
   against `serve` alone on the same index, over a window after the start reconcile.

    python scripts/bench_watch.py                       # tiny model, 60 s idle windows
    python scripts/bench_watch.py --model PATH.gguf     # e.g. MiniLM for part 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import edge_embed
from edge_embed.indexer import IndexOptions
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.store import Store
from edge_embed.testing import write_tiny_qwen3
from edge_embed.watch import WatchSettings, read_watch_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import generated_corpus, small_files  # noqa: E402

CPU = RuntimeSettings(force_cpu=True, threads=1)
OPTIONS = IndexOptions(chunk_tokens=256, overlap=16)
CLI = [sys.executable, "-m", "edge_embed"]


def wait_for(check, timeout: float, what: str, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(every)


def contains(db: Path, word: str) -> bool:
    with Store.open(db, create=False) as store:
        return bool(store._conn.execute("SELECT 1 FROM chunks WHERE text LIKE ? LIMIT 1", (f"%{word}%",)).fetchall())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


# ------------------------------------------------------------------ 1. latency
def latency(model: Path, edits: int, work: Path) -> dict:
    root = generated_corpus(work / "latency", 200)
    db = work / "latency.db"
    with edge_embed.Index.open(db, CPU) as index:
        index.index([root], OPTIONS, model=str(model))
    target = sorted(root.rglob("*.md"))[0]
    original = target.read_text()
    watcher = subprocess.Popen([*CLI, "watch", "--db", str(db), "--threads", "1", "--quiet", "--keep-alive", "never"])
    try:
        wait_for(lambda: (read_watch_state(db) or {}).get("last_reconcile_at"), 120, "the watcher's start")
        samples = []
        for i in range(edits):
            word = f"zebra{i:03d}quokka"
            target.write_text(f"{original}\n## Edit {i}\n\nThis edit mentions {word} once.\n")
            started = time.perf_counter()
            wait_for(lambda: contains(db, word), 60, f"edit {i}")
            samples.append(time.perf_counter() - started)
            time.sleep(0.2)
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=60)
    own = own_embedding_time(model, target)
    word = "finalyak"
    target.write_text(f"{original}\n## Last\n\nThis edit mentions {word}.\n")
    started = time.perf_counter()
    subprocess.run([*CLI, "index", str(root), "--db", str(db), "--threads", "1", "--quiet"], check=True, capture_output=True)
    index_run = time.perf_counter() - started
    assert contains(db, word)
    return {
        "edits": edits,
        "p50_s": round(percentile(samples, 50), 3),
        "p95_s": round(percentile(samples, 95), 3),
        "max_s": round(max(samples), 3),
        "own_embedding_s": round(own, 4),
        "fresh_index_process_s": round(index_run, 3),
    }


def own_embedding_time(model: Path, path: Path) -> float:
    """The edited file's chunks through the engine alone (model loaded): the floor."""
    from edge_embed.chunking import chunk_document
    from edge_embed.runtime.loader import prepare_model

    handle = prepare_model(str(model), CPU)
    engine = handle.load()
    chunks = chunk_document(path.read_text(), name=path.name, kind="markdown", count_tokens=engine.count_tokens,
                            max_tokens=OPTIONS.chunk_tokens, overlap=OPTIONS.overlap)
    texts = [chunk.embed_text for chunk in chunks]
    engine.embed_documents(texts)  # warm
    started = time.perf_counter()
    for _ in range(5):
        engine.embed_documents(texts)
    handle.close()
    return (time.perf_counter() - started) / 5


# ------------------------------------------------------------------ 2. checkout
def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def two_branches(repo: Path, files: int) -> None:
    """main: ``files`` notes; other: half edited, a quarter deleted, a quarter added."""
    rng = random.Random(1)
    small_files(repo, files)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "add", "-A")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "main")
    git(repo, "checkout", "-qb", "other")
    paths = sorted(path for path in repo.rglob("*") if path.is_file() and ".git" not in path.parts)
    rng.shuffle(paths)
    half, quarter = len(paths) // 2, len(paths) // 4
    for path in paths[:half]:
        path.write_text(path.read_text() + f"\n\nEdited on the other branch: {path.stem} {rng.random()}.\n")
    for path in paths[half:half + quarter]:
        path.unlink()
    for i in range(quarter):
        folder = repo / f"added{i % 20:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"new{i:05d}.md").write_text(f"# Added {i}\n\nA note only the other branch has, number {i}.\n")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "add", "-A")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "other")
    git(repo, "checkout", "-q", "main")


def index_rows(db: Path) -> set:
    with Store.open(db, create=False) as store:
        rows = store._conn.execute(
            "SELECT f.relpath, f.content_hash, c.seq, c.text_hash, c.start_line, c.end_line FROM chunks c"
            " JOIN files f ON f.id = c.file_id"
        ).fetchall()
    return {tuple(row) for row in rows}


def index_vectors(db: Path, rows: set) -> dict:
    with Store.open(db, create=False) as store:
        return store.vectors.vectors_for_hashes(list({row[3] for row in rows}))


def checkout(model: Path, files: int, work: Path) -> dict:
    repo = work / "repo"
    repo.mkdir()
    two_branches(repo, files)
    db = work / "checkout.db"
    with edge_embed.Index.open(db, CPU) as index:
        index.index([repo], OPTIONS, model=str(model))
    before_rows = index_rows(db)
    known_texts = {row[3] for row in before_rows}
    batches = []

    class Report:
        def said(self, message):
            print("  watch:", message, file=sys.stderr)

        def applied(self, root, summary, whole):
            batches.append((summary, whole))

    stop = threading.Event()
    thread = threading.Thread(target=lambda: edge_embed.Index.open(db, CPU).watch(
        [repo], OPTIONS, WatchSettings(keep_alive_s=None), stop=stop, model=str(model), report=Report()))
    thread.start()
    wait_for(lambda: batches, 120, "the start reconcile", every=0.05)
    started = time.perf_counter()
    git(repo, "checkout", "-q", "other")
    checkout_s = time.perf_counter() - started
    fresh_db = work / "fresh.db"
    with edge_embed.Index.open(fresh_db, CPU) as index:
        index.index([repo], OPTIONS, model=str(model))
    expected_rows = index_rows(fresh_db)
    expected_vectors = index_vectors(fresh_db, expected_rows)
    wait_for(lambda: index_rows(db) == expected_rows, 600, "the watched index to equal a fresh one", every=0.5)
    settled_s = time.perf_counter() - started
    time.sleep(3)  # anything still to come would show as a second embedding below
    stop.set()
    thread.join()
    rows = index_rows(db)
    vectors = index_vectors(db, rows)
    after = batches[1:]
    new_texts = {row[3] for row in expected_rows} - known_texts
    return {
        "files_changed": files,
        "git_checkout_s": round(checkout_s, 2),
        "settled_s": round(settled_s, 2),
        "batches": len(after),
        "whole_folder_rechecks": sum(whole for _summary, whole in after),
        "files_indexed": sum(summary.indexed for summary, _whole in after),
        "files_removed": sum(summary.removed for summary, _whole in after),
        "texts_embedded": sum(summary.texts_embedded for summary, _whole in after),
        "new_texts": len(new_texts),
        "equal_to_fresh_index": rows == expected_rows,
        # llama.cpp's sums depend on how inputs share a decode: equal up to float rounding
        "vectors_max_abs_diff": float(max(np.abs(vectors[h] - expected_vectors[h]).max() for h in expected_vectors)),
        "vectors_min_cosine": float(min(np.dot(vectors[h], expected_vectors[h]) for h in expected_vectors)),
    }


# ------------------------------------------------------------------ 3. idle cost
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle(db: Path, watch: bool, window: float) -> dict:
    command = [*CLI, "serve", "--db", str(db), "--port", "0", "--threads", "1"] + (["--watch"] if watch else [])
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if watch:
            wait_for(lambda: (read_watch_state(db) or {}).get("last_reconcile_at"), 300, "the start reconcile", every=0.1)
        time.sleep(5)  # settle
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        return {"cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3), "rss_mb": round(rss_mb(server.pid), 1)}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def idle_cost(model: Path, files: int, window: float, work: Path) -> dict:
    root = small_files(work / "idle", files)
    db = work / "idle.db"
    started = time.perf_counter()
    with edge_embed.Index.open(db, CPU) as index:
        index.index([root], OPTIONS, model=str(model))
    print(f"  indexed {files} files in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    served = idle(db, watch=False, window=window)
    watched = idle(db, watch=True, window=window)
    return {
        "files": files,
        "window_s": window,
        "serve": served,
        "serve_watch": watched,
        "watch_rss_beyond_server_mb": round(watched["rss_mb"] - served["rss_mb"], 1),
        "watch_cpu_beyond_server_percent": round(watched["cpu_percent_of_one_core"] - served["cpu_percent_of_one_core"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF for part 1 (default: the tiny test model)")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--checkout-files", type=int, default=5000)
    parser.add_argument("--idle-files", type=int, default=10000)
    parser.add_argument("--idle-window", type=float, default=60.0)
    parser.add_argument("--parts", default="latency,checkout,idle")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        tiny = write_tiny_qwen3(work / "tiny-qwen3-embedding.gguf").path
        results = {}
        parts = args.parts.split(",")
        if "latency" in parts:
            results["latency"] = latency(args.model or tiny, args.edits, work)
            print(json.dumps({"latency": results["latency"]}), flush=True)
        if "checkout" in parts:
            results["checkout"] = checkout(tiny, args.checkout_files, work)
            print(json.dumps({"checkout": results["checkout"]}), flush=True)
        if "idle" in parts:
            results["idle"] = idle_cost(tiny, args.idle_files, args.idle_window, work)
            print(json.dumps({"idle": results["idle"]}), flush=True)
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
