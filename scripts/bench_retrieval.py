"""Retrieval quality of each dev set at several chunk sizes: index, `edge-embed eval`, table.

Run scripts/make_devsets.py first. For each set and chunk size this builds its own index
file (.bench/retrieval/SET-cTOKENS.db; an existing one is reused, as `index` is
incremental), runs `edge-embed eval --json` on the set's queries (kept beside the index
for `eval --compare`), and prints one Markdown row per set, size and mode.

``--no-header`` builds the indexes (SET-cTOKENS-nohdr.db) with the chunk header
(``file:`` / ``section:``, see ``chunking.embedding_header``) left out of what is embedded:
the dense half of the header lever (keyword search indexes headings and file names in
their own columns either way; scripts/bench_keyword_levers.py weighs those).

Usage:
  python scripts/bench_retrieval.py --model /work/shared/models/minilm-q8_0.gguf \
      [--sets docs,code] [--chunk-tokens 128,256,512] [--out .bench/retrieval] [--threads 1] [--no-header]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DEVSETS = Path(".bench/devsets")
WITHOUT_HEADER = (  # the CLI with the chunk header emptied: a measurement, not an option
    "import sys, edge_embed.chunking as chunking; chunking.embedding_header = lambda name, heading: ''; "
    "from edge_embed.cli import cli; sys.argv[0] = 'edge-embed'; cli()"
)


def edge_embed(*args: str, header: bool = True) -> str:
    """Run the CLI as a user would; its stdout."""
    entry = ["-m", "edge_embed"] if header else ["-c", WITHOUT_HEADER]
    done = subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"edge-embed {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def run_one(name: str, tokens: int, model: str, out: Path, threads: str, header: bool) -> tuple[dict, float]:
    """(eval --json document, seconds the indexing took) for one set at one chunk size."""
    db = out / f"{name}-c{tokens}{'' if header else '-nohdr'}.db"
    started = time.perf_counter()
    edge_embed("index", str(DEVSETS / name / "corpus"), "--db", str(db), "--model", model, "--chunk-tokens",
               str(tokens), "--overlap", str(tokens // 10), "--threads", threads, "--quiet", header=header)
    seconds = time.perf_counter() - started
    queries = str(DEVSETS / name / "queries.jsonl")
    document = json.loads(edge_embed("eval", queries, "--db", str(db), "--threads", threads, "--json"))
    db.with_suffix(".json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    return document, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sets", default="docs,code")
    parser.add_argument("--chunk-tokens", default="128,256,512")
    parser.add_argument("--out", type=Path, default=Path(".bench/retrieval"))
    parser.add_argument("--threads", default="1", help="llama.cpp threads (1 on an oversubscribed machine)")
    parser.add_argument("--no-header", action="store_true", help="embed chunks without the file:/section: header")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| set | chunk tokens | mode | Recall@10 | MRR@10 | nDCG@10 | index s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        for tokens in (int(t) for t in args.chunk_tokens.split(",")):
            document, seconds = run_one(name, tokens, args.model, args.out, args.threads, not args.no_header)
            for mode, scores in document["modes"].items():
                print(f"| {name} ({document['queries']} q) | {tokens} | {mode} | {scores['recall']:.3f} | "
                      f"{scores['mrr']:.3f} | {scores['ndcg']:.3f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
