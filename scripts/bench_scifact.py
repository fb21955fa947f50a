"""BEIR SciFact with `edge-embed`: nDCG@10, Recall@10 and MRR@10 of each search mode,
beside the published figures for the same model family.

SciFact (Wadden et al. 2020) as BEIR uses it (Thakur et al. 2021): 5,183 abstracts, and
its test split is the 300 claims of SciFact's dev set, each judged against the abstracts
it cites (339 judgments, all grade 1). This script takes the data set as the zip that
holds ``corpus_train.csv`` (doc_id, title, abstract as a list of sentences) and
``claims_validation.csv`` (one row per claim and evidence document, with
``cited_doc_ids``); the data itself is never committed. It:

1. writes the corpus as one file per abstract, ``corpus/<doc_id>.txt``: the title on the
   first line, a blank line, the abstract's sentences joined by spaces (BEIR's text is
   the sentences joined likewise), and the claims in BEIR's own layout
   (``queries.jsonl``, ``qrels/test.tsv``), which `edge-embed eval` reads directly
   (a corpus id names the file whose name without its extension is the id);
2. indexes the corpus with ``edge-embed index`` (an existing index file is reused: the
   index is incremental, so a second run embeds nothing);
3. runs ``edge-embed eval OUT --json`` (all modes; ``--reranker`` adds the reranked rows)
   and prints a Markdown table with the published figures beside ours.

Published nDCG@10 on SciFact's test split: BM25 0.665 (BEIR paper, Elasticsearch with
an English analyzer; 0.679 in Pyserini's multifield reproduction), all-MiniLM-L6-v2
dense 0.645 (sentence-transformers' own evaluation).

``--docs N`` indexes only N abstracts (every cited one, the rest drawn with seed 0) into
``--out``'s corpus, for comparing two versions of the chunker in a quarter of the time
(docs/benchmarks.md, "Long lines": N = 1500).

Usage:
  python scripts/bench_scifact.py /tmp/scifact/scifact.zip --model /work/shared/models/minilm-q8_0.gguf \
      [--out .bench/scifact] [--threads 1] [--chunk-tokens N] [--reranker NAME] [--docs N]
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import random
import subprocess
import sys
import time
import tokenize
import zipfile
from pathlib import Path

PUBLISHED = {  # nDCG@10 on SciFact test
    "keyword": "BM25 0.665 (BEIR), 0.679 (Pyserini)",
    "vector": "all-MiniLM-L6-v2 0.645 (sentence-transformers)",
}


def sentences(abstract: str) -> list[str]:
    """The sentences of the csv's abstract column, a printed numpy array of strings:
    ``['First.'\\n 'Second.']``. Each string literal is one sentence: they are read one by
    one (``ast.literal_eval`` of the whole would glue adjacent literals together)."""
    tokens = tokenize.generate_tokens(io.StringIO(abstract).readline)
    return [ast.literal_eval(token.string) for token in tokens if token.type == tokenize.STRING]


def read_csv(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    with archive.open(name) as handle:
        return list(csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")))


def doc_ids(cell: str) -> list[str]:
    """``[14717500 123]`` -> ['14717500', '123'], each once, in order."""
    return list(dict.fromkeys(cell.strip().strip("[]").replace(",", " ").split()))


def write_dataset(zip_path: Path, out: Path, docs: int | None = None) -> tuple[int, int, int]:
    """corpus/, queries.jsonl and qrels/test.tsv under ``out``: (documents, queries, judgments).
    ``docs``: only that many abstracts (``subset``)."""
    with zipfile.ZipFile(zip_path) as archive:
        corpus = read_csv(archive, "corpus_train.csv")
        claims = read_csv(archive, "claims_validation.csv")
    if docs is not None:
        corpus = subset(corpus, {doc_id for row in claims for doc_id in doc_ids(row["cited_doc_ids"])}, docs)
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    kept = {f"{row['doc_id']}.txt" for row in corpus}
    for stale in (path for path in (out / "corpus").glob("*.txt") if path.name not in kept):
        stale.unlink()  # the script's own output of a run with another --docs
    for row in corpus:
        text = f"{row['title'].strip()}\n\n{' '.join(s.strip() for s in sentences(row['abstract']))}\n"
        target = out / "corpus" / f"{row['doc_id']}.txt"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")  # unchanged files keep their mtime: no re-index
    first_rows = {}
    for row in claims:  # one row per claim and evidence document; the cited ids are the claim's
        first_rows.setdefault(row["id"], row)
    judgments = 0
    with open(out / "queries.jsonl", "w", encoding="utf-8") as queries, open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for claim_id, row in first_rows.items():
            queries.write(json.dumps({"_id": claim_id, "text": row["claim"]}) + "\n")
            for doc_id in doc_ids(row["cited_doc_ids"]):
                qrels.write(f"{claim_id}\t{doc_id}\t1\n")
                judgments += 1
    return len(corpus), len(first_rows), judgments


def subset(corpus: list[dict[str, str]], cited: set[str], docs: int) -> list[dict[str, str]]:
    """Every abstract a claim cites, and as many others as make ``docs``, drawn with a
    fixed seed: an A/B of two chunkers in a quarter of the full set's indexing time. Its
    figures are higher than the full set's (fewer distractors): compare them only with
    each other, never with published ones."""
    ids = sorted(row["doc_id"] for row in corpus)
    answers = cited & set(ids)
    others = [doc_id for doc_id in ids if doc_id not in answers]
    random.Random(0).shuffle(others)
    chosen = answers | set(others[: max(0, docs - len(answers))])
    return [row for row in corpus if row["doc_id"] in chosen]


def edge_embed(*args: str) -> str:
    """Run the CLI as a user would; its stdout."""
    done = subprocess.run([sys.executable, "-m", "edge_embed", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"edge-embed {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", type=Path, help="the SciFact zip (corpus_train.csv, claims_validation.csv)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, default=Path(".bench/scifact"))
    parser.add_argument("--db", type=Path, help="the index file (default OUT/scifact[-cN].db)")
    parser.add_argument("--threads", default="1", help="llama.cpp threads (1 on an oversubscribed machine)")
    parser.add_argument("--chunk-tokens", help="chunk size (default: the model's)")
    parser.add_argument("--reranker", help="also score every mode reranked by this reranker")
    parser.add_argument("--docs", type=int, help="only this many abstracts, the cited ones included (give its own --out)")
    args = parser.parse_args()
    documents, queries, judgments = write_dataset(args.zip, args.out, args.docs)
    print(f"SciFact: {documents} abstracts, {queries} test claims, {judgments} judgments", file=sys.stderr)
    db = args.db or args.out / f"scifact{'-c' + args.chunk_tokens if args.chunk_tokens else ''}.db"
    chunking = ["--chunk-tokens", args.chunk_tokens, "--overlap", str(int(args.chunk_tokens) // 10)] if args.chunk_tokens else []
    started = time.perf_counter()
    edge_embed("index", str(args.out / "corpus"), "--db", str(db), "--model", args.model, "--threads", args.threads,
               "--quiet", *chunking)
    print(f"index: {time.perf_counter() - started:.0f} s ({db})", file=sys.stderr)
    rerank = ["--rerank", "--reranker", args.reranker] if args.reranker else []
    document = json.loads(edge_embed("eval", str(args.out), "--db", str(db), "--threads", args.threads, "--json", *rerank))
    (db.with_suffix(".json")).write_text(json.dumps(document, indent=1), encoding="utf-8")
    print(f"| mode ({document['queries']} claims) | nDCG@10 | Recall@10 | MRR@10 | published nDCG@10 |")
    print("|---|---|---|---|---|")
    for mode, scores in document["modes"].items():
        print(f"| {mode} | {scores['ndcg']:.3f} | {scores['recall']:.3f} | {scores['mrr']:.3f} | {PUBLISHED.get(mode, '')} |")


if __name__ == "__main__":
    main()
