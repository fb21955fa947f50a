"""Retrieval quality on known-answer queries: Recall@k, MRR@k and nDCG@k per search mode.

Users check the search on their own corpus (``edge-embed eval``); developers measure a
change (chunk size, fusion) before keeping it. The unit is the *file*: each query lists
the files that answer it, and a search's ranking is the ``--files`` ranking (one entry
per file, ``per_file=1``), so a long relevant file that fills several result slots counts
once, as a user reading the list would count it.

Two formats of known answers are read: ours, a JSONL file with one
``{"query": ..., "relevant": [...]}`` per line, and BEIR's (a folder with ``queries.jsonl``
and ``qrels/<split>.tsv``), so a public benchmark is scored without converting it. A
judgment may be graded (``{"a.md": 2, "b.md": 1}``, or BEIR's score column): nDCG weighs
each answer by its grade, as BEIR does (trec_eval's linear gain); Recall and MRR count
any grade of 1 or more. Grade 0 ("judged, not relevant") counts for nothing.

A relevant entry ("docs/setup.md", or just "setup.md") matches a result whose path ends
with it as whole path components, so query files stay valid wherever the corpus lives;
the last component may leave out the file's extension, which is how a BEIR document id
names a file (``4983`` is ``abstracts/4983.txt``). If one entry matches several result
files, only the first counts: the scores stay in 0..1.

This module never prints and never loads a model (the caller passes ``embed_query``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from typing import TYPE_CHECKING

from edge_embed.errors import EdgeEmbedError
from edge_embed.search import EmbedQuery, Mode, SearchOptions, search
from edge_embed.store import Store

if TYPE_CHECKING:
    from edge_embed.results import RerankHook

METRICS = ("recall", "mrr", "ndcg")
RERANKED = "+rerank"  # a mode's row label when its results were reranked: "hybrid+rerank"


@dataclass(frozen=True)
class EvalQuery:
    """One query: its line in the queries file (for messages), the text, and the answers
    with their grades (each 1 or more; grade-0 judgments are dropped when read)."""

    line: int
    text: str
    relevant: Mapping[str, int]


@dataclass(frozen=True)
class Scores:
    """Recall@k, MRR@k and nDCG@k of one ranking (or their means over queries)."""

    recall: float
    mrr: float
    ndcg: float

    def as_dict(self) -> dict[str, float]:
        return {name: round(getattr(self, name), 4) for name in METRICS}


@dataclass(frozen=True)
class QueryResult:
    """What one mode returned for one query, and how good it was."""

    query: EvalQuery
    mode: str  # a Mode, or a Mode + RERANKED
    paths: tuple[str, ...]
    first_hit: int | None  # 1-based rank of the first relevant file, None when none in the top k
    scores: Scores


@dataclass
class EvalReport:
    """All results of a run; ``summary()`` gives the mean scores per mode."""

    k: int
    modes: tuple[str, ...]  # row labels: Modes, then reranked ones
    results: list[QueryResult] = field(default_factory=list)

    def summary(self) -> dict[str, Scores]:
        return {mode: mean_scores(r.scores for r in self.results if r.mode == mode) for mode in self.modes}

    @property
    def query_count(self) -> int:
        return len({r.query.line for r in self.results})


# ---- the queries file ------------------------------------------------------------------


def load_queries(path: Path, split: str = "test") -> list[EvalQuery]:
    """The queries of a JSONL file, or of a BEIR folder's ``split`` (see ``load_beir``)."""
    if path.is_dir():
        return load_beir(path, split)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeEmbedError(f"cannot read the queries file {path}: {exc}") from None
    queries = [parse_query_line(text, number, path) for number, text in enumerate(lines, 1) if text.strip()]
    if not queries:
        raise EdgeEmbedError(f"{path} has no queries: write one JSON object per line, e.g. "
                             '{"query": "rotate the API keys", "relevant": ["docs/keys.md"]}')
    return queries


def parse_query_line(text: str, number: int, path: Path) -> EvalQuery:
    """One ``{"query": str, "relevant": [str, ...] or {str: grade}}`` line; errors name the line."""
    where = f"{path} line {number}"
    record = _json_object(text, where, 'with "query" and "relevant"')
    query, relevant = record.get("query"), record.get("relevant")
    if not isinstance(query, str) or not query.strip():
        raise EdgeEmbedError(f'{where}: "query" must be a non-empty string')
    if isinstance(relevant, str):
        relevant = [relevant]
    if isinstance(relevant, list):
        relevant = dict.fromkeys(relevant, 1)
    if not isinstance(relevant, dict) or not all(isinstance(r, str) and r.strip() for r in relevant):
        raise EdgeEmbedError(f'{where}: "relevant" must be a non-empty list of paths or file names, '
                             'or an object of them with grades: {"a.md": 2, "b.md": 1}')
    if not all(_is_grade(grade) for grade in relevant.values()):
        raise EdgeEmbedError(f'{where}: each grade in "relevant" must be a whole number, 0 or more')
    graded = {entry: grade for entry, grade in relevant.items() if grade > 0}
    if not graded:
        raise EdgeEmbedError(f'{where}: "relevant" needs at least one answer with a grade of 1 or more')
    return EvalQuery(number, query, graded)


