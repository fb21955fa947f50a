#!/usr/bin/env python3
"""Embedding throughput: edge-embed's engine against plain ``Llama.embed``, same run.

Both embed the same texts (mixed lengths, 50 to 600 tokens) with the same shape-true
random Qwen3-Embedding-0.6B Q8_0 GGUF (written once into .bench/ by this script), the
same context and micro-batch. ``Llama.embed`` packs inputs up to its ``n_batch``, which is
also the longest input it accepts (longer ones are cut, EOS lost), so it needs
``n_batch >= 600`` here: 1024. The engine decouples the two: any input up to the context
fits, and the packing budget per decode is a separate lever (``--budgets``). Runs
alternate in ABBA order so a noisy shared machine hurts both alike; best and median runs
are compared. The engine's own timers say where its time goes.

    python scripts/bench_embed.py                 # 16 texts, engine budgets 256,512,1024
    python scripts/bench_embed.py --texts 48 --budgets 512
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import numpy as np

from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.plan import ModelShape, Plan, RuntimeSettings, make_plan
from edge_embed.testing import write_shape_true_qwen3

BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench"
WORDS = "the of and to in is for on that with as by this from are be or an it at which can".split()


def model_path(shape: str, quant: str) -> Path:
    path = BENCH_DIR / f"qwen3-embedding-{shape}-{quant}-random.gguf"
    if not path.exists():
        BENCH_DIR.mkdir(exist_ok=True)
        print(f"writing {path.name} (once)...")
        write_shape_true_qwen3(path, shape, quant)
    return path


def mixed_texts(embedder: Embedder, count: int, seed: int = 0) -> list[str]:
    """Texts whose token counts spread evenly over 50..600 (measured with the model)."""
    rng = random.Random(seed)
    texts = []
    for target in np.linspace(50, 600, count).astype(int):
        words: list[str] = []
        while embedder.count_tokens(" ".join(words)) < target:
            words.extend(rng.choice(WORDS) for _ in range(8))
        texts.append(" ".join(words))
    rng.shuffle(texts)
    return texts


def plan_for_bench(info, threads: int, budget: int, ubatch: int) -> Plan:
    """The CPU plan, with the budget and micro-batch under test."""
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=threads), gpu=None, offload_supported=False)
    return dataclasses.replace(plan, n_ctx=2048, n_batch=budget, n_ubatch=min(ubatch, budget))


def time_engine(embedder: Embedder, texts: list[str]) -> tuple[float, int]:
    before = embedder.stats.tokens
    started = time.perf_counter()
    embedder.embed_documents(texts)
    return time.perf_counter() - started, embedder.stats.tokens - before


def time_llama_embed(llama, texts: list[str]) -> float:
    started = time.perf_counter()
    llama.embed(texts, normalize=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budgets", default="256,512,1024", help="the engine's token budgets per decode")
    parser.add_argument("--baseline-batch", type=int, default=1024,
                        help="Llama.embed's n_batch (>= the longest text, else it cuts texts)")
    parser.add_argument("--ubatch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quant", default="Q8_0")
    args = parser.parse_args()

    import llama_cpp

    path = model_path("0.6b", args.quant)
    info = read_model_info(path)
    print(f"model: {path.name} ({info.file_size / 1e6:.0f} MB), threads {args.threads}")
    print(f"Llama.embed: n_batch {args.baseline_batch}; both: n_ctx 2048, n_ubatch <= {args.ubatch}")
    print(f"{'budget':>6} {'ubatch':>6} {'engine tok/s':>13} {'Llama.embed tok/s':>18} {'ratio':>6}   engine time split")
    for budget in (int(b) for b in args.budgets.split(",")):
        plan = plan_for_bench(info, args.threads, budget, args.ubatch)
        engine = Embedder(info, plan)
        texts = mixed_texts(engine, args.texts)
        llama = llama_cpp.Llama(
            model_path=str(path), embedding=True, n_ctx=plan.n_ctx, n_batch=args.baseline_batch,
            n_ubatch=plan.n_ubatch, n_threads=args.threads, n_threads_batch=args.threads, verbose=False,
        )
        engine_s, llama_s, tokens = [], [], 0
        for repeat in range(args.repeats):  # ABBA order: drift in machine load hits both alike
            if repeat % 2:
                llama_s.append(time_llama_embed(llama, texts))
            seconds, tokens = time_engine(engine, texts)
            engine_s.append(seconds)
            if not repeat % 2:
                llama_s.append(time_llama_embed(llama, texts))
        stats = engine.stats
        split = (f"tokenize {stats.tokenize_s / stats.texts * len(texts) * 1e3:.1f} ms, "
                 f"pack {stats.pack_s * 1e3:.2f} ms, decode {stats.decode_s / args.repeats:.1f} s, "
                 f"{stats.decodes // args.repeats} decodes")
        engine_rate, llama_rate = tokens / min(engine_s), tokens / min(llama_s)
        print(f"{budget:>6} {plan.n_ubatch:>6} {engine_rate:>13.1f} {llama_rate:>18.1f} "
              f"{engine_rate / llama_rate:>5.2f}x   {split}")
        print(f"       runs engine {[round(s, 1) for s in engine_s]} s, Llama.embed {[round(s, 1) for s in llama_s]} s; "
              f"{tokens} tokens, median ratio {statistics.median(llama_s) / statistics.median(engine_s):.2f}x")
        engine.close()
        llama.close()


if __name__ == "__main__":
    main()
