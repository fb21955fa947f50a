"""Tests for edge_embed.chunking: budget, coverage, structure, overlap, and cost.

Two fake tokenizers stand in for the model's: a word counter (words + newlines) and a
byte counter (like the tiny test model's byte-level vocabulary). A third one, whose
counts grow faster than the sum of the parts, makes the per-line estimates wrong on
purpose, so the exact final check has to do the work.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from typing import Callable

import pytest

from edge_embed.chunking import Chunk, chunk_document, embedding_header


def count_words(text: str) -> int:
    return len(text.split()) + text.count("\n")


def count_bytes(text: str) -> int:
    return len(text.encode())


class CallCounter:
    """Wraps a token counter and counts how often the chunker calls it."""

    def __init__(self, counter: Callable[[str], int]) -> None:
        self.counter = counter
        self.calls = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        return self.counter(text)


def count_superadditive(text: str) -> int:
    """Joined text costs more than its parts: sums of line counts underestimate."""
    return len(text) + len(text) ** 2 // 400


COUNTERS = {"words": count_words, "bytes": count_bytes, "superadditive": count_superadditive}

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()


def _sentence(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def generated_markdown(seed: int, n_blocks: int = 60) -> str:
    """Headings at random depths, paragraphs, fenced code with '#' lines, long lines, CJK."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n_blocks):
        choice = rng.random()
        if choice < 0.15:
            out += ["#" * rng.randint(1, 4) + " " + _sentence(rng, 2), ""]
        elif choice < 0.25:
            out += ["```sh", "# comment, not a heading", _sentence(rng, 5), "", "```", ""]
        elif choice < 0.30:
            out += [_sentence(rng, rng.randint(200, 400)), ""]
        elif choice < 0.35:
            out += ["漢字かな交じり文" * rng.randint(5, 40), ""]
        else:
            out += [_sentence(rng, rng.randint(3, 14)) for _ in range(rng.randint(1, 6))]
            out += [""] * rng.randint(1, 2)
    return "\n".join(out)


def generated_code(seed: int, n_functions: int = 30) -> str:
    rng = random.Random(seed)
    out = ["import os", "import sys", ""]
    for f in range(n_functions):
        out += ["@decorator"] if rng.random() < 0.3 else []
        out.append(f"def function_{f}(a, b):")
        for _ in range(rng.randint(2, 25)):
            out.append("    " + _sentence(rng, rng.randint(2, 8)))
            if rng.random() < 0.1:
                out.append("")
        out.append("")
    return "\n".join(out)


HAND_WRITTEN = {
    "markdown": """# Title

Intro paragraph
on two lines.

## Install

Run the installer.

```bash
# this is a comment
make install
```

### CUDA

Set the flag.

Other Setext
------------

Under setext.
""",
    "rst": """=========
 Project
=========

Intro.

Usage
=====

Call it.

Details
-------

Fine print.

Another
=======

End.
""",
    "org": """#+TITLE: Notes

* Tasks :work:
Do things.
** TODO Write tests
#+begin_src python
x = 1
* not a headline
#+end_src
* Ideas
Think.
""",
    "code": """package main

import "fmt"

func main() {
	fmt.Println("hi")

	fmt.Println("bye")
}

type Point struct {
	X, Y int
}
""",
    "text": "one line\n\n\n   \nsecond paragraph\nwith two lines\n",
}

DOCUMENTS = [
    *[(f"hand-{kind}", text, kind) for kind, text in HAND_WRITTEN.items()],
    *[(f"markdown-{seed}", generated_markdown(seed), "markdown") for seed in range(3)],
    *[(f"code-{seed}", generated_code(seed), "code") for seed in range(2)],
    ("text-as-markdown", generated_markdown(7), "text"),
]


def chunks_of(text: str, kind: str = "markdown", counter: Callable[[str], int] = count_words, **kwargs) -> list[Chunk]:
    return chunk_document(text, name="docs/notes.md", kind=kind, count_tokens=counter, **kwargs)


