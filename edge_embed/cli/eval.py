"""``edge-embed eval``: how well the index finds known answers (Recall, MRR, nDCG per mode)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_embed.cli.common import db_option, reranker_option, warnings_to_stderr
from edge_embed.cli.options import runtime_options, settings_from_options
from edge_embed.cli.query import refuse_model_option
from edge_embed.errors import EdgeEmbedError
from edge_embed.rerank import DEFAULT_RERANK_TOP
from edge_embed.evaluate import METRICS, Scores, compare, load_previous, load_queries, report_document
from edge_embed.search import MAX_KNN_K, MODES

METRIC_LABELS = {"recall": "Recall", "mrr": "MRR", "ndcg": "nDCG"}


def parse_modes(text: str) -> tuple[str, ...]:
    """``hybrid,keyword`` -> ('hybrid', 'keyword'); an unknown name is a one-line error."""
    modes = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        named = ",".join(unknown) or repr(text)
        raise EdgeEmbedError(f"unknown --mode {named}: use one or more of {','.join(MODES)}")
    return modes


@click.command("eval")
@click.argument("queries_file", type=click.Path(path_type=Path), metavar="QUERIES")
@click.option("-k", "k", type=click.IntRange(1, MAX_KNN_K), default=10, show_default=True,
              help="Score the first K files of each ranking.")
@click.option("--mode", "modes", default=",".join(MODES), show_default=True, metavar="MODES",
              help="Comma-separated search modes to score (keyword alone needs no model).")
@click.option("--split", default="test", show_default=True, metavar="NAME",
              help="With a BEIR folder: score the queries judged in qrels/NAME.tsv.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document: the mean scores per mode and every query's files and scores.")
@click.option("--compare", "previous", type=click.Path(dir_okay=False, path_type=Path), metavar="PREVIOUS.json",
              help="Also show the change of each mean against an earlier `eval --json` run.")
@click.option("--instruct", metavar="TASK", help="The query task sentence (default: the index's).")
@click.option("--rerank", is_flag=True,
              help="Also score every mode reranked (rows MODE+rerank): what the reranker changes.")
@click.option("--rerank-top", type=click.IntRange(1, MAX_KNN_K), default=DEFAULT_RERANK_TOP, show_default=True,
              metavar="N", help="How many candidates the reranker rescores (as `query --rerank-top`).")
@reranker_option
@db_option
@runtime_options
def eval_command(
    queries_file: Path,
    k: int,
    modes: str,
    split: str,
    as_json: bool,
    previous: Path | None,
    instruct: str | None,
    rerank: bool,
    rerank_top: int,
    reranker: str | None,
    db: Path | None,
    **runtime,
) -> None:
    """Score the search on QUERIES, questions whose answers you know.

    QUERIES is a JSONL file, one JSON object a line: the query and the files that answer
    it (a path, or its last components: "setup.md", "docs/setup.md"), optionally graded
    (higher = more relevant; nDCG weighs answers by grade):

    \b
      {"query": "how do I rotate the API keys", "relevant": ["docs/keys.md"]}
      {"query": "retry with backoff", "relevant": ["src/http.py", "src/retry.py"]}
      {"query": "backoff settings", "relevant": {"src/retry.py": 2, "docs/retry.md": 1}}

    QUERIES may also be a BEIR data set folder (queries.jsonl and qrels/test.tsv, see
    --split): a BEIR document id names the indexed file whose name without its
    extension is that id (id 4983 is .../4983.txt), so index the corpus as one file
    per document, named by its id.

    Each mode ranks files as `query --files` does (a file counts once), and the first K
    are scored: Recall@K (share of the answers found), MRR@K (1 / rank of the first
    answer) and nDCG@K (answers near the top count more; BEIR's definition). Means over
    all queries.

    \b
    Examples:
      edge-embed eval queries.jsonl                         all three modes, k = 10
      edge-embed eval queries.jsonl --mode keyword -k 5     no model needed
      edge-embed eval queries.jsonl --json > before.json    keep a run ...
      edge-embed eval queries.jsonl --compare before.json   ... and see what changed
      edge-embed eval queries.jsonl --rerank                with and without the reranker
      edge-embed eval scifact/ --split test                 a BEIR data set's folder
    """
    refuse_model_option(click.get_current_context())
    runtime.pop("model")
    warnings_to_stderr()
    chosen = parse_modes(modes)
    queries = load_queries(queries_file, split)
    earlier = load_previous(previous) if previous is not None else None
    from edge_embed.api import Index

    with Index.open(db, settings_from_options(**runtime)) as index:
        report = index.evaluate(queries, chosen, k, instruct=instruct, rerank=rerank, reranker=reranker, rerank_top=rerank_top)
    summary = report.summary()
    deltas = compare(summary, earlier) if earlier is not None else None
    if as_json:
        document = report_document(report, per_query=True)
        if deltas is not None:
            document["compare"] = {"previous": str(previous), "change": deltas}
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    for line in summary_lines(summary, k, report.query_count, deltas):
        click.echo(line)


def summary_lines(
    summary: dict[str, Scores], k: int, query_count: int, deltas: dict[str, dict[str, float]] | None
) -> list[str]:
    """The table: one row per mode, one column per metric (with the change when comparing)."""
    width = 18 if deltas is not None else 9
    label_width = max(9, *(len(mode) + 1 for mode in summary))  # "hybrid+rerank" is longer
    header = "mode".ljust(label_width) + "".join(f"{METRIC_LABELS[name]}@{k}".rjust(width) for name in METRICS)
    lines = [f"{query_count} queries, first {k} files of each ranking", header]
    for mode, scores in summary.items():
        cells = []
        for name in METRICS:
            cell = f"{getattr(scores, name):.3f}"
            if deltas is not None:
                change = deltas.get(mode, {}).get(name)
                cell += f" ({change:+.3f})" if change is not None else " (   n/a)"
            cells.append(cell.rjust(width))
        lines.append(mode.ljust(label_width) + "".join(cells))
    return lines
