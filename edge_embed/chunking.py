"""Cut a document's text into token-budgeted, structure-aware chunks.

A chunk is what one embedding vector stands for, so it should be one coherent piece of
the document: we split at structure first (headings, then paragraphs or top-level code
definitions, then lines) and only cut inside a line when that single line alone is over
the model's budget. Every chunk is sent to the model as ``embed_text``: a short header
(file name and heading path) followed by the chunk's source text.

The budget is exact, not estimated: ``count_tokens(chunk.embed_text) + 1 <= max_tokens``
holds for every chunk (the +1 is the EOS token the engine appends), because the engine
would otherwise truncate the text silently. Tokenizing is not free (the real counter is
llama.cpp's tokenizer), so each line is measured once and chunks are packed on sums of
line counts; since token counts are not exactly additive across joins, each assembled
chunk is measured once more and shrunk by whole blocks or lines if it is over.

This module knows nothing about SQL or llama.cpp: the tokenizer comes in as a function.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass
from typing import Callable, Sequence

TokenCounter = Callable[[str], int]

# Bump whenever chunk boundaries or the embedding header change: every embed text changes,
# so an index built by another version is refused until rebuilt (see store.IndexSettings).
CHUNKER_VERSION = 1
KINDS = frozenset({"markdown", "rst", "org", "html", "code", "data", "text", "document"})
# Kinds whose structure is indentation: a non-indented line after a blank line starts a
# top-level block (a definition in code, a top-level key or table in data files).
_INDENTED_KINDS = frozenset({"code", "data"})
_HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, with where it came from and what the model sees.

    ``text`` is exactly lines ``start_line``..``end_line`` (1-based, inclusive) of the
    document, joined with "\\n" -- except when a single line alone is over the budget:
    then each chunk holds a consecutive part of that one line (start_line == end_line).
    """

    text: str
    start_line: int
    end_line: int
    heading: str
    embed_text: str
    page_start: int | None = None  # first and last page, for text extracted from a paged document
    page_end: int | None = None


@dataclass(frozen=True)
class Layout:
    """The structure an extractor found in a PDF or Word file, by 0-based line of its text.

    Such text has no markup to find headings in: the extractor knows them (the outline,
    large fonts, Heading styles) and where each page starts. ``headings`` holds
    ``(line, level, title)``, ``pages`` holds ``(first line, page number)``, both ascending;
    no pages means the document has no page numbers to show.
    """

    headings: tuple[tuple[int, int, str], ...] = ()
    pages: tuple[tuple[int, int], ...] = ()


def embedding_header(name: str, heading: str) -> str:
    """The header put before a chunk's text when it is embedded.

    It carries the file's NAME (basename), never its folder path: identical copies of a
    file in other folders (vendored code, backups, checkouts side by side) then produce
    identical embed texts, and the index, which deduplicates on the embed text, embeds
    them once. The heading path ("Install > CUDA") is given when there is one.
    """
    basename = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    section = f"section: {heading}\n" if heading else ""
    return f"file: {basename}\n{section}\n"


