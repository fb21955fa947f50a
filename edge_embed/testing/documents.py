"""PDF and Word files with known text on known pages, written for tests and benchmarks.

Tests generate their documents instead of keeping binary fixtures in git. PDFs are
written with reportlab (BSD) and Word files with python-docx, both in the ``test`` extra.
CJK text uses reportlab's built-in CID font ``STSong-Light``, which needs no font file.

A page is a list of paragraphs; a paragraph starting with ``"# "`` is set as a heading
in a large font (how a PDF without an outline shows its structure).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

HEADING_PREFIX = "# "
BODY_SIZE = 11
HEADING_SIZE = 18
CJK_FONT = "STSong-Light"
_MARGIN = 72
_LEADING = 1.35


def pdf_bytes(
    pages: Sequence[Sequence[str]],
    *,
    outline: Sequence[tuple[str, int, int]] = (),
    password: str | None = None,
) -> bytes:
    """A PDF with one page per entry of ``pages``; ``outline`` holds (title, page index, level 0..)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    _register_cjk_font()
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, encrypt=password, invariant=1)
    width, height = A4
    bookmarks = {}
    for title, page_index, level in outline:
        bookmarks.setdefault(page_index, []).append((title, level))
    for index, paragraphs in enumerate(pages):
        for number, (title, level) in enumerate(bookmarks.get(index, [])):
            key = f"p{index}-{number}"
            pdf.bookmarkPage(key)
            pdf.addOutlineEntry(title, key, level=level)
        _draw_paragraphs(pdf, paragraphs, _MARGIN, height - _MARGIN, width - 2 * _MARGIN)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def two_column_pdf_bytes(title: str, left: Sequence[str], right: Sequence[str]) -> bytes:
    """One page: a full-width title over two columns, written row by row (left line, then
    the right line beside it), the order that defeats reading text in stream order."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    width, height = A4
    pdf.setFont("Helvetica-Bold", HEADING_SIZE)
    pdf.drawString(_MARGIN, height - _MARGIN, title)
    column_width = (width - 2 * _MARGIN - 24) / 2
    wrap = int(column_width / (BODY_SIZE * 0.5))
    left_lines = [line for text in left for line in textwrap.wrap(text, wrap)]
    right_lines = [line for text in right for line in textwrap.wrap(text, wrap)]
    pdf.setFont("Helvetica", BODY_SIZE)
    y = height - _MARGIN - 2 * HEADING_SIZE
    for row in range(max(len(left_lines), len(right_lines))):
        if row < len(left_lines):
            pdf.drawString(_MARGIN, y, left_lines[row])
        if row < len(right_lines):
            pdf.drawString(_MARGIN + column_width + 24, y, right_lines[row])
        y -= BODY_SIZE * _LEADING
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def table_pdf_bytes(rows: Sequence[Sequence[str]], column_width: float = 70) -> bytes:
    """One page holding a table: each cell drawn at its column's x, row by row."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    pdf.setFont("Helvetica", BODY_SIZE)
    for row, cells in enumerate(rows):
        for column, text in enumerate(cells):
            pdf.drawString(_MARGIN + column * column_width, 760 - row * BODY_SIZE * _LEADING, text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def scanned_pdf_bytes(pages: int = 2) -> bytes:
    """Pages with only drawings on them: what a scan without OCR looks like to a text extractor."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    for index in range(pages):
        for row in range(20):
            pdf.rect(72, 700 - row * 30, 300 + (row * 37 + index) % 150, 12, fill=1, stroke=0)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def docx_bytes(blocks: Sequence[tuple[str, object]]) -> bytes:
    """A Word file from blocks: ("heading1".."heading9", text), ("paragraph", text),
    ("table", rows of cell texts), ("page-break", None), ("header", text) for the
    section header and ("footer", text)."""
    import docx

    document = docx.Document()
    for kind, value in blocks:
        if kind.startswith("heading"):
            document.add_heading(str(value), level=int(kind.removeprefix("heading")))
        elif kind == "paragraph":
            document.add_paragraph(str(value))
        elif kind == "table":
            rows = list(value)  # type: ignore[call-overload]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for row, cells in zip(table.rows, rows):
                for cell, text in zip(row.cells, cells):
                    cell.text = text
        elif kind == "page-break":
            document.add_page_break()
        elif kind in ("header", "footer"):
            part = document.sections[0].header if kind == "header" else document.sections[0].footer
            part.paragraphs[0].text = str(value)
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _register_cjk_font() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


def _is_cjk(text: str) -> bool:
    return any(ord(ch) >= 0x3000 for ch in text)


def _draw_paragraphs(pdf, paragraphs: Sequence[str], x: float, y: float, width: float) -> None:
    """Paragraphs wrapped to ``width``, a blank line between them."""
    for paragraph in paragraphs:
        heading = paragraph.startswith(HEADING_PREFIX)
        text = paragraph.removeprefix(HEADING_PREFIX)
        size = HEADING_SIZE if heading else BODY_SIZE
        font = CJK_FONT if _is_cjk(text) else ("Helvetica-Bold" if heading else "Helvetica")
        chars = int(width / (size * (1.0 if _is_cjk(text) else 0.5)))
        pdf.setFont(font, size)
        for line in textwrap.wrap(text, chars) or [""]:
            pdf.drawString(x, y, line)
            y -= size * _LEADING
        y -= size * _LEADING
