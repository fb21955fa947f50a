#!/usr/bin/env python3
"""CPU embedding speed: the AMX fallback's cost, and the 0.6B against the 4B, same run.

Two questions the first run on a laptop or a cloud VM depends on:

* What does loading without llama.cpp's extra buffer types cost (the fallback that
  avoids AMX kernels that fault, runtime/amx.py)? On a CPU without AMX the extra buffer
  type is the weight repacking for AVX2/AVX-512 kernels; the fallback gives it up too.
* How much faster is the 0.6B (the default without a GPU) than the 4B (the default with
  one)? That is the reason for the CPU default.

Every configuration embeds the same texts (mixed lengths, 40 to 240 tokens) with
shape-true random Qwen3-Embedding GGUFs written once into .bench/ (the speed of llama.cpp
depends on shapes and quantization, not on trained values). Runs go in ABBA order so that
drift in the machine's load hits each configuration alike; the best run of each counts.

    python scripts/bench_cpu_models.py                  # 0.6B Q8_0 on/off, 4B Q4_K_M on/off
    python scripts/bench_cpu_models.py --skip-4b --repeats 4
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time

from bench_embed import WORDS, model_path

from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, make_plan


@dataclasses.dataclass
class Config:
    label: str
    shape: str
    quant: str
    extra_buffer_types: bool
    seconds: list[float] = dataclasses.field(default_factory=list)
    tokens: int = 0


def load(config: Config, threads: int) -> Embedder:
    info = read_model_info(model_path(config.shape, config.quant))
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=threads, ctx=1024), None, False)
    return Embedder(info, plan, extra_buffer_types=config.extra_buffer_types)


def texts_of(embedder: Embedder, count: int, seed: int = 0) -> list[str]:
    """Texts of 40..240 tokens, spread evenly (measured with the model's tokenizer)."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        target = 40 + 200 * i // max(count - 1, 1)
        words: list[str] = []
        while embedder.count_tokens(" ".join(words)) < target:
            words.extend(rng.choice(WORDS) for _ in range(8))
        texts.append(" ".join(words))
    return texts


def run_once(config: Config, texts: list[str], threads: int) -> None:
    embedder = load(config, threads)
    try:
        embedder.embed_documents(texts[:1])  # warm-up: first-decode allocations, repacking
        before = embedder.stats.tokens
        started = time.perf_counter()
        embedder.embed_documents(texts)
        config.seconds.append(time.perf_counter() - started)
        config.tokens = embedder.stats.tokens - before
    finally:
        embedder.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="rounds, alternately forwards and backwards (ABBA)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-4b", action="store_true", help="only the 0.6B (the 4B file takes minutes to write)")
    parser.add_argument("--skip-fallback", action="store_true", help="only the models as they load by default")
    args = parser.parse_args()

    configs = [Config("0.6B Q8_0, extra buffer types on", "0.6b", "Q8_0", True),
               Config("0.6B Q8_0, fallback (off)", "0.6b", "Q8_0", False)]
    if not args.skip_4b:
        configs += [Config("4B Q4_K_M, extra buffer types on", "4b", "Q4_K_M", True),
                    Config("4B Q4_K_M, fallback (off)", "4b", "Q4_K_M", False)]
    if args.skip_fallback:
        configs = [config for config in configs if config.extra_buffer_types]
    probe = load(configs[0], args.threads)
    texts = texts_of(probe, args.texts)
    probe.close()
    for config in configs:
        model_path(config.shape, config.quant)  # written before any clock starts
    for round_ in range(args.repeats):
        for config in configs if round_ % 2 == 0 else reversed(configs):
            run_once(config, texts, args.threads)
    print(f"{len(texts)} texts, {configs[0].tokens} tokens each run, threads {args.threads}, best of {args.repeats} runs")
    print(f"{'configuration':<36} {'tok/s':>8}  runs (s)")
    rates = {}
    for config in configs:
        rates[config.label] = config.tokens / min(config.seconds)
        print(f"{config.label:<36} {rates[config.label]:>8.1f}  {[round(s, 2) for s in config.seconds]}")
    for model in ("0.6B Q8_0", "4B Q4_K_M"):
        on, off = rates.get(f"{model}, extra buffer types on"), rates.get(f"{model}, fallback (off)")
        if on and off:
            print(f"fallback / on, {model}: {off / on:.2f}x")
    small, big = rates.get("0.6B Q8_0, extra buffer types on"), rates.get("4B Q4_K_M, extra buffer types on")
    if small and big:
        print(f"0.6B / 4B (both as loaded by default): {small / big:.1f}x")


if __name__ == "__main__":
    main()
