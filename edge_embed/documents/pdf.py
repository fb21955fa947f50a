"""PDF text in reading order, page by page, through pdfium (pypdfium2, Apache/BSD).

pdfium returns a page's text in content-stream order, which interleaves the lines of a
two-column page when the producer wrote them row by row. So text is taken per text
segment (pdfium's rectangles, each a run of characters on one line) and put in reading
order by a recursive XY cut: split a region at a vertical gutter first (columns, read
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
    """One of pdfium's text rectangles: a run of text on one line (PDF units, y upwards)."""

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
            segments = _segments(textpage)
            lines = [line for region in _reading_order(segments) for line in _region_lines(region)]
            if _lost_text(lines, textpage):  # the rectangles missed text (rotated, odd fonts)
                lines = _plain_lines(textpage)
            return lines
        finally:
            textpage.close()
    finally:
        page.close()


def _segments(textpage: pdfium.PdfTextPage) -> list[_Segment]:
    segments = []
    for i in range(textpage.count_rects()):
        left, bottom, right, top = textpage.get_rect(i)
        text = textpage.get_text_bounded(left, bottom, right, top)
        if text.strip():
            segments.append(_Segment(left, bottom, right, top, text, _font_size(textpage, left, bottom, top)))
    return segments


def _font_size(textpage: pdfium.PdfTextPage, left: float, bottom: float, top: float) -> float:
    index = pdfium_c.FPDFText_GetCharIndexAtPos(textpage, left + 0.5, (bottom + top) / 2, 2.0, 2.0)
    return round(pdfium_c.FPDFText_GetFontSize(textpage, index), 1) if index >= 0 else 0.0


def _lost_text(lines: list[_Line], textpage: pdfium.PdfTextPage) -> bool:
    kept = sum(len(_SPACES.sub("", line.text)) for line in lines)
    total = len(_SPACES.sub("", textpage.get_text_range()))
    return kept < 0.9 * total


def _plain_lines(textpage: pdfium.PdfTextPage) -> list[_Line]:
    """pdfium's own order, one paragraph per line: the fallback when rectangles fail."""
    text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
    return [_Line(line, 0.0, 0.0, 0.0, True) for line in text.split("\n") if line.strip()]


# ------------------------------------------------------------------ reading order
def _reading_order(segments: list[_Segment]) -> list[list[_Segment]]:
    """Regions of running text in reading order (a recursive XY cut).

    The segments are cut into horizontal bands at every gap no segment crosses; runs of
    bands that share a column gutter form a block that is read column by column (each
    column cut again the same way), and runs of bands without one form a block read top
    to bottom as one region.
    """
    regions: list[list[_Segment]] = []
    for block in _blocks(_bands(segments)):
        columns = _split_at_gutter(block)
        if columns is None:
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
    """Consecutive bands joined while they share a column gutter, or while none has one."""
    blocks: list[list[_Segment]] = []
    has_gutter = False
    for band in bands:
        band_gutter = _split_at_gutter(band) is not None
        if blocks and (_split_at_gutter(blocks[-1] + band) is not None if has_gutter else not band_gutter):
            blocks[-1].extend(band)
        else:
            blocks.append(list(band))
            has_gutter = band_gutter
    return blocks


def _split_at_gutter(segments: list[_Segment]) -> tuple[list[_Segment], list[_Segment]] | None:
    """Left and right of the widest vertical gap no segment crosses, if it is a column gutter."""
    if len(segments) < 2:
        return None
    left_edge = min(s.left for s in segments)
    width = max(s.right for s in segments) - left_edge
    best: tuple[float, float] | None = None  # (gap width, cut x)
    reach = None
    for segment in sorted(segments, key=lambda s: s.left):
        if reach is not None and segment.left - reach >= MIN_GUTTER_PT:
            cut = (reach + segment.left) / 2
            sides_wide = cut - left_edge >= MIN_COLUMN_SHARE * width and left_edge + width - cut >= MIN_COLUMN_SHARE * width
            if sides_wide and (best is None or segment.left - reach > best[0]):
                best = (segment.left - reach, cut)
        reach = segment.right if reach is None else max(reach, segment.right)
    if best is None:
        return None
    cut = best[1]
    return [s for s in segments if s.right <= cut], [s for s in segments if s.left >= cut]


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
        destination = item.get_dest() if hasattr(item, "get_dest") else None
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
