#!/usr/bin/env python3
"""Reranker latency per candidate on this CPU, against embedding the same chunks, same run.

The reranker is a shape-true random Qwen3-Reranker-0.6B Q8_0 GGUF (pooling RANK, the chat
markers and a yes/no classifier head, written once into .bench/ by this script): speed
depends on shapes, not on trained values, so the figures hold for the real model; its
*quality* cannot be measured here (no real reranker weights offline). The baseline is the
shape-true Qwen3-Embedding-0.6B Q8_0 (the same transformer) embedding the same chunks as
documents: a reranker pass costs that plus the prompt around the chunk (~70 tokens) and
the query. Runs alternate ABBA so a noisy shared machine hurts both alike; medians are
compared.

    python scripts/bench_rerank.py                      # 20 candidates of ~200 tokens, 2 rounds
    python scripts/bench_rerank.py --candidates 10 --chunk-tokens 500
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, make_plan
from edge_embed.runtime.reranker import RERANK_CTX, Reranker
from edge_embed.testing import write_shape_true_qwen3

BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench"
WORDS = "the of and to in is for on that with as by this from are be or an it at which can".split()
QUERY = "how do I rotate the API keys of the deployment service"


def bench_model(kind: str) -> Path:
    """The shape-true 0.6B Q8_0 embedding model or reranker, written once."""
    path = BENCH_DIR / f"qwen3-{kind}-0.6b-Q8_0-random.gguf"
    if not path.exists():
        BENCH_DIR.mkdir(exist_ok=True)
        print(f"writing {path.name} (once)...", flush=True)
        write_shape_true_qwen3(path, "0.6b", "Q8_0", reranker=kind == "reranker")
    return path


def cpu_plan(path: Path, threads: int):
    info = read_model_info(path)
    shape = ModelShape.from_model_info(info)
    return info, make_plan(shape, RuntimeSettings(ctx=RERANK_CTX, threads=threads), gpu=None, offload_supported=False)


def chunks(embedder: Embedder, count: int, tokens: int, seed: int = 0) -> list[str]:
    """``count`` texts of about ``tokens`` tokens each (measured with the model)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words: list[str] = []
        while embedder.count_tokens(" ".join(words)) < tokens:
            words.extend(rng.choice(WORDS) for _ in range(8))
        texts.append(" ".join(words))
    return texts


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    info, plan = cpu_plan(bench_model("embedding"), args.threads)
    embedder = Embedder(info, plan)
    info, plan = cpu_plan(bench_model("reranker"), args.threads)
    reranker = Reranker(info, dataclasses.replace(plan))
    texts = chunks(embedder, args.candidates, args.chunk_tokens)
    prompt_tokens = sum(len(reranker.prompt_tokens(QUERY, text)) for text in texts)
    document_tokens = sum(len(embedder.input_tokens(text)) for text in texts)
    runs = {"rerank": [], "embed": []}
    jobs = {"rerank": lambda: reranker.score(QUERY, texts), "embed": lambda: embedder.embed_documents(texts)}
    timed(jobs["rerank"])  # warm-up: first decodes allocate
    timed(jobs["embed"])
    for _ in range(args.rounds):
        for name in ("rerank", "embed", "embed", "rerank"):
            runs[name].append(timed(jobs[name]))
    rerank_s, embed_s = statistics.median(runs["rerank"]), statistics.median(runs["embed"])
    n = args.candidates
    print(f"{n} candidates of ~{args.chunk_tokens} tokens, {args.threads} threads, batch {plan.n_batch}")
    print(f"rerank: {rerank_s / n * 1000:.0f} ms per candidate ({prompt_tokens / n:.0f} prompt tokens each, "
          f"{prompt_tokens / rerank_s:.0f} tokens/s); {rerank_s:.1f} s for all {n}")
    print(f"embed the same chunks: {embed_s / n * 1000:.0f} ms per chunk ({document_tokens / n:.0f} tokens each, "
          f"{document_tokens / embed_s:.0f} tokens/s)")
    print(f"rerank / embed time: {rerank_s / embed_s:.2f}x (token ratio {prompt_tokens / document_tokens:.2f}x)")
    reranker.close()
    embedder.close()


if __name__ == "__main__":
    main()
