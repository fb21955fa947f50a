"""PDF text in reading order, page by page, through pdfium (pypdfium2, Apache/BSD).

pdfium returns a page's text in content-stream order, which interleaves the lines of a
two-column page when the producer wrote them row by row. So the characters are grouped
into segments (runs on one line without a wide gap) and put in reading order by a
recursive XY cut: split a region at a vertical gutter first (columns, read
left to right), else at its widest horizontal gap (blocks, read top to bottom). Lines
are rebuilt from the segments of each region, and a gap larger than the line spacing
starts a new paragraph.

Headings come from the document outline (bookmarks), placed on the line of their page
that carries the title; a PDF without an outline gets its headings from lines set in a
font clearly larger than the body text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from edge_embed.documents import Document, DocumentBuilder, Limits, Unextractable

MIN_GUTTER_PT = 9.0
"""The narrowest gap between two columns (points); word gaps on a line are smaller."""

MIN_COLUMN_SHARE = 0.25
"""Each side of a gutter spans at least this share of the region's width, so that a
table's narrow columns or a right-aligned page number are not read as text columns."""

HEADING_SIZE_RATIO = 1.15
"""A line this much larger than the body font is a heading (when there is no outline)."""

MAX_HEADING_CHARS = 120
MAX_HEADING_LEVELS = 3
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class _Segment:
    """A run of characters on one line without a wide gap (PDF units, y upwards)."""

    left: float
    bottom: float
    right: float
    top: float
    text: str
    size: float

    @property
    def middle(self) -> float:
        return (self.bottom + self.top) / 2


@dataclass
class _Line:
    text: str
    size: float  # font size of its first segment
    top: float
    bottom: float
    starts_paragraph: bool


def extract_pdf(data: bytes, limits: Limits) -> Document:
    """The text of a PDF, by page, with outline or large-font headings."""
    pdf = _open(data)
    try:
        page_count = len(pdf)
        if page_count > limits.max_pages:
            raise Unextractable("too-large", f"{page_count} pages, over the {limits.max_pages}-page limit")
        pages = [_page_lines(pdf, index) for index in range(page_count)]
        outline = _outline(pdf, page_count)
    finally:
        pdf.close()
    return _assemble(pages, outline)


