"""render.py: snippets, highlighting, colour rules, --explain arithmetic, the JSON schema."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import click
import pytest

from edge_embed.render import (
    MAX_LINE_CHARS,
    SNIPPET_LINES,
    best_window,
    clip_line,
    explain_line,
    format_hit,
    hit_from_record,
    hit_record,
    json_document,
    json_lines,
    terms_pattern,
    unique_paths,
    use_color,
)
from edge_embed.rerank import blend
from edge_embed.results import Fusion, Hit, ListRank
from edge_embed.store import ChunkRecord

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROOT = "/home/u/notes"


def make_hit(
    text: str,
    *,
    relpath: str = "keys.md",
    start: int = 12,
    heading: str | None = "Security > Rotating keys",
    vector: ListRank | None = None,
    keyword: ListRank | None = None,
    score: float = 0.5,
    chunk_id: int = 7,
    pages: tuple[int, int] | None = None,
    fusion: Fusion | None = None,
) -> Hit:
    lines = text.count("\n") + 1
    page_start, page_end = pages or (None, None)
    chunk = ChunkRecord(
        chunk_id, ROOT, f"{ROOT}/{relpath}", relpath, start, start + lines - 1, heading, text, page_start, page_end
    )
    return Hit(chunk, score, vector, keyword, fusion=fusion)


# ---------------------------------------------------------------------- colour
@pytest.mark.parametrize(
    ("choice", "isatty", "environ", "expected"),
    [
        ("auto", True, {}, True),
        ("auto", True, {"NO_COLOR": "1"}, False),
        ("auto", True, {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value counts
        ("auto", False, {}, False),
        ("always", False, {"NO_COLOR": "1"}, True),  # an explicit flag wins over the variable
        ("never", True, {}, False),
    ],
)
def test_colour_only_on_a_terminal_and_without_no_color(choice, isatty, environ, expected) -> None:
    assert use_color(choice, isatty=isatty, environ=environ) is expected


def test_whole_words_are_highlighted_only_with_colour() -> None:
    hit = make_hit("rotate the Keys, then\nmonkey keyset")
    pattern = terms_pattern(["keys", "the"])
    coloured = format_hit(hit, "keyword", pattern, cwd=Path("/"), color=True)
    marked = "\n".join(coloured)
    assert click.style("Keys", fg="red", bold=True) + "," in marked
    assert click.style("the", fg="red", bold=True) + " " in marked
    assert "then" in marked and "keyset" in marked, "parts of other words stay plain"
    plain = format_hit(hit, "keyword", pattern, cwd=Path("/"), color=False)
    assert not any(ANSI.search(line) for line in plain)
    assert [ANSI.sub("", line) for line in coloured] == plain


def test_cjk_terms_are_highlighted_inside_words() -> None:
    pattern = terms_pattern(["语义搜索"])
    (line,) = format_hit(make_hit("私有的离线语义搜索", heading=None), "keyword", pattern, cwd=Path("/"), color=True)[1:]
    assert click.style("语义搜索", fg="red", bold=True) in line


# ---------------------------------------------------------------------- snippets
def test_snippet_window_is_where_most_distinct_terms_are() -> None:
    lines = ["intro", "keys here", "nothing", "nothing", "rotate", "rotate keys", "vault", "end", "x", "y"]
    pattern = terms_pattern(["rotate", "keys", "vault"])
    assert best_window(lines, pattern) == 4  # lines 5-7 hold all three terms
    assert best_window(lines, terms_pattern(["absent"])) == 0
    assert best_window(lines, None) == 0


def test_snippet_lines_carry_their_line_numbers_in_the_file() -> None:
    text = "\n".join(f"line {n}" for n in range(12, 22)[:9]) + "\nthe vault rotates keys"
    hit = make_hit(text, start=12)
    lines = format_hit(hit, "vector", terms_pattern(["vault"]), cwd=Path("/"))
    snippet = lines[2:]
    assert len(snippet) == SNIPPET_LINES
    assert snippet[-1] == "  21  the vault rotates keys"
    assert snippet[0] == "  19  line 19"


def test_lines_extracted_from_html_are_not_numbered() -> None:
    """Its text lines are not the file's lines: only the location (file lines) is given."""
    hit = make_hit("Release notes\n\nthe vault rotates keys", relpath="site/index.html", start=3)
    hit = Hit(replace(hit.chunk, end_line=40), hit.score, None, None)
    lines = format_hit(hit, "vector", None, cwd=Path("/"), full=True)
    assert "site/index.html:3-40 " in lines[0]
    assert lines[2:] == ["  Release notes", "", "  the vault rotates keys"]