def _assert_well_formed(text: str, chunks: list[Chunk], counter: Callable[[str], int], max_tokens: int) -> None:
    """Budget held, spans right, every non-blank line covered, parts of a cut line in order."""
    lines = text.split("\n")
    covered: set[int] = set()
    parts: dict[int, list[str]] = defaultdict(list)
    for chunk in chunks:
        assert counter(chunk.embed_text) + 1 <= max_tokens
        assert chunk.embed_text.endswith(chunk.text) and chunk.text.strip()
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        span = "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        if chunk.text == span:
            covered.update(range(chunk.start_line, chunk.end_line + 1))
        else:
            assert chunk.start_line == chunk.end_line and chunk.text in span
            parts[chunk.start_line].append(chunk.text)
    for line_number, line_parts in parts.items():
        line = lines[line_number - 1]
        assert re.sub(r"\s", "", "".join(line_parts)) == re.sub(r"\s", "", line)
        covered.add(line_number)
    non_blank = {i + 1 for i, line in enumerate(lines) if line.strip()}
    assert non_blank <= covered


@pytest.mark.parametrize("counter_name", sorted(COUNTERS))
@pytest.mark.parametrize("max_tokens", [24, 64, 512])
@pytest.mark.parametrize("label,text,kind", DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_budget_coverage_and_spans(label: str, text: str, kind: str, counter_name: str, max_tokens: int) -> None:
    counter = COUNTERS[counter_name]
    chunks = chunk_document(text, name="notes", kind=kind, count_tokens=counter, max_tokens=max_tokens, overlap=max_tokens // 10)
    assert chunks
    _assert_well_formed(text, chunks, counter, max_tokens)


@pytest.mark.parametrize("label,text,kind", DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_deterministic(label: str, text: str, kind: str) -> None:
    first = chunk_document(text, name="a.md", kind=kind, count_tokens=count_bytes, max_tokens=100)
    second = chunk_document(text, name="a.md", kind=kind, count_tokens=count_bytes, max_tokens=100)
    assert first == second


@pytest.mark.parametrize("text", ["", "   ", "\n\n \t\n"])
def test_empty_or_blank_text_gives_no_chunks(text: str) -> None:
    assert chunks_of(text) == []


def test_header_format_and_file_name_only() -> None:
    assert embedding_header("src/docs/notes.md", "Install > CUDA") == "file: notes.md\nsection: Install > CUDA\n\n"
    assert embedding_header("notes.md", "") == "file: notes.md\n\n"
    chunk = chunks_of("# Install\n\nText.")[0]
    assert chunk.embed_text == "file: notes.md\nsection: Install\n\n# Install\n\nText."


def test_copies_in_other_folders_embed_identically() -> None:
    text = generated_markdown(11, n_blocks=20)
    here = chunk_document(text, name="project/README.md", kind="markdown", count_tokens=count_words)
    vendored = chunk_document(text, name="vendor/lib/README.md", kind="markdown", count_tokens=count_words)
    assert [c.embed_text for c in here] == [c.embed_text for c in vendored]


def _heading_at(chunks: list[Chunk], line_number: int) -> set[str]:
    return {c.heading for c in chunks if c.start_line <= line_number <= c.end_line}


def test_markdown_nested_headings_fences_and_setext() -> None:
    text = HAND_WRITTEN["markdown"]
    lines = text.split("\n")
    chunks = chunks_of(text)

    def heading_of(line: str) -> set[str]:
        return _heading_at(chunks, lines.index(line) + 1)

    assert heading_of("on two lines.") == {"Title"}
    assert heading_of("make install") == {"Title > Install"}
    assert heading_of("# this is a comment") == {"Title > Install"}
    assert heading_of("Set the flag.") == {"Title > Install > CUDA"}
    assert heading_of("Under setext.") == {"Title > Other Setext"}  # a level-2 setext
    assert {c.heading for c in chunks} == {"Title", "Title > Install", "Title > Install > CUDA", "Title > Other Setext"}


def test_markdown_heading_starts_a_new_chunk_even_with_room() -> None:
    chunks = chunks_of("# A\n\none\n\n## B\n\ntwo", max_tokens=512)
    assert [(c.heading, c.start_line, c.end_line) for c in chunks] == [("A", 1, 3), ("A > B", 5, 7)]


def test_markdown_tilde_fence_and_atx_closing_hashes() -> None:
    text = "## Real ##\n\n~~~\n# fake\n~~~\n\nafter\n# Next #"
    chunks = chunks_of(text)
    assert [c.heading for c in chunks] == ["Real", "Next"]


def test_markdown_front_matter_and_list_are_not_setext() -> None:
    text = "---\ntitle: x\n---\n\n- item\n---\n\nbody"
    assert {c.heading for c in chunks_of(text)} == {""}


def test_rst_hierarchy_by_order_of_appearance() -> None:
    text = HAND_WRITTEN["rst"]
    lines = text.split("\n")
    chunks = chunks_of(text, kind="rst")
    assert _heading_at(chunks, lines.index("Intro.") + 1) == {"Project"}
    assert _heading_at(chunks, lines.index("Call it.") + 1) == {"Project > Usage"}
    assert _heading_at(chunks, lines.index("Fine print.") + 1) == {"Project > Usage > Details"}
    assert _heading_at(chunks, lines.index("End.") + 1) == {"Project > Another"}


def test_rst_short_underline_under_long_text_is_not_a_title() -> None:
    assert {c.heading for c in chunks_of("A long line of text\n--\n\nmore", kind="rst")} == {""}


def test_org_headlines_tags_and_blocks() -> None:
    text = HAND_WRITTEN["org"]
    lines = text.split("\n")
    chunks = chunks_of(text, kind="org")
    assert _heading_at(chunks, lines.index("Do things.") + 1) == {"Tasks"}
    assert _heading_at(chunks, lines.index("* not a headline") + 1) == {"Tasks > TODO Write tests"}
    assert _heading_at(chunks, lines.index("Think.") + 1) == {"Ideas"}
    assert _heading_at(chunks, 1) == {""}


@pytest.mark.parametrize("kind", ["text", "code", "html", "data"])
def test_kinds_without_headings_ignore_heading_syntax(kind: str) -> None:
    assert {c.heading for c in chunks_of("# not a heading here\n\ntext\n* nor here", kind=kind)} == {""}


def test_code_is_split_at_top_level_definitions() -> None:
    half = "\n".join(f"    y = x + {j}" for j in range(6))
    functions = [f"def f{i}(x):\n{half}\n\n{half}" for i in range(6)]  # blank lines inside, too
    text = "\n\n".join(functions)
    lines = text.split("\n")
    one_function = count_words(functions[0])
    chunks = chunks_of(text, kind="code", max_tokens=int(one_function * 1.6) + 10, overlap=0)
    assert len(chunks) == 6
    assert all(lines[c.start_line - 1].startswith("def ") for c in chunks)
    assert [c.text for c in chunks] == functions


def test_code_definition_over_budget_splits_at_blank_lines_then_lines() -> None:
    body = "\n".join(f"    a{j} = {j}" for j in range(10))
    text = f"class Big:\n{body}\n\n{body}\n\n{body}\n\ndef small():\n    pass"
    chunks = chunks_of(text, kind="code", max_tokens=45, overlap=0)
    _assert_well_formed(text, chunks, count_words, 45)
    starts = [text.split("\n")[c.start_line - 1] for c in chunks]
    assert "def small():" in starts


def test_huge_line_is_cut_at_whitespace() -> None:
    line = " ".join(f"word{i}" for i in range(3000))
    text = f"before\n\n{line}\n\nafter"
    chunks = chunks_of(text, kind="text", counter=count_bytes, max_tokens=200)
    parts = [c for c in chunks if c.start_line == 3]
    assert len(parts) > 10
    assert "".join(p.text for p in parts) == line
    assert all(a.text.endswith(" ") or b.text.startswith(" ") for a, b in zip(parts, parts[1:]))
    assert all(count_bytes(p.embed_text) + 1 > 150 for p in parts[:-1])  # parts are nearly full
    assert [c.text for c in chunks if c.start_line != 3] == ["before", "after"]


def test_cjk_without_spaces_is_cut_between_characters() -> None:
    line = "東京都の天気は晴れです。" * 200
    counting = CallCounter(count_bytes)
    chunks = chunks_of(line, kind="text", counter=counting, max_tokens=100)
    assert counting.calls <= 3 * len(chunks) + 5  # a few measurements per part, not a bisection each
    assert "".join(c.text for c in chunks) == line
    assert all(count_bytes(c.embed_text) + 1 <= 100 for c in chunks)
    assert all(count_bytes(c.embed_text) + 1 > 90 for c in chunks[:-1])


def test_overlap_shares_trailing_lines_within_a_section_only() -> None:
    paragraph = "\n".join(_sentence(random.Random(i), 6) for i in range(40))
    text = f"# One\n\n{paragraph}\n\n# Two\n\n{paragraph}"
    lines = text.split("\n")
    chunks = chunks_of(text, max_tokens=80, overlap=15)
    for previous, current in zip(chunks, chunks[1:]):
        if previous.heading != current.heading:
            assert lines[current.start_line - 1].startswith("# ")
            continue
        assert previous.start_line < current.start_line <= previous.end_line < current.end_line
        shared = "\n".join(lines[current.start_line - 1 : previous.end_line])
        assert 0 < count_words(shared) <= 15


@pytest.mark.parametrize("counter_name", sorted(COUNTERS))
def test_overlap_never_repeats_a_whole_chunk(counter_name: str) -> None:
    """Even with an overlap as large as the budget, each chunk starts after the previous
    one's first line and ends after its last: no chunk contains its predecessor."""
    text = generated_markdown(0)
    chunks = chunks_of(text, counter=COUNTERS[counter_name], max_tokens=200, overlap=1000)
    whole_lines = [c for c in chunks if c.start_line < c.end_line or c.text == text.split("\n")[c.start_line - 1]]
    same_section = [(a, b) for a, b in zip(whole_lines, whole_lines[1:]) if a.heading == b.heading]
    assert len(same_section) > 5
    for previous, current in same_section:
        assert previous.start_line < current.start_line and previous.end_line < current.end_line


def test_no_overlap_when_disabled() -> None:
    text = "\n".join(_sentence(random.Random(i), 6) for i in range(60))
    chunks = chunks_of(text, max_tokens=60, overlap=0)
    assert all(b.start_line == a.end_line + 1 for a, b in zip(chunks, chunks[1:]))


@pytest.mark.parametrize("counter_name", sorted(COUNTERS))
@pytest.mark.parametrize("max_tokens", range(2, 14))
def test_tiny_budgets_terminate_and_hold(counter_name: str, max_tokens: int) -> None:
    counter = COUNTERS[counter_name]
    text = "# Head\n\nsome words here\nand more\n\n" + "x" * 40
    chunks = chunks_of(text, counter=counter, max_tokens=max_tokens, overlap=max_tokens)
    _assert_well_formed(text, chunks, counter, max_tokens)


def test_budget_too_small_for_one_character_raises() -> None:
    with pytest.raises(ValueError, match="too small"):
        chunks_of("漢字", kind="text", counter=count_bytes, max_tokens=3)
    with pytest.raises(ValueError, match="at least 2"):
        chunks_of("text", max_tokens=1)


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown document kind"):
        chunks_of("text", kind="pdf")


def test_count_tokens_called_linearly_in_lines() -> None:
    text = generated_markdown(5, n_blocks=1500).replace("漢字", "kanji")
    text = "\n".join(line for line in text.split("\n") if len(line) < 200)  # no line cutting here
    n_lines = text.count("\n") + 1
    counting = CallCounter(count_words)
    chunks = chunks_of(text, counter=counting, max_tokens=128)
    assert n_lines > 3000 and len(chunks) > 50
    assert counting.calls <= 1.5 * n_lines


# --- documents: headings and pages from the extractor's layout ---------------------------
def test_document_chunks_stay_on_one_page_and_record_it() -> None:
    """Text extracted from a PDF: the layout's page starts cut chunks, its headings name
    them (no markup is looked for in the text), and each chunk records its page."""
    from edge_embed.chunking import Layout

    pages = [[f"page {n} sentence {i} " + "filler words " * 6 for i in range(4)] for n in (1, 2, 3)]
    lines: list[str] = []
    starts = []
    for number, paragraphs in enumerate(pages, 1):
        if lines:
            lines.append("")
        starts.append((len(lines), number))
        lines.extend(paragraphs)
    lines[0] = "# not a heading: documents have no markup"
    layout = Layout(headings=((starts[1][0] + 1, 1, "Results"),), pages=tuple(starts))
    chunks = chunk_document("\n".join(lines), name="r.pdf", kind="document", count_tokens=count_words, max_tokens=200, layout=layout)

    assert {(c.page_start, c.page_end) for c in chunks} == {(1, 1), (2, 2), (3, 3)}
    for chunk in chunks:
        assert all(line.startswith(f"page {chunk.page_start} ") for line in chunk.text.split("\n")[1 if chunk.start_line == 1 else 0 :])
    assert [c.heading for c in chunks] == ["", "", "Results", "Results"]  # the section goes on over page 3


def test_text_chunks_have_no_pages() -> None:
    chunks = chunk_document("one\n\ntwo", name="a.txt", kind="text", count_tokens=count_words)
    assert {(c.page_start, c.page_end) for c in chunks} == {(None, None)}
