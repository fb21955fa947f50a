"""Turning search hits into text for people and JSON for programs.

For people: ``path:start-end`` (``path p.12`` for a PDF or Word file, whose lines mean
nothing to a reader but whose pages do), the heading, the score, and a few lines of the
chunk around the lines with the most query terms (``--full``: the whole chunk), with the terms
highlighted when colour is on. ``--explain`` adds each list's rank and score and the
fused arithmetic, so a surprising order can be understood rather than guessed at.

For programs: the JSON schema documented in docs/query-json.md. It is a contract: add
keys if needed, never rename or remove one without bumping ``SCHEMA_VERSION``.

File names and contents are hostile input: an escape sequence in either could retitle,
clear or rewrite the user's terminal. Text for people passes through ``terminal_safe``
(control characters shown as ``\x1b``-style escapes, always, piped or not); JSON escapes
them the JSON way (``\u001b``), C1 controls and line separators included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge_embed.extract import keeps_lines

if TYPE_CHECKING:
    from edge_embed.results import Fusion, Hit, ListRank
    from edge_embed.store import ChunkRecord

SCHEMA_VERSION = 1
SNIPPET_LINES = 3  # enough to recognise the passage, few enough to scan ten results
MAX_LINE_CHARS = 200  # minified files have lines of megabytes; a snippet shows a window
COLOR_CHOICES = ("auto", "always", "never")
SCORE_LABELS = {"hybrid": "score", "vector": "cos", "keyword": "bm25"}
RERANKED_LABEL = "blended"  # a reranked hit's score mixes its rank and the reranker's verdict


# ------------------------------------------------------------------------ hostile text
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0 controls but tab, DEL, C1 controls (0x9b is a CSI on its own), line separators and
the bidirectional overrides that make text display in another order than it reads."""

_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What ``json.dumps(ensure_ascii=False)`` leaves raw; C0 it escapes itself."""


def terminal_safe(text: str) -> str:
    """``text`` with every control character shown as an escape (``\x1b``, ``\n``,
    ``\u202e``), so that printing it can never drive the terminal."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def json_safe(document: str) -> str:
    """A JSON text with the characters json leaves raw escaped too (they only occur in strings)."""
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", document)


# ------------------------------------------------------------------------ colour
def use_color(choice: str, *, isatty: bool, environ: Mapping[str, str]) -> bool:
    """--color: 'auto' colours only a terminal and only when NO_COLOR is unset or empty
    (https://no-color.org); an explicit 'always'/'never' wins over NO_COLOR, as that
    convention asks."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return isatty and not environ.get("NO_COLOR")


def _style(text: str, color: bool, **style: object) -> str:
    return click.style(text, **style) if color else text


def terms_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex for all terms, longest first: words match whole words,
    as the keyword search counts them ('the' does not mark 'them'); CJK terms, written
    without spaces, match anywhere."""
    if not terms:
        return None
    alternatives = [
        re.escape(term) if _is_cjk_term(term) else rf"(?<![^\W_]){re.escape(term)}(?![^\W_])"
        for term in sorted(set(terms), key=len, reverse=True)
    ]
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _is_cjk_term(term: str) -> bool:
    return any(ord(ch) >= 0x3000 for ch in term)


def highlight(text: str, pattern: re.Pattern[str] | None, color: bool) -> str:
    if pattern is None or not color:
        return text
    return pattern.sub(lambda m: click.style(m.group(), fg="red", bold=True), text)


# ------------------------------------------------------------------------ snippets
def best_window(lines: Sequence[str], pattern: re.Pattern[str] | None, size: int = SNIPPET_LINES) -> int:
    """Index of the first line of the ``size``-line window with the most distinct query
    terms (then the most matches); 0 when nothing matches, so the chunk's start shows."""
    if pattern is None or len(lines) <= size:
        return 0
    found = [[m.group().casefold() for m in pattern.finditer(line)] for line in lines]

    def weight(start: int) -> tuple[int, int]:
        window = [term for line in found[start : start + size] for term in line]
        return len(set(window)), len(window)

    return max(range(len(lines) - size + 1), key=lambda start: (weight(start), -start))