def test_full_prints_every_line_of_the_chunk() -> None:
    text = "\n".join(f"line {n}" for n in range(1, 9))
    lines = format_hit(make_hit(text, start=1, heading=None), "vector", None, cwd=Path("/"), full=True)
    assert lines[1:] == [f"  {n}  line {n}" for n in range(1, 9)]


def test_long_lines_are_clipped_around_the_first_term() -> None:
    line = "x" * 5000 + " needle " + "y" * 5000
    clipped = clip_line(line, terms_pattern(["needle"]))
    assert "needle" in clipped and clipped.startswith("…") and clipped.endswith("…")
    assert len(clipped) == MAX_LINE_CHARS + 2
    assert clip_line("short", None) == "short"


def test_location_line_is_relative_inside_the_current_folder() -> None:
    hit = make_hit("text", relpath="sub/keys.md", start=3, score=0.8123)
    assert format_hit(hit, "vector", None, cwd=Path(ROOT))[0] == "sub/keys.md:3-3  cos 0.812"
    assert format_hit(hit, "vector", None, cwd=Path("/elsewhere"))[0] == f"{ROOT}/sub/keys.md:3-3  cos 0.812"
    assert format_hit(hit, "vector", None, cwd=Path(ROOT))[1] == "  § Security > Rotating keys"


# ---------------------------------------------------------------------- explain
def test_explain_shows_the_fused_arithmetic() -> None:
    vector, keyword = ListRank(3, 0.812), ListRank(1, 7.31)
    fusion = Fusion(keyword_ceiling=24.4, vector_floor=0.25, keyword_floor=2.44)
    hit = make_hit("t", vector=vector, keyword=keyword, score=fusion.score(vector, keyword), fusion=fusion)
    method = "(cosine + bm25 / 24.40, the most bm25 any chunk could score for these words)"
    assert explain_line(hit, "hybrid") == (
        f"vector #3 (cos 0.812) -> 0.812; keyword #1 (bm25 7.31) -> 7.31/24.40 = 0.300; fused 1.112 {method}"
    )
    only_keyword = make_hit("t", keyword=ListRank(2, 4.88), score=fusion.score(None, ListRank(2, 4.88)), fusion=fusion)
    assert explain_line(only_keyword, "hybrid") == (
        "vector: not a candidate -> the last candidate's cos 0.250; "
        f"keyword #2 (bm25 4.88) -> 4.88/24.40 = 0.200; fused 0.450 {method}"
    )
    only_vector = make_hit("t", vector=vector, score=fusion.score(vector, None), fusion=fusion)
    assert "keyword: not a candidate -> the last candidate's bm25 2.44/24.40 = 0.100; fused 0.912" in explain_line(only_vector, "hybrid")
    no_match = replace(fusion, keyword_floor=0.0)
    assert "keyword: no match -> 0; fused 0.812" in explain_line(replace(only_vector, fusion=no_match, score=0.812), "hybrid")
    assert explain_line(make_hit("t", vector=vector, score=0.812), "vector") == "vector #3 (cos 0.812)"
    lines = format_hit(hit, "hybrid", None, cwd=Path("/"), explain=True)
    assert lines[-1] == "  explain: " + explain_line(hit, "hybrid")
    reranked = replace(hit, score=0.978, rerank=blend(1, 0.912))  # the score is the blend now
    assert explain_line(reranked, "hybrid").startswith(explain_line(hit, "hybrid") + "; rerank 0.912 at #1")


def test_explain_of_a_hit_without_its_fusion_shows_the_lists() -> None:
    """A server of an older version reports no fusion: the lists' own figures, no traceback."""
    hit = make_hit("t", vector=ListRank(3, 0.812), keyword=ListRank(1, 7.31), score=0.03227)
    assert explain_line(hit, "hybrid") == "vector #3 (cos 0.812); keyword #1 (bm25 7.31)"


# ---------------------------------------------------------------------- programs
SCHEMA_TYPES = {
    "rank": int,
    "chunk_id": int,
    "path": str,
    "root": str,
    "relpath": str,
    "start_line": int,
    "end_line": int,
    "page_start": (int, type(None)),
    "page_end": (int, type(None)),
    "heading": (str, type(None)),
    "score": float,
    "vector_rank": (int, type(None)),
    "vector_score": (float, type(None)),
    "keyword_rank": (int, type(None)),
    "keyword_score": (float, type(None)),
    "fusion": (dict, type(None)),
    "rerank_score": (float, type(None)),
    "rank_before_rerank": (int, type(None)),
    "text": str,
}


