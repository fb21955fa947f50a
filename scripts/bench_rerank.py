#!/usr/bin/env python3
"""Reranker latency per candidate on this CPU, against embedding inputs of the same length.

The reranker is a shape-true random Qwen3-Reranker-0.6B Q8_0 GGUF (pooling RANK, the chat
markers and a yes/no classifier head, written once into .bench/ by this script): speed
depends on shapes and token counts, not on trained values, so the figures hold for the
real model; its *quality* cannot be measured here (no real reranker weights offline).

Each candidate's prompt is made ``--prompt-tokens`` long, at least the template and query
(the test vocabulary spells text byte by byte, so those alone are ~350 tokens here; with
the real tokenizer they are ~80, so a 350-token prompt costs here what the template, a
query and a ~270-token chunk cost with the real model). The baseline is the
shape-true Qwen3-Embedding-0.6B Q8_0 (the same transformer) embedding documents of the
same token count: the ratio says what RANK pooling and the classifier head add. Runs
alternate ABBA so a noisy shared machine hurts both alike; medians are compared.

    python scripts/bench_rerank.py                         # 4 candidates of 300 tokens, 1 round
    python scripts/bench_rerank.py --candidates 8 --prompt-tokens 600 --rounds 2
"""

from __future__ import annotations

import argparse
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


def text_of(count_tokens, tokens: int, rng: random.Random) -> str:
    """Words until ``count_tokens`` of the text reaches ``tokens``."""
    words: list[str] = []
    while count_tokens(" ".join(words)) < tokens:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def rerank_chunks(reranker: Reranker, count: int, prompt_tokens: int, rng: random.Random) -> list[str]:
    """Chunks whose whole prompt (template + query + chunk) is ``prompt_tokens`` long."""
    template = len(reranker.prompt_tokens(QUERY, ""))
    return [text_of(lambda t: len(reranker.prompt_tokens(QUERY, t)), max(prompt_tokens, template), rng) for _ in range(count)]


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    info, plan = cpu_plan(bench_model("embedding"), args.threads)
    embedder = Embedder(info, plan)
    info, plan = cpu_plan(bench_model("reranker"), args.threads)
    reranker = Reranker(info, plan)
    rng = random.Random(0)
    chunks = rerank_chunks(reranker, args.candidates, args.prompt_tokens, rng)
    documents = [text_of(lambda t: len(embedder.input_tokens(t)), args.prompt_tokens, rng) for _ in chunks]
    rerank_tokens = sum(len(reranker.prompt_tokens(QUERY, chunk)) for chunk in chunks)
    embed_tokens = sum(len(embedder.input_tokens(doc)) for doc in documents)
    jobs = {"rerank": lambda: reranker.score(QUERY, chunks), "embed": lambda: embedder.embed_documents(documents)}
    runs: dict[str, list[float]] = {"rerank": [], "embed": []}
    for _ in range(args.rounds):
        for name in ("rerank", "embed", "embed", "rerank"):
            runs[name].append(timed(jobs[name]))
            print(f"  {name}: {runs[name][-1]:.1f} s", flush=True)
    rerank_s, embed_s = statistics.median(runs["rerank"]), statistics.median(runs["embed"])
    n = args.candidates
    print(f"{n} candidates, {args.threads} threads, batch {plan.n_batch}, ctx {plan.n_ctx}")
    print(f"rerank: {rerank_s / n * 1000:.0f} ms per candidate ({rerank_tokens / n:.0f} prompt tokens each, "
          f"{rerank_tokens / rerank_s:.1f} tokens/s)")
    print(f"embed:  {embed_s / n * 1000:.0f} ms per input ({embed_tokens / n:.0f} tokens each, "
          f"{embed_tokens / embed_s:.1f} tokens/s)")
    print(f"rerank / embed, per token: {(rerank_s / rerank_tokens) / (embed_s / embed_tokens):.2f}x")
    reranker.close()
    embedder.close()


if __name__ == "__main__":
    main()