def chunk_document(
    text: str,
    *,
    name: str,
    kind: str,
    count_tokens: TokenCounter,
    max_tokens: int = 512,
    overlap: int = 51,
    layout: Layout | None = None,
) -> list[Chunk]:
    """Split ``text`` (a document with "\\n" line ends) into chunks that fit ``max_tokens``.

    ``kind`` picks the structure used: headings for markdown/rst/org, top-level blocks
    for code/data, the ``layout``'s headings for "document" (text from a PDF or Word file),
    paragraphs and lines for everything. Consecutive chunks of the same section repeat
    about ``overlap`` tokens of whole trailing lines of the previous chunk, so a passage
    cut at a chunk boundary is still found whole in one of them. A chunk never crosses a
    page start of the ``layout``: each chunk is on one page, the one it records.
    Raises ValueError for an unknown kind or a budget too small to hold one character.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown document kind {kind!r}; expected one of {sorted(KINDS)}")
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2 (one token is the EOS), got {max_tokens}")
    if overlap < 0:
        raise ValueError(f"overlap must not be negative, got {overlap}")
    if not text.strip():
        return []
    lines = text.split("\n")
    packer = _Packer(lines, name, kind, count_tokens, max_tokens, overlap)
    sections = find_sections(lines, kind, layout)
    return [chunk for section in sections for chunk in packer.chunk_section(section)]


# --------------------------------------------------------------------------- headings


@dataclass(frozen=True)
class Section:
    """Lines ``start`` (0-based, inclusive) to ``end`` (exclusive) under one heading path."""

    start: int
    end: int
    heading: str
    page: int | None = None


@dataclass(frozen=True)
class _Heading:
    line: int
    level: int
    title: str


def find_sections(lines: Sequence[str], kind: str, layout: Layout | None = None) -> list[Section]:
    """The document's sections in order; together they cover every line exactly once.

    A heading line belongs to the section it opens, so it is part of that section's
    chunks. Lines before the first heading (or all lines, for kinds without headings)
    form a section with the empty heading path. The ``layout``'s headings replace the
    ones found in the text, and its page starts split sections (a section continued on
    the next page keeps its heading path there).
    """
    if layout is not None:
        headings = [_Heading(line, level, title) for line, level, title in sorted(layout.headings, key=lambda h: h[0])]
        return _split_at_pages(_sections_from_headings(headings, len(lines)), layout.pages)
    finder = _HEADING_FINDERS.get(kind)
    headings = finder(lines) if finder else []
    return _sections_from_headings(headings, len(lines))


def _split_at_pages(sections: list[Section], pages: Sequence[tuple[int, int]]) -> list[Section]:
    """Cut sections where pages start; each piece records the page it lies on."""
    if not pages:
        return sections
    starts = [line for line, _ in pages]
    split: list[Section] = []
    for section in sections:
        cuts = [section.start] + [line for line in starts if section.start < line < section.end] + [section.end]
        for start, end in zip(cuts, cuts[1:]):
            index = bisect.bisect_right(starts, start) - 1
            page = pages[index][1] if index >= 0 else pages[0][1]
            split.append(Section(start, end, section.heading, page))
    return split


def _sections_from_headings(headings: list[_Heading], n_lines: int) -> list[Section]:
    first_heading_line = headings[0].line if headings else n_lines
    sections = [Section(0, first_heading_line, "")] if first_heading_line > 0 else []
    path: list[_Heading] = []
    ends = [h.line for h in headings[1:]] + [n_lines]
    for heading, end in zip(headings, ends):
        while path and path[-1].level >= heading.level:
            path.pop()
        path.append(heading)
        sections.append(Section(heading.line, end, _HEADING_SEPARATOR.join(h.title for h in path)))
    return sections


_MD_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_MD_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+$")
_MD_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_LIST_OR_QUOTE = re.compile(r"^ {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>)")


def _markdown_headings(lines: Sequence[str]) -> list[_Heading]:
    """ATX (``## Title``) and setext (``Title`` over ``===``/``---``) headings.

    Lines inside ``` or ~~~ fenced code are skipped: a ``# comment`` in a shell snippet
    is not a heading. A setext title must be a one-line paragraph (not a list item or a
    quote), which keeps YAML front matter and thematic breaks from becoming headings.
    """
    headings: list[_Heading] = []
    fence = ""
    heading_lines: set[int] = set()
    for i, line in enumerate(lines):
        fence_match = _MD_FENCE.match(line)
        if fence:
            if fence_match and _closes_fence(fence, fence_match.group(1), line[fence_match.end():]):
                fence = ""
            continue
        if fence_match:
            fence = fence_match.group(1)
            continue
        heading = _atx_heading(i, line) or _setext_heading(lines, i, heading_lines)
        if heading:
            headings.append(heading)
            heading_lines.update({heading.line, i})
    return headings


def _closes_fence(opening: str, candidate: str, rest: str) -> bool:
    return candidate[0] == opening[0] and len(candidate) >= len(opening) and not rest.strip()


def _atx_heading(i: int, line: str) -> _Heading | None:
    match = _MD_ATX.match(line)
    if not match:
        return None
    title = _MD_ATX_CLOSING.sub("", match.group(2) or "").strip()
    return _Heading(i, len(match.group(1)), title) if title else None


def _setext_heading(lines: Sequence[str], i: int, heading_lines: set[int]) -> _Heading | None:
    match = _MD_SETEXT.match(lines[i])
    if not match or i == 0:
        return None
    title_line = lines[i - 1]
    if (
        _is_blank(title_line)
        or (i - 1) in heading_lines
        or _MD_FENCE.match(title_line)
        or _MD_LIST_OR_QUOTE.match(title_line)
        or _MD_SETEXT.match(title_line)
        or len(title_line) - len(title_line.lstrip(" ")) >= 4
    ):
        return None
    starts_paragraph = i - 1 == 0 or _is_blank(lines[i - 2]) or (i - 2) in heading_lines
    if not starts_paragraph:
        return None
    return _Heading(i - 1, 1 if match.group(1)[0] == "=" else 2, title_line.strip())


_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+[ \t]*$")
_RST_SHORT_UNDERLINE = 4  # docutils treats a shorter-than-title adornment under 4 chars as text


def _rst_headings(lines: Sequence[str]) -> list[_Heading]:
    """Section titles with an underline, or an overline and a matching underline.

    Levels follow reStructuredText's rule: each new adornment style (character, with or
    without overline) gets the next level, in order of first appearance.
    """
    styles: list[tuple[str, bool]] = []
    headings: list[_Heading] = []
    i, after_title = 0, -1
    while i < len(lines):
        found = _rst_overlined_title(lines, i) or _rst_underlined_title(lines, i, after_title)
        if not found:
            i += 1
            continue
        style, title, consumed = found
        if style not in styles:
            styles.append(style)
        headings.append(_Heading(i, styles.index(style) + 1, title))
        i += consumed
        after_title = i
    return headings


def _adornment_covers(adornment: str, title: str) -> bool:
    length = len(adornment.rstrip())
    return length >= len(title) or length >= _RST_SHORT_UNDERLINE


def _rst_overlined_title(lines: Sequence[str], i: int) -> tuple[tuple[str, bool], str, int] | None:
    if i + 2 >= len(lines) or not _RST_ADORNMENT.match(lines[i]):
        return None
    title, underline = lines[i + 1].strip(), lines[i + 2]
    if not title or _RST_ADORNMENT.match(lines[i + 1]) or underline.rstrip() != lines[i].rstrip():
        return None
    if not _adornment_covers(lines[i], title):
        return None
    return (lines[i][0], True), title, 3


def _rst_underlined_title(
    lines: Sequence[str], i: int, after_title: int
) -> tuple[tuple[str, bool], str, int] | None:
    line = lines[i]
    if i + 1 >= len(lines) or _is_blank(line) or line[0].isspace() or _RST_ADORNMENT.match(line):
        return None
    if not (i == 0 or i == after_title or _is_blank(lines[i - 1])):
        return None
    underline = lines[i + 1]
    if not _RST_ADORNMENT.match(underline) or not _adornment_covers(underline, line.rstrip()):
        return None
    return (underline[0], False), line.strip(), 2


_ORG_HEADLINE = re.compile(r"^(\*+)[ \t]+(.*?)(?:[ \t]+:[\w@#%:]+:)?[ \t]*$")
_ORG_BLOCK_BEGIN = re.compile(r"^[ \t]*#\+begin_", re.IGNORECASE)
_ORG_BLOCK_END = re.compile(r"^[ \t]*#\+end_", re.IGNORECASE)


def _org_headings(lines: Sequence[str]) -> list[_Heading]:
    """Org headlines (``** Title :tag:``); the level is the number of stars.

    Lines inside ``#+begin_...``/``#+end_...`` blocks are skipped, and trailing tags are
    dropped from the title.
    """
    headings: list[_Heading] = []
    in_block = False
    for i, line in enumerate(lines):
        if in_block:
            in_block = not _ORG_BLOCK_END.match(line)
            continue
        if _ORG_BLOCK_BEGIN.match(line):
            in_block = True
            continue
        match = _ORG_HEADLINE.match(line)
        if match and match.group(2).strip():
            headings.append(_Heading(i, len(match.group(1)), match.group(2).strip()))
    return headings


_HEADING_FINDERS: dict[str, Callable[[Sequence[str]], list[_Heading]]] = {
    "markdown": _markdown_headings,
    "rst": _rst_headings,
    "org": _org_headings,
}


# --------------------------------------------------------------------------- packing


def _is_blank(line: str) -> bool:
    return not line.strip()


def _break_strengths(lines: Sequence[str], kind: str) -> list[int]:
    """How strong a block boundary falls before each line (0: only a line boundary).

    1 after a blank line (a paragraph); for code and data, 2 when that line is also not
    indented: a top-level definition (def, class, fn, impl, export, #include, a YAML key)
    starts there, in any language.
    """
    strengths = [0] * len(lines)
    for i in range(1, len(lines)):
        if _is_blank(lines[i - 1]) and not _is_blank(lines[i]):
            top_level = kind in _INDENTED_KINDS and not lines[i][0].isspace()
            strengths[i] = 2 if top_level else 1
    return strengths


class _Packer:
    """Packs one document's sections into chunks, measuring each line once."""

    def __init__(
        self,
        lines: Sequence[str],
        name: str,
        kind: str,
        count_tokens: TokenCounter,
        max_tokens: int,
        overlap: int,
    ) -> None:
        self.lines = lines
        self.name = name
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.strengths = _break_strengths(lines, kind)
        self.top_level = 2 if kind in _INDENTED_KINDS else 1
        self.newline_tokens = count_tokens("\n")
        self.prefix = self._prefix_sums()
        self.headers: dict[str, tuple[str, int]] = {}

    def _prefix_sums(self) -> list[int]:
        """Running sums of (line tokens + one newline): span estimates in O(1)."""
        sums = [0]
        for line in self.lines:
            sums.append(sums[-1] + (self.count_tokens(line) if line else 0) + self.newline_tokens)
        return sums

    def span_tokens(self, first: int, last: int) -> int:
        """Estimated tokens of lines first..last (inclusive) joined with newlines."""
        return self.prefix[last + 1] - self.prefix[first] - self.newline_tokens

    def header_for(self, heading: str) -> tuple[str, int]:
        """The header for a section and its token count.

        The header may take at most half the budget, so the text always has room: with a
        very long heading path the section line is left out, and with a tiny budget the
        header is dropped altogether (the chunk then is its text alone).
        """
        if heading not in self.headers:
            limit = (self.max_tokens - 1) // 2
            choice = ("", 0)
            candidates = [embedding_header(self.name, heading)]
            if heading:
                candidates.append(embedding_header(self.name, ""))
            for candidate in candidates:
                tokens = self.count_tokens(candidate)
                if tokens <= limit:
                    choice = (candidate, tokens)
                    break
            self.headers[heading] = choice
        return self.headers[heading]

    def atoms(self, first: int, end: int, level: int, room: int) -> list[tuple[int, int]]:
        """Blocks of lines first..end-1 that each fit ``room``, split as coarsely as possible.

        A block over the room is split at the next weaker boundary (top-level blocks,
        then paragraphs, then lines); a single line over the room is returned as it is
        and cut later. Blocks never start or end on a blank line.
        """
        result: list[tuple[int, int]] = []
        for block in self._blocks(first, end, level):
            if level == 0 or self.span_tokens(*block) <= room:
                result.append(block)
            else:
                result.extend(self.atoms(block[0], block[1] + 1, level - 1, room))
        return result

    def _blocks(self, first: int, end: int, level: int) -> list[tuple[int, int]]:
        blocks: list[tuple[int, int]] = []
        start = last = -1
        for i in range(first, end):
            if _is_blank(self.lines[i]):
                continue
            if start < 0:
                start = i
            elif self.strengths[i] >= level:
                blocks.append((start, last))
                start = i
            last = i
        if start >= 0:
            blocks.append((start, last))
        return blocks

    def chunk_section(self, section: Section) -> list[Chunk]:
        """Greedy packing of a section's blocks, with overlap between consecutive chunks."""
        header, header_tokens = self.header_for(section.heading)
        room = self.max_tokens - 1 - header_tokens
        atoms = self.atoms(section.start, section.end, self.top_level, room)
        chunks: list[Chunk] = []
        previous: tuple[int, int] | None = None
        i = 0
        while i < len(atoms):
            first, last = atoms[i]
            fitted = None
            if self.span_tokens(first, last) <= room:
                start = self.overlap_start(previous, first, last, room)
                packed = self.packed_until(atoms, i, start, room)
                fitted = self.fit_exactly(atoms, i, packed, start, header)
            if fitted is None and first < last:  # estimated to fit, but does not: its lines
                atoms[i : i + 1] = [(k, k) for k in range(first, last + 1) if not _is_blank(self.lines[k])]
                continue
            if fitted is None:  # one line alone over budget: cut inside it
                chunks.extend(self.cut_line(first, header, section, room))
                previous, i = None, i + 1
                continue
            start, packed, text = fitted
            end = atoms[packed - 1][1]
            chunks.append(Chunk(text, start + 1, end + 1, section.heading, header + text, section.page, section.page))
            previous, i = (start, end), packed
        return chunks

    def overlap_start(self, previous: tuple[int, int] | None, first: int, last: int, room: int) -> int:
        """Where the next chunk starts: up to ``overlap`` tokens of whole trailing lines
        of the previous chunk before its first new block, if the budget allows.

        The overlap never reaches the previous chunk's first line, so chunks advance.
        """
        if previous is None or self.overlap == 0:
            return first
        prev_start, prev_end = previous
        start = first
        for line in range(prev_end, prev_start, -1):
            if self.span_tokens(line, prev_end) > self.overlap or self.span_tokens(line, last) > room:
                break
            if not _is_blank(self.lines[line]):
                start = line
        return start

    def packed_until(self, atoms: list[tuple[int, int]], i: int, start: int, room: int) -> int:
        """Index after the last atom that still fits, from ``start``, with atom ``i`` first."""
        j = i + 1
        while j < len(atoms) and self.span_tokens(start, atoms[j][1]) <= room:
            j += 1
        return j

    def fit_exactly(
        self, atoms: list[tuple[int, int]], i: int, packed: int, start: int, header: str
    ) -> tuple[int, int, str] | None:
        """Measure the assembled chunk and shrink it until it really fits.

        Shrinks by trailing atoms first (they start the next chunk), then by the overlap.
        Returns (start, packed, text), or None when atom ``i`` alone does not fit.
        """
        first = atoms[i][0]
        while True:
            text = self.text_of(start, atoms[packed - 1][1])
            excess = self.count_tokens(header + text) + 1 - self.max_tokens
            if excess <= 0:
                return start, packed, text
            if packed - i > 1:
                packed = self._drop_trailing(atoms, i, packed, start, excess)
            elif start < first:
                start = first
            else:
                return None

    def _drop_trailing(self, atoms: list[tuple[int, int]], i: int, packed: int, start: int, excess: int) -> int:
        """Drop at least one trailing atom, and enough to remove ``excess`` estimated tokens."""
        target = self.span_tokens(start, atoms[packed - 1][1]) - excess
        packed -= 1
        while packed - i > 1 and self.span_tokens(start, atoms[packed - 1][1]) > target:
            packed -= 1
        return packed

    def text_of(self, first: int, last: int) -> str:
        return "\n".join(self.lines[first : last + 1])

    def cut_line(self, index: int, header: str, section: Section, room: int) -> list[Chunk]:
        """Cut one over-budget line into consecutive parts that each fit.

        Parts end after whitespace when there is some in their second half, else at any
        character (a str index is a code point, never inside a UTF-8 sequence, so CJK
        text without spaces is cut cleanly). Whitespace-only parts are not emitted.
        """
        line = self.lines[index]
        chars_per_token = len(line) / max(1, self.span_tokens(index, index))
        chunks: list[Chunk] = []
        position = 0
        while position < len(line):
            end, chars_per_token = self._longest_fitting_end(line, position, header, room, chars_per_token)
            end = self._moved_to_whitespace(line, position, end, header)
            part = line[position:end]
            if part.strip():
                chunks.append(Chunk(part, index + 1, index + 1, section.heading, header + part, section.page, section.page))
            position = end
        return chunks

    def _moved_to_whitespace(self, line: str, position: int, end: int, header: str) -> int:
        snapped = _after_last_space(line, position, end)
        if snapped != end and self.count_tokens(header + line[position:snapped]) + 1 <= self.max_tokens:
            return snapped
        return end

    def _longest_fitting_end(
        self, line: str, position: int, header: str, room: int, chars_per_token: float
    ) -> tuple[int, float]:
        """An end near the largest with header + line[position:end] in budget, and the
        measured characters per token (the next part's first guess).

        Probes where the measured density says the room ends (a little under it), then
        bisects; usually two or three counts per part. Only measured probes are trusted,
        so the result always fits for real.
        """
        slack = max(1, room // 16)
        target = max(1, room - slack // 2)
        fits_to, fails_at = position, len(line) + 1  # fails_at > len(line): not found yet
        probe = min(len(line), position + max(1, int(target * chars_per_token)))
        for step in itertools.count():
            text_tokens = self.count_tokens(header + line[position:probe]) + 1 - (self.max_tokens - room)
            if text_tokens <= room:
                fits_to = probe
                if probe == len(line) or text_tokens > room - slack:
                    break
            else:
                fails_at = probe
            if fails_at - fits_to <= 1:
                break
            chars_per_token = (probe - position) / max(1, text_tokens)
            estimate = position + int(target * chars_per_token)
            probe = _next_probe(len(line), position, fits_to, fails_at, estimate, step)
        if fits_to == position:
            raise ValueError(f"max_tokens={self.max_tokens} is too small to hold one character of {self.name!r}")
        return fits_to, chars_per_token


def _next_probe(length: int, position: int, fits_to: int, fails_at: int, estimate: int, step: int) -> int:
    """The next end to measure, strictly between ``fits_to`` and ``fails_at``.

    The first steps trust the density estimate, or test the bracket's edge it points
    past (one character more, or one less); later steps gallop up while nothing failed
    yet and bisect once something did, so the search always narrows.
    """
    if step < 2:
        if fits_to < estimate < fails_at:
            return estimate
        return fits_to + 1 if estimate <= fits_to else fails_at - 1
    if fails_at > length:
        return min(length, position + 2 * (fits_to - position))
    return (fits_to + fails_at) // 2


def _after_last_space(line: str, start: int, end: int) -> int:
    """``end`` moved back to just after the last whitespace in the second half of
    line[start:end], so a cut falls between words; ``end`` itself if there is none or
    the cut already falls at whitespace or at the end of the line."""
    if end >= len(line) or line[end - 1].isspace() or line[end].isspace():
        return end
    for k in range(end - 1, start + (end - start) // 2, -1):
        if line[k].isspace():
            return k + 1
    return end