def _is_grade(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_beir(folder: Path, split: str = "test") -> list[EvalQuery]:
    """The queries of a BEIR data set folder that have judgments in ``qrels/<split>.tsv``.

    BEIR's layout: ``queries.jsonl`` holds ``{"_id": ..., "text": ...}`` per line (often
    for every split), ``qrels/<split>.tsv`` a header line and then ``query-id``,
    ``corpus-id``, ``score`` per line. A corpus id names the file whose name, without its
    extension, is the id (see the module docstring). Queries without a judgment of 1 or
    more in the split are left out, in the order of ``queries.jsonl``.
    """
    judgments = _read_qrels(folder / "qrels" / f"{split}.tsv")
    queries_path = folder / "queries.jsonl"
    try:
        lines = queries_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeEmbedError(f"cannot read the BEIR queries file {queries_path}: {exc}") from None
    queries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _json_object(line, f"{queries_path} line {number}", 'with "_id" and "text"')
        query_id, text = str(record.get("_id", "")), record.get("text")
        if query_id in judgments:
            if not isinstance(text, str) or not text.strip():
                raise EdgeEmbedError(f'{queries_path} line {number}: "text" must be a non-empty string')
            queries.append(EvalQuery(number, text, judgments[query_id]))
    if not queries:
        raise EdgeEmbedError(f"no query of {queries_path} has a judgment in {folder / 'qrels' / f'{split}.tsv'}")
    return queries


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {corpus id: grade} for grades of 1 or more, from a BEIR qrels TSV file."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeEmbedError(
            f"cannot read the BEIR judgments {path}: {exc}", param="queries",
            hint="give a folder with queries.jsonl and qrels/SPLIT.tsv, or another {split}",
        ) from None
    judgments: dict[str, dict[str, int]] = {}
    for number, row in enumerate(rows, 1):
        if number == 1 and row[:1] == ["query-id"] or not any(cell.strip() for cell in row):
            continue
        try:
            query_id, corpus_id, grade = (cell.strip() for cell in row)
            score = int(grade)
        except ValueError:
            raise EdgeEmbedError(f"{path} line {number}: want query-id, corpus-id and a whole-number score, "
                                 "separated by tabs") from None
        if score > 0:
            judgments.setdefault(query_id, {})[corpus_id] = score
    return judgments


