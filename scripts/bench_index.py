#!/usr/bin/env python3
"""Indexing benchmark: pipeline overhead, no-change re-index time, bytes per chunk.

1. End-to-end indexing tokens/s against the engine's own embedding throughput on the
   very same embed texts, same model, same run (shape-true random Qwen3-Embedding-0.6B
   Q8_0, written once into .bench/). The difference is what files, chunking, hashing and
   SQLite cost. The model is loaded before either clock starts (a one-time cost).
2. Wall time of `edge-embed index` (a fresh process, as a user runs it) over a tree of
   10,000 files where nothing changed, against the floor of walking the same tree with
   os.walk + stat in Python.
3. Database bytes per chunk.

    python scripts/bench_index.py                    # 60 files embedded, 10,000 re-indexed
    python scripts/bench_index.py --embed-files 2000 # the full corpus (hours on a CPU)
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_embed.indexer import IndexOptions, Indexer
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.loader import ModelHandle
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, plan_for
from edge_embed.store import Store
from edge_embed.testing import write_shape_true_qwen3, write_tiny_qwen3

BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench"
WORDS = ("index vector query store chunk token model search file folder note python embed "
         "database sqlite keyword rank fusion budget garden travel kernel backup music").split()


def generated_corpus(root: Path, files: int, seed: int = 0) -> Path:
    """Half Markdown notes with headings, half Python modules, 150-600 words each."""
    rng = random.Random(seed)
    for i in range(files):
        folder = root / f"dir{i % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        words = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
        if i % 2:
            body = "".join(f"## {words(3)}\n\n{words(rng.randint(40, 150))}.\n\n" for _ in range(rng.randint(1, 4)))
            (folder / f"note{i:05d}.md").write_text(f"# {words(4)}\n\n{body}")
        else:
            funcs = "".join(
                f"def {rng.choice(WORDS)}_{j}(x):\n    \"\"\"{words(12)}\"\"\"\n    return x + {j}\n\n\n"
                for j in range(rng.randint(3, 12))
            )
            (folder / f"mod{i:05d}.py").write_text(f'"""{words(20)}"""\n\n{funcs}')
    return root


class RecordingEmbedder(Embedder):
    """Keeps the texts the pipeline sent, to replay them through the bare engine."""

    def embed_documents(self, texts, dims=None, on_decode=None):
        self.sent.extend(texts)
        return super().embed_documents(texts, dims, on_decode)


def pipeline_overhead(model_path: Path, files: int, threads: int) -> None:
    info = read_model_info(model_path)
    plan = plan_for(ModelShape.from_model_info(info), RuntimeSettings(threads=threads, force_cpu=True))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = generated_corpus(Path(tmp) / "corpus", files)
        engine = RecordingEmbedder(info, plan, label=str(model_path))
        engine.sent = []
        with Store.open(Path(tmp) / "index.db") as store:
            started = time.perf_counter()
            summary = Indexer(store, ModelHandle.from_embedder(engine), IndexOptions()).run([corpus])
            index_s = time.perf_counter() - started
            stats = store.maintenance.stats()
        bare = Embedder(info, plan)
        tokens_before = bare.stats.tokens
        started = time.perf_counter()
        bare.embed_documents(engine.sent)
        engine_s = time.perf_counter() - started
        tokens = bare.stats.tokens - tokens_before
    print(f"\n1. pipeline overhead ({files} files, {summary.chunks_added} chunks, {tokens} tokens, {info.path.name})")
    print(f"   end-to-end index   {tokens / index_s:8.1f} tokens/s  ({index_s:.1f} s)")
    print(f"   engine alone       {tokens / engine_s:8.1f} tokens/s  ({engine_s:.1f} s)")
    print(f"   ratio {engine_s / index_s:.3f}: the pipeline outside the model costs {100 * (1 - engine_s / index_s):.1f} %")
    print(f"   engine split: tokenize {engine.stats.tokenize_s:.2f} s, decode {engine.stats.decode_s:.1f} s, "
          f"{engine.stats.decodes} decodes")
    print(f"\n3. database: {stats['db_bytes'] / stats['chunks']:,.0f} bytes per chunk at {info.n_embd} dims "
          f"({stats['db_bytes'] / 1e6:.1f} MB for {stats['chunks']} chunks; the vector alone is {4 * info.n_embd} bytes)")


def small_files(root: Path, files: int) -> Path:
    """Many short notes in 100 folders: a no-change re-index only stats them."""
    for i in range(files):
        folder = root / f"dir{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"n{i:05d}.md").write_text(f"# Note {i}\n\n{WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]}\n")
    return root


def noop_reindex(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = small_files(Path(tmp) / "corpus", files)
        model = write_tiny_qwen3(Path(tmp) / "tiny.gguf").path
        db = Path(tmp) / "index.db"
        command = [sys.executable, "-m", "edge_embed", "index", str(corpus), "--db", str(db),
                   "--model", str(model), "--quiet", "--json"]
        first = subprocess.run(command, capture_output=True, text=True, check=True)
        assert '"indexed": %d' % files in first.stdout, first.stdout[-500:]
        walls = []
        for _ in range(3):
            started = time.perf_counter()
            again = subprocess.run(command, capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - started)
            assert '"unchanged": %d' % files in again.stdout
        with Store.open(db) as store:
            stats = store.maintenance.stats()
        floor = []
        for _ in range(3):
            started = time.perf_counter()
            for folder, _dirs, names in os.walk(corpus):
                for name in names:
                    os.stat(os.path.join(folder, name))
            floor.append(time.perf_counter() - started)
        startup = min(
            timed(lambda: subprocess.run([sys.executable, "-c", "import edge_embed.cli.index, edge_embed.indexer"], check=True))
            for _ in range(3)
        )
    print(f"\n2. re-index with nothing changed, {files} files (fresh process, best of 3)")
    print(f"   edge-embed index   {min(walls):6.2f} s   (runs {', '.join(f'{w:.2f}' for w in walls)})")
    print(f"   os.walk + stat     {min(floor):6.2f} s   ratio {min(walls) / min(floor):.1f}x")
    print(f"   of which Python start-up and imports: {startup:.2f} s")
    per_chunk = stats["db_bytes"] / stats["chunks"]
    print(f"   database: {per_chunk:,.0f} bytes per chunk for {stats['chunks']:,} short chunks at 64 dims "
          f"({per_chunk - 256:,.0f} bytes besides the vector)")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embed-files", type=int, default=60)
    parser.add_argument("--reindex-files", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quant", default="Q8_0")
    args = parser.parse_args()
    model = BENCH_DIR / f"qwen3-embedding-0.6b-{args.quant}-random.gguf"
    if not model.exists():
        BENCH_DIR.mkdir(exist_ok=True)
        write_shape_true_qwen3(model, "0.6b", args.quant)
    if args.embed_files:
        pipeline_overhead(model, args.embed_files, args.threads)
    if args.reindex_files:
        noop_reindex(args.reindex_files)


if __name__ == "__main__":
    main()
