"""File kinds by name, and HTML reduced to what a reader sees."""

from __future__ import annotations

import pytest

from edge_embed.extract import KINDS, Extracted, file_kind, html_to_text, language, to_text


@pytest.mark.parametrize(
    ("relpath", "kind", "lang"),
    [
        ("README.md", "markdown", None),
        ("docs/Guide.MARKDOWN", "markdown", None),
        ("docs/index.rst", "rst", None),
        ("journal.org", "org", None),
        ("site/page.htm", "html", None),
        ("src/app/main.PY", "code", "python"),
        ("web/App.tsx", "code", "typescript"),
        ("include/vec.h", "code", "c"),
        ("lib/vec.hpp", "code", "cpp"),
        ("scripts/deploy.sh", "code", "shell"),
        ("db/schema.sql", "code", "sql"),
        ("Makefile", "code", "make"),
        ("services/api/Dockerfile", "code", "dockerfile"),
        ("CMakeLists.txt", "code", "cmake"),
        ("config/settings.yaml", "data", None),
        ("pyproject.toml", "data", None),
        ("exports/table.csv", "data", None),
        ("notes.txt", "text", None),
        ("papers/Manual.PDF", "document", None),
        ("reports/q3.docx", "document", None),
        ("LICENSE", "text", None),
        ("weird.unknown-ext", "text", None),
        ("archive.tar.gz", "text", None),
    ],
)
def test_kind_and_language_by_name_and_extension(relpath: str, kind: str, lang: str | None) -> None:
    assert (file_kind(relpath), language(relpath)) == (kind, lang)
    assert kind in KINDS


@pytest.mark.parametrize("relpath", ["a.md", "b.py", "c.json", "d.txt", "e.rst"])
def test_non_html_text_is_returned_unchanged(relpath: str) -> None:
    raw = "<b>not html here</b>\n\n\n\n  # keep   spacing\n"
    assert to_text(relpath, raw) == Extracted(raw, file_kind(relpath))


def test_html_keeps_title_and_body_text_and_drops_scripts_styles_and_comments() -> None:
    html = """<!DOCTYPE html>
<html><head><title>Release  notes</title>
<meta charset="utf-8"><style>body { color: red }</style>
<script>if (a < b) { document.write("<p>hidden</p>") }</script></head>
<body><!-- internal comment -->
<noscript>Please enable JavaScript</noscript>
<template><p>template text</p></template>
<h1>Version 2 &amp; more</h1>
<p>Fast   <em>and</em>
   private.</p>
</body></html>"""
    extracted = to_text("notes/release.html", html)
    assert (extracted.text, extracted.kind) == ("Release notes\n\nVersion 2 & more\n\nFast and private.", "html")


def test_html_blocks_become_lines_and_blank_line_runs_collapse() -> None:
    html = (
        "<div>one</div><div>two</div><br><br><br><br>"
        "<ul><li>first</li><li>second</li></ul>"
        "<table><tr><th>k</th><td>v</td></tr><tr><td>k2</td><td>v2</td></tr></table>"
        "<p>line<br>break</p><p></p><p></p><p>last</p>"
    )
    assert html_to_text(html)[0] == "one\ntwo\n\nfirst\nsecond\n\nk v\nk2 v2\n\nline\nbreak\n\nlast"


def test_html_entities_are_decoded_and_nbsp_is_a_space() -> None:
    assert html_to_text("<p>caf&eacute;&nbsp;&lt;tag&gt; &#x4e2d;&#25991;</p>")[0] == "café <tag> 中文"


def test_html_pre_keeps_its_whitespace() -> None:
    html = "<p>Example:</p><pre>def f():\n    return  1\n</pre><p>done</p>"
    assert html_to_text(html)[0] == "Example:\n\ndef f():\n    return  1\n\ndone"


def test_self_closed_script_hides_nothing_and_nested_hidden_elements_are_dropped() -> None:
    html = "<script src='x.js'/><p>shown</p><noscript><style>x</style>gone</noscript><p>also shown</p>"
    assert html_to_text(html)[0] == "shown\n\nalso shown"


def test_malformed_html_still_yields_its_text() -> None:
    assert html_to_text("<p>unclosed <b>bold <i>text</p> trailing <")[0] == "unclosed bold text\n\ntrailing <"


def test_html_text_lines_know_the_file_lines_they_came_from() -> None:
    html = (
        "<html><head>\n"                             # 1
        "<title>Release notes</title>\n"             # 2
        "<script>\nvar x = 1;\n</script></head>\n"   # 3-5
        "<body>\n"                                   # 6
        "<h1>Version 2</h1>\n"                       # 7
        "<p>Fast\n   and\n   private.</p>\n"         # 8-10
        "<pre>one\ntwo</pre>\n"                      # 11-12
        "<ul><li>a</li><li>b</li></ul>\n"            # 13
        "</body></html>\n"
    )
    text, spans = html_to_text(html)
    assert text == "Release notes\n\nVersion 2\n\nFast and private.\n\none\ntwo\n\na\nb"
    assert spans == ((2, 2), (2, 2), (7, 7), (7, 7), (8, 10), (10, 10), (11, 11), (12, 12), (12, 12), (13, 13), (13, 13))