def _json_object(text: str, where: str, fields: str) -> dict:
    """One line as a JSON object; errors name ``where`` and the ``fields`` it must have."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgeEmbedError(f"{where} is not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise EdgeEmbedError(f"{where} must be a JSON object {fields}")
    return record


# ---- metrics ------------------------------------------------------------------------------


def path_matches(path: str, relevant: str) -> bool:
    """Whether ``path`` ends with ``relevant`` as whole components ("a/b.md" ends with "b.md",
    not with "ab.md"), the last one with or without its extension ("b" names "a/b.md", as a
    BEIR corpus id names its file); "./" and a leading "/" in ``relevant`` are ignored."""
    wanted = [part for part in PurePosixPath(relevant.replace("\\", "/")).parts if part not in ("/", ".")]
    whole = PurePosixPath(path.replace("\\", "/"))
    if not wanted or len(wanted) > len(whole.parts):
        return False
    tail = list(whole.parts[-len(wanted):])
    return tail == wanted or tail[:-1] + [whole.stem] == wanted


def gains(paths: Sequence[str], relevant: Mapping[str, int]) -> list[int]:
    """The grade of the relevant entry each result answers (the first entry no earlier
    result answered), 0 for a result that answers none."""
    unmatched = dict(relevant)
    out = []
    for path in paths:
        entry = next((r for r in unmatched if path_matches(path, r)), None)
        out.append(0 if entry is None else unmatched.pop(entry))
    return out


def recall_at_k(gain: Sequence[int], relevant_count: int, k: int) -> float:
    """Share of the relevant files found in the first k results."""
    return sum(1 for g in gain[:k] if g) / relevant_count


def reciprocal_rank(gain: Sequence[int], k: int) -> float:
    """1 / rank of the first relevant result in the first k, 0 when there is none."""
    return next((1.0 / rank for rank, g in enumerate(gain[:k], 1) if g), 0.0)


def ndcg_at_k(gain: Sequence[int], grades: Iterable[int], k: int) -> float:
    """nDCG as BEIR computes it (trec_eval's ndcg_cut): the DCG of the ranking, each result's
    grade over log2(rank + 1), divided by the DCG of the ideal ranking, the judged grades
    best first; both cut at k."""
    dcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(gain[:k], 1))
    best = sorted(grades, reverse=True)[:k]
    ideal = sum(g / math.log2(rank + 1) for rank, g in enumerate(best, 1))
    return dcg / ideal


def score_ranking(paths: Sequence[str], relevant: Mapping[str, int], k: int) -> tuple[Scores, int | None]:
    """(scores, rank of the first relevant result or None) of one ranked list of files."""
    gain = gains(paths[:k], relevant)
    first = next((rank for rank, g in enumerate(gain, 1) if g), None)
    scores = Scores(
        recall_at_k(gain, len(relevant), k), reciprocal_rank(gain, k), ndcg_at_k(gain, relevant.values(), k)
    )
    return scores, first


def mean_scores(scores: Iterable[Scores]) -> Scores:
    """The mean of each metric (0 for no scores)."""
    items = list(scores)
    if not items:
        return Scores(0.0, 0.0, 0.0)
    return Scores(*(sum(getattr(s, name) for s in items) / len(items) for name in METRICS))


# ---- the run ------------------------------------------------------------------------------


def evaluate(
    store: Store,
    queries: Sequence[EvalQuery],
    modes: Sequence[Mode],
    k: int,
    *,
    embed_query: EmbedQuery | None,
    rerank: RerankHook | None = None,
) -> EvalReport:
    """Search every query in every mode (file ranking, ``per_file=1``) and score the results.

    Each query text is embedded once, however many modes use its vector. With ``rerank``,
    every mode is also scored reranked, as its own row ``MODE+rerank``, so one run shows
    what the reranker changes.
    """
    cached = lru_cache(maxsize=None)(embed_query) if embed_query is not None else None
    runs = [(mode, mode, None) for mode in modes]
    if rerank is not None:
        runs += [(mode, f"{mode}{RERANKED}", rerank) for mode in modes]
    report = EvalReport(k, tuple(label for _, label, _ in runs))
    for query in queries:
        for mode, label, step in runs:
            options = SearchOptions(mode=mode, k=k, per_file=1)
            hits = search(store, query.text, options, embed_query=cached, rerank=step)
            paths = tuple(hit.chunk.path for hit in hits)
            scores, first = score_ranking(paths, query.relevant, k)
            report.results.append(QueryResult(query, label, paths, first, scores))
    return report


# ---- JSON documents and comparison ----------------------------------------------------------


def report_document(report: EvalReport, *, per_query: bool) -> dict:
    """The --json document: k, query count, mean scores per mode, optionally each query."""
    document: dict = {
        "k": report.k,
        "queries": report.query_count,
        "modes": {mode: scores.as_dict() for mode, scores in report.summary().items()},
    }
    if per_query:
        document["per_query"] = [
            {
                "line": r.query.line,
                "query": r.query.text,
                "relevant": dict(r.query.relevant),
                "mode": r.mode,
                "first_hit": r.first_hit,
                **r.scores.as_dict(),
                "files": list(r.paths),
            }
            for r in report.results
        ]
    return document


def load_previous(path: Path) -> dict[str, dict[str, float]]:
    """The mean scores per mode of an earlier ``eval --json`` run."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeEmbedError(f"cannot read {path}: {exc}", param="compare", hint="{compare} must be {eval_json}") from None
    except json.JSONDecodeError:
        raise EdgeEmbedError(f"{path} is not JSON", param="compare", hint="{compare} must be {eval_json}") from None
    modes = document.get("modes") if isinstance(document, dict) else None
    if not isinstance(modes, dict):
        raise EdgeEmbedError(f'{path} has no "modes"', param="compare", hint="{compare} must be {eval_json}")
    return modes


def compare(current: dict[str, Scores], previous: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Current minus previous mean, per mode and metric, for the modes and numbers both runs have."""
    return {
        mode: {
            name: round(getattr(scores, name) - previous[mode][name], 4)
            for name in METRICS
            if _is_number(previous[mode].get(name))
        }
        for mode, scores in current.items()
        if isinstance(previous.get(mode), dict)
    }


def _is_number(value: object) -> bool:
    """A metric value from a --compare file (JSON: bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
