"""Word (.docx) text through python-docx: Heading styles become sections, tables rows of
text, headers and footers are left out (they repeat on every page and say little).

A .docx has no fixed pages: Word lays it out when it opens it. Word does record where
the pages fell when it last saved the file (``w:lastRenderedPageBreak``), so those give
page numbers; a file never laid out by Word (most generated ones) falls back to its
explicit page breaks, and without either it simply has no page numbers.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.table import Table

from edge_embed.documents import Document, DocumentBuilder, Limits, Unextractable

_HEADING_STYLE = re.compile(r"^Heading (\d)$")
_RENDERED_BREAK = "w:lastRenderedPageBreak"
_HARD_BREAK = 'w:br[@w:type="page"]'
_XML_SIZE_LIMIT = "XML_PARSE_HUGE"
"""libxml2's hint in the error for a text node over 10 MB and its other size limits: kept,
as they bound what a hostile file costs; such a file is too large, not damaged."""


def extract_docx(data: bytes, limits: Limits) -> Document:
    """The text of a Word file in document order, tables row by row."""
    _refuse_zip_bomb(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises many kinds for a broken package
        if _XML_SIZE_LIMIT in str(exc):  # valid, but bigger than libxml2 parses without XML_PARSE_HUGE
            raise Unextractable("too-large", f"a part is over the XML parser's size limits ({exc})") from None
        raise Unextractable("damaged", f"not a readable Word file ({type(exc).__name__}: {exc})") from None
    body = document.element.body
    page_break = _RENDERED_BREAK if body.xpath(f".//{_RENDERED_BREAK}") else _HARD_BREAK
    paged = bool(body.xpath(f".//{page_break}"))
    builder = DocumentBuilder()
    page = 1
    if paged:
        builder.start_page(page)
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            builder.paragraph(_table_rows(block))
            continue
        breaks = len(block._p.xpath(f"./w:r/{page_break}")) if paged else 0
        if breaks and not _text_before_first_break(block._p, page_break):
            page += 1
            builder.start_page(page)
            breaks -= 1
        builder.paragraph(block.text.split("\n"), _heading_level(block))
        for _ in range(breaks):
            page += 1
            builder.start_page(page)
    return builder.build()


def _refuse_zip_bomb(data: bytes, limits: Limits) -> None:
    """A .docx is a zip: refuse one that unpacks to more than the limit before parsing it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise Unextractable("damaged", f"not a readable Word file ({exc})") from None
    if unpacked > limits.max_unpacked_bytes:
        raise Unextractable("too-large", f"unpacks to {unpacked} bytes, over the {limits.max_unpacked_bytes}-byte limit")


def _heading_level(paragraph) -> int:
    """1.. for the Title and Heading N styles, 0 for body text."""
    name = paragraph.style.name if paragraph.style is not None else ""
    if name == "Title":
        return 1
    match = _HEADING_STYLE.match(name or "")
    return int(match.group(1)) if match else 0


def _table_rows(table) -> list[str]:
    """Each row as its cells' texts joined by " | " (a merged cell counted once)."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or cells[-1] != text:
                cells.append(text)
        rows.append(" | ".join(cells))
    return rows


def _text_before_first_break(paragraph, page_break: str) -> bool:
    """Whether the paragraph has text before its first page break (else it starts the page)."""
    for run in paragraph.xpath("./w:r"):
        if run.xpath(f"./{page_break}"):
            return False
        if "".join(run.xpath("./w:t/text()")).strip():
            return True
    return False
