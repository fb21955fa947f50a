#!/usr/bin/env python3
"""What counting tokens costs when an embedding server makes the vectors (``--embed-url``):
the model's vocabulary alone (``engine.VocabularyOnly``, llama.cpp's ``vocab_only``) against
the whole model loaded as an ``Embedder`` (what indexing through a server loaded before).

Chunking needs the local GGUF's token counts; its weights are never run. Each load is its
own process, so the resident memory it reports (VmRSS after the load, then after counting
the tokens of a sample text) is that load's alone; modes alternate (ABBA) so drift in the
machine's load hits both alike, and the best run of each counts. On a GPU machine the
whole model's plan would also upload its layers to the GPU; this measures the CPU side.

    python scripts/bench_token_counter.py [--runs 2] [GGUF ...]   # default: .bench's shape-true models
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODES = ("vocabulary", "whole model")
DEFAULT_MODELS = (".bench/qwen3-embedding-0.6b-Q8_0-random.gguf", ".bench/qwen3-embedding-4b-Q4_K_M-random.gguf")
SAMPLE = "Rotate the API keys every ninety days; the vault keeps the old ones for a day. " * 40


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(path: str, mode: str) -> None:
    """One load in this process; prints its figures as JSON."""
    from edge_embed.modelfile import read_model_info
    from edge_embed.runtime.engine import Embedder, VocabularyOnly
    from edge_embed.runtime.plan import ModelShape, RuntimeSettings, cpu_plan

    info = read_model_info(Path(path))
    plan = cpu_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=1), 2048, 1, ())
    before = resident_mib()
    started = time.perf_counter()
    loaded = VocabularyOnly(info) if mode == "vocabulary" else Embedder(info, plan)
    load_s = time.perf_counter() - started
    loaded_mib = resident_mib() - before
    tokens = loaded.count_tokens(SAMPLE)
    counted_mib = resident_mib() - before
    loaded.close()
    print(json.dumps({"load_s": load_s, "loaded_mib": loaded_mib, "counted_mib": counted_mib, "tokens": tokens}))


def run(path: str, mode: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", path, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS))
    parser.add_argument("--runs", type=int, default=2, help="runs of each mode (ABBA order)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print("| model | loaded | load (best) | resident after the load | after counting | tokens |")
    print("|---|---|---|---|---|---|")
    for path in args.models:
        order = [MODES[(i // 2 + i) % 2] for i in range(2 * args.runs)]  # ABBA...
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for mode in order:
            results[mode].append(run(path, mode))
        for mode in MODES:
            best = min(results[mode], key=lambda r: r["load_s"])
            print(
                f"| {Path(path).name} | {mode} | {best['load_s'] * 1000:.0f} ms | {best['loaded_mib']:.0f} MiB "
                f"| {best['counted_mib']:.0f} MiB | {best['tokens']:.0f} |"
            )


if __name__ == "__main__":
    main()
