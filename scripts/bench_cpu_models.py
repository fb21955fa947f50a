#!/usr/bin/env python3
"""CPU embedding speed: the AMX fallback's cost, and the 0.6B against the 4B, same run.

Two questions the first run on a laptop or a cloud VM depends on:

* What does the fallback that avoids AMX kernels that fault (runtime/amx.py) cost? It
  takes llama.cpp's AMX buffer type out of the CPU's extra buffer types and keeps the
  others (weight repacking for the AVX2/AVX-512 kernels), so the loader sees what a
  ``-mno-amx`` build offers. The configurations: extra buffer types on (llama.cpp's
  default), "without AMX" (the fallback) and "off" (``use_extra_bufts = False``, the
  fallback before: it gives up repacking too). Repacking applies to Q4_K on x86 (the
  4B's Q4_K_M, or ``--quant Q4_K_M`` for the 0.6B shape), not to Q8_0.
* How much faster is the 0.6B (the default without a GPU) than the 4B (the default with
  one)? That is the reason for the CPU default.

Every configuration embeds the same texts (40 to 240 tokens) with shape-true random
Qwen3-Embedding GGUFs written once into .bench/ (the speed of llama.cpp depends on shapes
and quantization, not on trained values). Runs go in ABBA order so that drift in the
machine's load hits each configuration alike; the best run of each counts. Each run is
its own process (a buffer type taken out stays out for the process). On a CPU or a build
without AMX, "without AMX" and "on" load the same buffer types.

    python scripts/bench_cpu_models.py --shapes 0.6b --quant Q4_K_M   # the fallback's cost
    python scripts/bench_cpu_models.py --shapes 0.6b,4b --modes on    # 0.6B Q8_0 vs 4B Q4_K_M
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
import time

from bench_embed import WORDS, model_path

from edge_embed.modelfile import read_model_info
from edge_embed.runtime.amx import AMX_BUFFER_TYPE
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.hardware import cpu_extra_buffer_types, drop_cpu_extra_buffer_type
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, make_plan

MODES = {"on": "extra buffer types on", "without-amx": "without AMX (the fallback)", "off": "extra buffer types off"}
DEFAULT_QUANT = {"0.6b": "Q8_0", "4b": "Q4_K_M"}


@dataclasses.dataclass
class Config:
    shape: str
    quant: str
    mode: str
    seconds: list[float] = dataclasses.field(default_factory=list)
    tokens: int = 0

    @property
    def label(self) -> str:
        return f"{self.shape} {self.quant}, {MODES[self.mode]}"


def load(shape: str, quant: str, mode: str, threads: int) -> Embedder:
    if mode == "without-amx":
        drop_cpu_extra_buffer_type(AMX_BUFFER_TYPE)
    info = read_model_info(model_path(shape, quant))
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=threads, ctx=1024), None, False)
    return Embedder(info, plan, extra_buffer_types=mode != "off")


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


def child(shape: str, quant: str, mode: str, threads: int, count: int) -> None:
    """One timed run in this process; prints seconds, tokens and the buffer types used."""
    embedder = load(shape, quant, mode, threads)
    try:
        texts = texts_of(embedder, count)
        embedder.embed_documents(texts[:1])  # warm-up: first-decode allocations, repacking
        before = embedder.stats.tokens
        started = time.perf_counter()
        embedder.embed_documents(texts)
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "tokens": embedder.stats.tokens - before,
                          "extra": cpu_extra_buffer_types() if mode != "off" else []}))
    finally:
        embedder.close()


def run_once(config: Config, threads: int, count: int) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", __file__, "--child", config.shape, config.quant, config.mode,
         str(threads), str(count)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:  # "on" dies where AMX faults: said, and the other modes still run
        config.seconds.append(float("inf"))
        return [f"died (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:] }"]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    config.seconds.append(result["seconds"])
    config.tokens = result["tokens"]
    return result["extra"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        shape, quant, mode, threads, count = sys.argv[2:7]
        child(shape, quant, mode, int(threads), int(count))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="rounds, alternately forwards and backwards (ABBA)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", default="0.6b", help="comma-separated: 0.6b, 4b (the 4B file takes minutes to write)")
    parser.add_argument("--quant", help="one quantization for every shape (default: 0.6b Q8_0, 4b Q4_K_M, as published)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    args = parser.parse_args()

    configs = [
        Config(shape, args.quant or DEFAULT_QUANT[shape], mode)
        for shape in args.shapes.split(",") for mode in args.modes.split(",")
    ]
    for config in configs:
        model_path(config.shape, config.quant)  # written before any clock starts
    extra = {}
    for round_ in range(args.repeats):
        for config in configs if round_ % 2 == 0 else reversed(configs):
            extra[config.label] = run_once(config, args.threads, args.texts)
    print(f"{args.texts} texts, threads {args.threads}, best of {args.repeats} runs, each run its own process")
    print(f"{'configuration':<46} {'tok/s':>8}  runs (s); extra buffer types")
    rates = {}
    for config in configs:
        rates[(config.shape, config.quant, config.mode)] = config.tokens / min(config.seconds) if config.tokens else 0.0
        print(f"{config.label:<46} {rates[(config.shape, config.quant, config.mode)]:>8.1f}  "
              f"{[round(s, 2) for s in config.seconds]}; {extra[config.label]}")
    for (shape, quant, mode), rate in rates.items():
        on = rates.get((shape, quant, "on"))
        if mode != "on" and on:
            print(f"{shape} {quant}: {MODES[mode]} / on = {rate / on:.2f}x")
    small, big = rates.get(("0.6b", "Q8_0", "on")), rates.get(("4b", "Q4_K_M", "on"))
    if small and big:
        print(f"0.6B Q8_0 / 4B Q4_K_M (both as loaded by default): {small / big:.1f}x")


if __name__ == "__main__":
    main()