def _open(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise Unextractable("encrypted", "the PDF needs a password") from None
        raise Unextractable("damaged", f"not a readable PDF ({exc})") from None


def _page_lines(pdf: pdfium.PdfDocument, index: int) -> list[_Line]:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            return [line for region in _reading_order(_segments(textpage)) for line in _region_lines(region)]
        finally:
            textpage.close()
    finally:
        page.close()


def _segments(textpage: pdfium.PdfTextPage) -> list[_Segment]:
    """Runs of words on one line without a wide gap between them.

    pdfium's text already breaks lines (its generated line breaks) and separates words,
    so only the first and last character of each word need a box: a word starts a new
    segment when a gap wider than a word space (a column gutter) lies before it. One
    pass over the page keeps it linear in its length; asking pdfium for the text inside
    each of its rectangles scans the whole page per rectangle (seconds on a dense page).
    """
    text = _page_text(textpage)
    handle = textpage.raw  # the bare handle: converting the wrapper costs more than the call
    box = pdfium_c.FS_RECTF()
    segments: list[_Segment] = []
    run: list[str] = []
    left = bottom = right = top = size = 0.0
    for line in _LINE.finditer(text):
        for word in _WORD.finditer(line.group()):
            first, last = line.start() + word.start(), line.start() + word.end() - 1
            pdfium_c.FPDFText_GetLooseCharBox(handle, first, box)
            word_left, word_bottom, word_top, word_right = box.left, box.bottom, box.top, box.right
            if last != first:  # a word's other characters lie between its ends, on its line
                pdfium_c.FPDFText_GetLooseCharBox(handle, last, box)
                word_right = max(word_right, box.right)
            height = max(word_top - word_bottom, 1.0)
            if run and -height <= word_left - right <= max(height, MIN_GUTTER_PT * 0.8):
                run.append(word.group())
                right, bottom, top = max(right, word_right), min(bottom, word_bottom), max(top, word_top)
                continue
            _close_run(segments, run, (left, bottom, right, top), size)
            run.append(word.group())
            left, bottom, right, top = word_left, word_bottom, word_right, word_top
            size = round(pdfium_c.FPDFText_GetFontSize(handle, first), 1)
        _close_run(segments, run, (left, bottom, right, top), size)
    return segments


_LINE = re.compile(r"[^\r\n]+")
_WORD = re.compile(r"\S+")


def _page_text(textpage: pdfium.PdfTextPage) -> str:
    """The page's text with one Python character per pdfium character index.

    One call for the whole page; per character only when a character outside the BMP
    (two UTF-16 units) would shift the indexes.
    """
    count = textpage.count_chars()
    text = textpage.get_text_range(0, count)
    if len(text) == count:
        return text
    return "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, index)) for index in range(count))


def _close_run(segments: list[_Segment], run: list[str], bounds: tuple[float, float, float, float], size: float) -> None:
    text = " ".join(run)
    if text:
        segments.append(_Segment(*bounds, text, size))
    run.clear()


# ------------------------------------------------------------------ reading order
def _reading_order(segments: list[_Segment]) -> list[list[_Segment]]:
    """Regions of running text in reading order (a recursive XY cut).

    The segments are cut into horizontal bands at every gap no segment crosses; runs of
    bands that share a column gutter form a block that is read column by column (each
    column cut again the same way), and runs of bands without one form a block read top
    to bottom as one region. A block whose "columns" hold short pieces rather than lines
    running across them is a table: it is read row by row.
    """
    regions: list[list[_Segment]] = []
    for block in _blocks(_bands(segments)):
        columns = _split_at_gutter(block)
        if columns is None or not all(_fills_its_width(column) for column in columns):
            regions.append(block)
        else:
            regions.extend(region for column in columns for region in _reading_order(column))
    return regions


def _bands(segments: list[_Segment]) -> list[list[_Segment]]:
    """Horizontal bands, top first, separated by gaps no segment crosses (y grows upwards)."""
    bands: list[list[_Segment]] = []
    floor = 0.0
    for segment in sorted(segments, key=lambda s: -s.top):
        if bands and segment.top > floor:
            bands[-1].append(segment)
            floor = min(floor, segment.bottom)
        else:
            bands.append([segment])
            floor = segment.bottom
    return bands


def _blocks(bands: list[list[_Segment]]) -> list[list[_Segment]]:
    """Consecutive bands joined while they share a column gutter, or while none has one.

    Each block's horizontal extent is kept as a union of x intervals, so testing a band
    against it costs the few intervals, not the block's segments (dense table pages).
    """
    blocks: list[list[_Segment]] = []
    extent: list[tuple[float, float]] = []
    has_gutter = False
    for band in bands:
        band_extent = _union((s.left, s.right) for s in band)
        band_gutter = _gutter(band_extent) is not None
        merged = _union(extent + band_extent)
        if blocks and (_gutter(merged) is not None if has_gutter else not band_gutter):
            blocks[-1].extend(band)
            extent = merged
        else:
            blocks.append(list(band))
            extent, has_gutter = band_extent, band_gutter
    return blocks


def _split_at_gutter(segments: list[_Segment]) -> tuple[list[_Segment], list[_Segment]] | None:
    """Left and right of the widest column gutter no segment crosses, if there is one."""
    cut = _gutter(_union((s.left, s.right) for s in segments))
    if cut is None:
        return None
    return [s for s in segments if s.right <= cut], [s for s in segments if s.left >= cut]


def _fills_its_width(column: list[_Segment]) -> bool:
    """Whether the typical segment spans half the column: running text, not table cells."""
    width = max(s.right for s in column) - min(s.left for s in column)
    widths = sorted(s.right - s.left for s in column)
    return widths[len(widths) // 2] >= 0.5 * width


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """x intervals merged where gaps are too narrow to be gutters, left to right."""
    merged: list[tuple[float, float]] = []
    for left, right in sorted(intervals):
        if merged and left - merged[-1][1] < MIN_GUTTER_PT:
            merged[-1] = (merged[-1][0], max(merged[-1][1], right))
        else:
            merged.append((left, right))
    return merged


def _gutter(extent: list[tuple[float, float]]) -> float | None:
    """The x of the widest gap in ``extent`` with a wide enough column on each side."""
    if len(extent) < 2:
        return None
    left_edge, right_edge = extent[0][0], extent[-1][1]
    width = right_edge - left_edge
    best: tuple[float, float] | None = None  # (gap width, cut x)
    for (_, gap_start), (gap_end, _) in zip(extent, extent[1:]):
        cut = (gap_start + gap_end) / 2
        if min(cut - left_edge, right_edge - cut) >= MIN_COLUMN_SHARE * width and (best is None or gap_end - gap_start > best[0]):
            best = (gap_end - gap_start, cut)
    return best[1] if best else None


def _region_lines(region: list[_Segment]) -> list[_Line]:
    """Segments on the same baseline joined left to right; a wide gap starts a paragraph."""
    rows: list[list[_Segment]] = []
    for segment in sorted(region, key=lambda s: -s.middle):
        row = rows[-1] if rows else None
        if row is not None and row[0].bottom - 0.5 <= segment.middle <= row[0].top + 0.5:
            row.append(segment)
        else:
            rows.append([segment])
    lines: list[_Line] = []
    for i, row in enumerate(rows):
        row.sort(key=lambda s: s.left)
        text = _SPACES.sub(" ", " ".join(s.text.strip() for s in row)).strip()
        top, bottom = max(s.top for s in row), min(s.bottom for s in row)
        height = max(top - bottom, row[0].size, 1.0)
        gap = lines[-1].bottom - top if lines else 0.0
        lines.append(_Line(text, row[0].size, top, bottom, i == 0 or gap > 0.8 * height))
    return lines


# ------------------------------------------------------------------ headings
def _outline(pdf: pdfium.PdfDocument, page_count: int) -> list[tuple[int, int, str]]:
    """(page index, level 1.., title) of each bookmark that points into the document."""
    entries = []
    for item in pdf.get_toc(max_depth=MAX_HEADING_LEVELS * 2):
        destination = item.get_dest()
        page_index = destination.get_index() if destination is not None else None
        title = _SPACES.sub(" ", item.get_title() or "").strip()
        if title and page_index is not None and 0 <= page_index < page_count:
            entries.append((page_index, item.level + 1, title))
    return entries


def _assemble(pages: list[list[_Line]], outline: list[tuple[int, int, str]]) -> Document:
    builder = DocumentBuilder()
    heading_sizes = [] if outline else _heading_sizes(pages)
    first_lines: list[int] = []
    for number, lines in enumerate(pages, 1):
        builder.start_page(number)
        first_lines.append(builder.line_count)
        _add_page(builder, lines, heading_sizes)
    first_lines.append(builder.line_count)
    placed = (-1, 0)  # (page index, line) of the previous bookmark
    for page_index, level, title in outline:
        line = _title_line(builder, first_lines[page_index], first_lines[page_index + 1], title)
        if page_index == placed[0]:  # a sub-entry whose title is not printed stays after its parent
            line = max(line, placed[1])
        builder.heading_at(line, level, title)
        placed = (page_index, line)
    return builder.build()


def _add_page(builder: DocumentBuilder, lines: list[_Line], heading_sizes: list[float]) -> None:
    """Paragraphs of a page; consecutive heading-size lines of one size form one heading."""
    paragraph: list[str] = []
    level = 0
    for line in lines:
        line_level = heading_sizes.index(line.size) + 1 if line.size in heading_sizes and len(line.text) <= MAX_HEADING_CHARS else 0
        if paragraph and (line.starts_paragraph or line_level != level):
            builder.paragraph(paragraph, level)
            paragraph = []
        paragraph.append(line.text)
        level = line_level
    builder.paragraph(paragraph, level)


def _heading_sizes(pages: list[list[_Line]]) -> list[float]:
    """Font sizes that mark headings, largest first: clearly above the body text's size."""
    weights: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            weights[line.size] += len(line.text)
    if not weights:
        return []
    body = weights.most_common(1)[0][0]
    return sorted((size for size in weights if size >= body * HEADING_SIZE_RATIO), reverse=True)[:MAX_HEADING_LEVELS]


def _title_line(builder: DocumentBuilder, first: int, end: int, title: str) -> int:
    """The line of a page where an outline title is printed, else the page's first line."""
    wanted = _SPACES.sub("", title).casefold()
    for index in range(first, end):
        text = _SPACES.sub("", builder.line(index)).casefold()
        if text and (text.startswith(wanted) or wanted.startswith(text)):
            return index
    return min(first, max(0, builder.line_count - 1))
