"""Keyword search latency on two indexes of the same chunks (e.g. before and after
migration 6, whose keyword rows hold each chunk's neighbours' words): the same queries,
the two indexes alternated query by query in one run, medians and their ratio.

Usage: python scripts/bench_keyword_latency.py BEFORE.db AFTER.db QUERIES [--rounds 3]
QUERIES is anything `edge-embed eval` reads (a JSONL file or a BEIR folder).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from edge_embed.evaluate import load_queries
from edge_embed.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("queries", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = [query.text for query in load_queries(args.queries)]
    times: dict[str, list[float]] = {"before": [], "after": []}
    with Store.open(args.before, create=False) as before, Store.open(args.after, create=False) as after:
        pair = [("before", before), ("after", after)]
        for _ in range(args.rounds):
            for text in texts:
                pair.reverse()  # each index goes first every other query: no order favours one
                for name, store in pair:
                    started = time.perf_counter()
                    store.keywords.keyword_search(text, 40)
                    times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    print(f"{len(texts)} queries x {args.rounds}: before {medians['before']:.2f} ms, after {medians['after']:.2f} ms "
          f"(median), after/before {medians['after'] / medians['before']:.2f}x")


if __name__ == "__main__":
    main()