def test_json_record_has_the_documented_keys_and_types() -> None:
    fusion = Fusion(keyword_ceiling=20.0)
    hit = make_hit("a\nb", vector=ListRank(2, 0.7), score=fusion.score(ListRank(2, 0.7), None), heading="", fusion=fusion)
    record = json.loads(json.dumps(hit_record(hit, 1)))
    assert set(record) == set(SCHEMA_TYPES)
    for key, kind in SCHEMA_TYPES.items():
        assert isinstance(record[key], kind), key
    assert record["heading"] is None, "an empty heading is null, not ''"
    assert (record["vector_rank"], record["keyword_rank"]) == (2, None)
    assert record["fusion"] == {"keyword_ceiling": 20.0, "vector_floor": 0.0, "keyword_floor": 0.0}
    back = hit_from_record(record)  # a server's answer renders like the local hit
    assert (back.score, back.vector, back.keyword, back.fusion) == (hit.score, hit.vector, hit.keyword, hit.fusion)
    assert hit_record(replace(hit, fusion=None), 1)["fusion"] is None
    assert (record["start_line"], record["end_line"], record["text"]) == (12, 13, "a\nb")


def test_json_record_of_a_pdf_chunk_has_its_pages() -> None:
    record = hit_record(make_hit("on page twelve", relpath="manual.pdf", pages=(12, 13)), 1)
    assert (record["page_start"], record["page_end"]) == (12, 13)
    assert (hit_record(make_hit("text file"), 1)["page_start"], hit_record(make_hit("x"), 1)["page_end"]) == (None, None)


def test_a_hit_answered_by_a_server_is_the_hit_it_was_made_from() -> None:
    """`query` through `edge-embed serve` renders what the server's JSON carries: a PDF's
    pages must survive the trip, or the location reads 'manual.pdf:40-41' instead of p.12."""
    paged = make_hit("on page twelve", relpath="manual.pdf", pages=(12, 13), vector=ListRank(2, 0.8))
    plain = make_hit("text\nfile", heading=None, keyword=ListRank(1, 3.5))
    assert [hit_from_record(json.loads(json.dumps(hit_record(hit, 1)))) for hit in (paged, plain)] == [paged, plain]


@pytest.mark.parametrize(("pages", "where"), [((12, 12), "manual.pdf p.12"), ((12, 13), "manual.pdf p.12-13")])
def test_paged_documents_show_their_page_instead_of_lines(pages, where) -> None:
    hit = make_hit("Torque the bolts to 12 Nm.\nThen check again.", relpath="manual.pdf", start=40, pages=pages, heading="Assembly")
    lines = format_hit(hit, "hybrid", terms_pattern(["torque"]), cwd=Path(ROOT))
    assert lines[0].startswith(where + "  score ")
    assert lines[1:] == ["  § Assembly", "  Torque the bolts to 12 Nm.", "  Then check again."]


def test_json_document_and_lines_carry_the_same_records() -> None:
    hits = [make_hit("一", chunk_id=1, score=0.9), make_hit("two", chunk_id=2, relpath="b.md", score=0.8)]
    document = json.loads(json_document("q 语", "vector", hits))
    assert document["schema_version"] == 1
    assert (document["query"], document["mode"]) == ("q 语", "vector")
    lines = list(json_lines(hits))
    assert [json.loads(line) for line in lines] == document["results"]
    assert [r["rank"] for r in document["results"]] == [1, 2]
    assert "一" in lines[0], "non-ASCII text is written as is"


def test_unique_paths_keep_rank_order() -> None:
    hits = [make_hit("t", relpath=p) for p in ("b.md", "a.md", "b.md", "c.md")]
    assert unique_paths(hits, Path(ROOT)) == ["b.md", "a.md", "c.md"]


def test_a_record_from_a_newer_server_with_more_fusion_keys_still_renders() -> None:
    """docs/query-json.md lets a schema version gain keys: an older CLI must not crash on them."""
    fusion = Fusion(keyword_ceiling=24.4, vector_floor=0.25, keyword_floor=2.44)
    hit = make_hit("t", vector=ListRank(1, 0.8), keyword=ListRank(2, 4.88), score=1.0, fusion=fusion)
    record = json.loads(json.dumps(hit_record(hit, 1)))
    record["fusion"]["keyword_weight"] = 1.0  # a key this version does not know
    assert hit_from_record(record).fusion == fusion


def test_explain_shows_a_tiny_ceiling_in_significant_digits() -> None:
    fusion = Fusion(keyword_ceiling=0.0004)
    hit = make_hit("t", vector=ListRank(1, 0.8), keyword=ListRank(1, 0.0002), score=1.3, fusion=fusion)
    assert "/0.0004 = 0.500" in explain_line(hit, "hybrid")
