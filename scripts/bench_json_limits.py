#!/usr/bin/env python3
"""What `serve`'s JSON limits (server/limits.py) cost on real request bodies.

For each body, the best of N runs of ``parse_json_body`` (parse, then one walk for depth,
64-bit integers and finite floats) against plain ``json.loads`` of the same bytes, in the
same run: the ratio is the overhead a request pays for being refused 400 instead of 500.

    python scripts/bench_json_limits.py
    python scripts/bench_json_limits.py --runs 21
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from edge_embed.server.limits import parse_json_body


def bodies() -> dict[str, bytes]:
    """The request shapes `serve` gets: many texts, token ids, one large batch at the 8 MiB cap."""
    return {
        "2048 short texts": json.dumps({"input": [f"sentence {i} about rotating API keys" for i in range(2048)]}).encode(),
        "256 x 512 token ids": json.dumps({"input": [[i % 30000 for i in range(512)] for _ in range(256)]}).encode(),
        "2048 x 4 KB texts": json.dumps({"input": ["word " * 800 for _ in range(2048)]}).encode(),
        "search request": json.dumps({"query": "rotate keys", "k": 10, "in": ["/home/me/notes"], "min_score": 0.3}).encode(),
    }


def best_of(runs: int, parse: Callable[[bytes], object], body: bytes) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        parse(body)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    print(f"| body | size | json.loads (baseline) | parse_json_body | ratio |\n| --- | --- | --- | --- | --- |")
    for name, body in bodies().items():
        base = best_of(args.runs, json.loads, body)
        guarded = best_of(args.runs, parse_json_body, body)
        print(f"| {name} | {len(body) / 1e6:.2f} MB | {base * 1e3:.2f} ms | {guarded * 1e3:.2f} ms | {guarded / base:.2f}x |")


if __name__ == "__main__":
    main()