def clip_line(line: str, pattern: re.Pattern[str] | None, width: int = MAX_LINE_CHARS) -> str:
    """A line cut to ``width`` characters around its first query term, marked with '…'."""
    if len(line) <= width:
        return line
    match = pattern.search(line) if pattern else None
    start = max(0, min((match.start() if match else 0) - width // 4, len(line) - width))
    return ("…" if start else "") + line[start : start + width] + ("…" if start + width < len(line) else "")


def numbered_lines(
    hit: Hit, pattern: re.Pattern[str] | None, *, full: bool, color: bool
) -> list[str]:
    """The chunk's lines (all, or the best window) as '  12  text', terms highlighted.

    Lines of text extracted from markup (HTML) are not the file's lines one for one, so
    they go unnumbered: the location above them gives the file lines of the chunk. Nor
    are lines extracted from a PDF or Word file: its location gives the page.
    """
    lines = hit.chunk.text.split("\n")
    first = 0 if full else best_window(lines, pattern)
    shown = lines if full else lines[first : first + SNIPPET_LINES]
    width = len(str(hit.chunk.start_line + len(lines) - 1))
    numbered = keeps_lines(hit.chunk.relpath) and hit.chunk.page_start is None
    out = []
    for offset, line in enumerate(shown):
        number = _style(str(hit.chunk.start_line + first + offset).rjust(width), color, fg="green")
        text = terminal_safe(line if full else clip_line(line, pattern))
        out.append(f"  {number + '  ' if numbered else ''}{highlight(text, pattern, color)}".rstrip())
    return out


# ------------------------------------------------------------------------ people
def display_path(path: str, cwd: Path) -> str:
    """Relative to the current folder when inside it (short, clickable), else absolute."""
    try:
        return Path(path).relative_to(cwd).as_posix()
    except ValueError:
        return path


def location(chunk: ChunkRecord, cwd: Path) -> str:
    """'notes/a.md:12-30' for text, 'manual.pdf p.37' or 'manual.pdf p.37-38' for pages."""
    path = display_path(chunk.path, cwd)
    if chunk.page_start is None:
        return f"{path}:{chunk.start_line}-{chunk.end_line}"
    last = chunk.page_end if chunk.page_end is not None else chunk.page_start
    pages = f"{chunk.page_start}" if last == chunk.page_start else f"{chunk.page_start}-{last}"
    return f"{path} p.{pages}"


def explain_line(hit: Hit, mode: str) -> str:
    """'vector #3 (cos 0.812) -> 0.812; keyword #1 (bm25 7.31) -> 7.31/24.40 = 0.300; fused 1.112 (...)',
    then, reranked, how the rank and the reranker's score were blended."""
    return _retrieval_part(hit, mode) + (_rerank_part(hit) if hit.rerank is not None else "")


def _retrieval_part(hit: Hit, mode: str) -> str:
    if mode == "vector":
        return _list_part("vector", hit.vector, "cos", "{:.3f}")
    if mode == "keyword":
        return _list_part("keyword", hit.keyword, "bm25", "{:.2f}")
    fusion = hit.fusion
    if fusion is None:  # a server that does not report its fusion: the lists' own figures
        vector = _list_part("vector", hit.vector, "cos", "{:.3f}") if hit.vector else None
        keyword = _list_part("keyword", hit.keyword, "bm25", "{:.2f}") if hit.keyword else None
        return "; ".join(part for part in (vector, keyword) if part)
    if hit.vector is None:
        vector = f"vector: not a candidate -> the last candidate's cos {fusion.vector_floor:.3f}"
    else:
        vector = _list_part("vector", hit.vector, "cos", "{:.3f}") + f" -> {hit.vector.score:.3f}"
    fused = fusion.score(hit.vector, hit.keyword)  # hit.score, unless a reranker blended it since
    method = f"cosine + bm25 / {_ceiling(fusion)}, the most bm25 any chunk could score for these words"
    return f"{vector}; {_keyword_term(hit.keyword, fusion)}; fused {fused:.3f} ({method})"


def _ceiling(fusion: Fusion) -> str:
    """Two decimals, or two significant digits when that would print 0.00."""
    return f"{fusion.keyword_ceiling:.2f}" if fusion.keyword_ceiling >= 0.01 else f"{fusion.keyword_ceiling:.2g}"


def _keyword_term(position: ListRank | None, fusion: Fusion) -> str:
    """The keyword list's part of a hybrid explain line: its BM25 over the query's ceiling."""
    if fusion.keyword_ceiling <= 0:
        return "keyword: no words to search -> 0"
    if position is None and not fusion.keyword_floor:
        return "keyword: no match -> 0"
    share = f"/{_ceiling(fusion)} = {fusion.keyword_term(position):.3f}"
    if position is None:
        return f"keyword: not a candidate -> the last candidate's bm25 {fusion.keyword_floor:.2f}{share}"
    return _list_part("keyword", position, "bm25", "{:.2f}") + f" -> {position.score:.2f}{share}"


def _rerank_part(hit: Hit) -> str:
    """'; rerank 0.912 at #4 -> 0.60 x 1/4 + 0.40 x 0.912 = 0.51480' (qmd's position-aware blend)."""
    info = hit.rerank
    assert info is not None
    return (
        f"; rerank {info.rerank_score:.3f} at #{info.rank} -> {info.weight:.2f} x 1/{info.rank} + "
        f"{1 - info.weight:.2f} x {info.rerank_score:.3f} = {info.blended:.5f}"
    )


def _list_part(name: str, position: ListRank | None, label: str, fmt: str) -> str:
    assert position is not None, f"a {name} hit always has its {name} rank"
    return f"{name} #{position.rank} ({label} {fmt.format(position.score)})"


def format_hit(
    hit: Hit,
    mode: str,
    pattern: re.Pattern[str] | None,
    *,
    cwd: Path,
    color: bool = False,
    full: bool = False,
    explain: bool = False,
) -> list[str]:
    """One result for people: location and score, heading, snippet, optional explain."""
    chunk = hit.chunk
    where = _style(terminal_safe(location(chunk, cwd)), color, fg="magenta")
    score_format = "{:.5f}" if mode == "hybrid" and hit.rerank is None else "{:.3f}"
    label = SCORE_LABELS[mode] if hit.rerank is None else RERANKED_LABEL
    score = _style(f"{label} {score_format.format(hit.score)}", color, dim=True)
    lines = [f"{where}  {score}"]
    if chunk.heading:
        lines.append("  " + _style(f"§ {terminal_safe(chunk.heading)}", color, bold=True))
    lines.extend(numbered_lines(hit, pattern, full=full, color=color))
    if explain:
        lines.append("  " + _style(f"explain: {explain_line(hit, mode)}", color, fg="cyan"))
    return lines


def format_hits(
    hits: Sequence[Hit],
    mode: str,
    terms: Sequence[str],
    *,
    cwd: Path,
    color: bool = False,
    full: bool = False,
    explain: bool = False,
) -> Iterator[str]:
    """All results for people, a blank line between them."""
    pattern = terms_pattern(terms)
    for i, hit in enumerate(hits):
        if i:
            yield ""
        yield from format_hit(hit, mode, pattern, cwd=cwd, color=color, full=full, explain=explain)


def unique_paths(hits: Sequence[Hit], cwd: Path) -> list[str]:
    """--files: each file once, in the order of its best hit (like grep -l)."""
    return list(dict.fromkeys(display_path(hit.chunk.path, cwd) for hit in hits))


# ------------------------------------------------------------------------ programs
def hit_record(hit: Hit, rank: int) -> dict[str, object]:
    """One result in the documented, stable JSON schema (docs/query-json.md)."""
    chunk = hit.chunk
    return {
        "rank": rank,
        "chunk_id": chunk.id,
        "path": chunk.path,
        "root": chunk.root,
        "relpath": chunk.relpath,
        "start_line": chunk.start_line,
        "end_line": chunk.end_line,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "heading": chunk.heading or None,
        "score": hit.score,
        "vector_rank": hit.vector.rank if hit.vector else None,
        "vector_score": hit.vector.score if hit.vector else None,
        "keyword_rank": hit.keyword.rank if hit.keyword else None,
        "keyword_score": hit.keyword.score if hit.keyword else None,
        "fusion": asdict(hit.fusion) if hit.fusion else None,
        "rerank_score": hit.rerank.rerank_score if hit.rerank else None,
        "rank_before_rerank": hit.rerank.rank if hit.rerank else None,
        "text": chunk.text,
    }


def fusion_from_record(fusion: dict) -> Fusion:
    """The ``fusion`` object of a JSON hit; keys a newer edge-embed adds are ignored
    (docs/query-json.md: keys may be added within a schema version)."""
    from edge_embed.results import Fusion

    known = ("keyword_ceiling", "vector_floor", "keyword_floor")
    return Fusion(**{key: float(fusion[key]) for key in known if key in fusion})


def hit_from_record(record: Mapping[str, object]) -> Hit:
    """The inverse of ``hit_record``: a hit answered by a server, rendered like a local one."""
    from edge_embed.rerank import blend
    from edge_embed.results import Fusion, Hit, ListRank
    from edge_embed.store import ChunkRecord

    def position(prefix: str) -> ListRank | None:
        rank = record.get(f"{prefix}_rank")
        return None if rank is None else ListRank(int(rank), float(record[f"{prefix}_score"]))

    def page(key: str) -> int | None:
        value = record.get(key)
        return None if value is None else int(value)

    chunk = ChunkRecord(
        int(record["chunk_id"]), str(record["root"]), str(record["path"]), str(record["relpath"]),
        int(record["start_line"]), int(record["end_line"]), record.get("heading"), str(record["text"]),
        page("page_start"), page("page_end"),
    )
    fusion = record.get("fusion")
    fused = fusion_from_record(fusion) if isinstance(fusion, dict) else None
    rank_before = record.get("rank_before_rerank")
    reranked = None if rank_before is None else blend(int(rank_before), float(record["rerank_score"]))
    return Hit(chunk, float(record["score"]), position("vector"), position("keyword"), reranked, fused)


def search_document(query: str, mode: str, hits: Sequence[Hit], index_age_s: float | None = None) -> dict[str, object]:
    """The query, the mode, the results and the index's age: --json's document and /v1/search's answer."""
    return {
        "schema_version": SCHEMA_VERSION,
        "query": query,
        "mode": mode,
        "index_age_s": index_age_s,
        "results": [hit_record(hit, rank) for rank, hit in enumerate(hits, 1)],
    }


def json_document(query: str, mode: str, hits: Sequence[Hit], index_age_s: float | None = None) -> str:
    """--json: one document with the query, the mode, the index's age and the results."""
    return json_safe(json.dumps(search_document(query, mode, hits, index_age_s), ensure_ascii=False, indent=2))


def json_lines(hits: Sequence[Hit]) -> Iterator[str]:
    """--jsonl: one result object per line, the same objects as --json's results."""
    for rank, hit in enumerate(hits, 1):
        yield json_safe(json.dumps(hit_record(hit, rank), ensure_ascii=False))
