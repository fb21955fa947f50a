"""Text, headings and page numbers from PDF and Word files.

These formats need a parser, and parsers of hostile or broken files can hang, crash or
eat all memory. So this package is split in two: the extractors (``pdf``, ``word``) are
plain functions from a file's bytes to a ``Document``, and ``sandbox`` runs them in a
worker process with a timeout and a memory cap. A file that cannot be extracted raises
``Unextractable`` with the reason the index summary shows ("no-text", "encrypted", ...).

The extracted text is plain lines with blank lines between paragraphs, the form the
chunker packs best; where headings are and where each page starts travels beside it as
a ``chunking.Layout``, so no markup is invented inside the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_embed.chunking import Layout

EXTRACTION_SKIPS = frozenset({
    "no-text",     # no text layer (a scanned PDF) or an empty document
    "encrypted",   # needs a password
    "damaged",     # the parser cannot read it (truncated, not really that format)
    "too-large",   # over the page or memory limit, or it unpacks to too much (a zip bomb)
    "timed-out",   # extraction took longer than the limit
    "crashed",     # the worker died (a parser crash, or killed over the memory cap)
})
RETRIED_SKIPS = frozenset({"timed-out", "crashed"})
"""Skips seen from outside the parser: a busy machine or a broken install can cause them,
so the file is tried again by the next run. The others are the parser's verdict on these
exact bytes, which a re-run would only repeat."""


class Unextractable(Exception):
    """A document that yields no text to index, and why: ``reason`` is one of EXTRACTION_SKIPS."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in EXTRACTION_SKIPS:
            raise ValueError(f"unknown extraction skip reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[Unextractable], tuple[str, str]]:
        """Crosses the worker's pipe with its reason and detail intact."""
        return (Unextractable, (self.reason, self.detail))


@dataclass(frozen=True)
class Limits:
    """What one document may cost; over them it is skipped, never fatal."""

    timeout_s: float = 120.0
    memory_bytes: int = 2 * 1024**3
    max_pages: int = 10_000
    max_unpacked_bytes: int = 512 * 1024**2  # the parts of a Word file, unzipped


@dataclass(frozen=True)
class Document:
    """A document's text ("\\n" line ends) and where its headings and pages are."""

    text: str
    layout: Layout


class DocumentBuilder:
    """Collects paragraphs, headings and page starts into a ``Document``.

    Paragraphs are separated by a blank line (the chunker's paragraph boundary); a
    heading is a paragraph that also opens a section.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._headings: list[tuple[int, int, str]] = []
        self._pages: list[tuple[int, int]] = []

    def start_page(self, number: int) -> None:
        """The next paragraph is the first on page ``number`` (1-based)."""
        self._separate()
        if self._pages and self._pages[-1][0] == len(self._lines):  # the previous page had no text
            self._pages.pop()
        self._pages.append((len(self._lines), number))

    def paragraph(self, lines: list[str], heading_level: int = 0, title: str = "") -> None:
        """Add a paragraph; with ``heading_level`` it is a heading titled ``title`` (default: its text)."""
        lines = [line for line in (line.strip() for line in lines) if line]
        if not lines:
            return
        self._separate()
        if heading_level:
            self._headings.append((len(self._lines), heading_level, title or " ".join(lines)))
        self._lines.extend(lines)

    def heading_at(self, line: int, level: int, title: str) -> None:
        """Mark an existing line as a heading (an outline entry found on its page)."""
        self._headings.append((line, level, title))

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def line(self, index: int) -> str:
        return self._lines[index]

    def build(self) -> Document:
        if self._pages and self._pages[-1][0] == len(self._lines):
            self._pages.pop()
        headings = tuple(sorted(self._headings, key=lambda heading: heading[0]))
        return Document("\n".join(self._lines), Layout(headings, tuple(self._pages)))

    def _separate(self) -> None:
        if self._lines and self._lines[-1]:
            self._lines.append("")


def extract(document_format: str, data: bytes, limits: Limits) -> Document:
    """The text of a "pdf" or "docx" file's bytes; raises Unextractable when there is none.

    Runs the parser in this process: call it through ``sandbox.Sandbox`` for files you
    did not write yourself.
    """
    if document_format == "pdf":
        from edge_embed.documents.pdf import extract_pdf

        document = extract_pdf(data, limits)
    elif document_format == "docx":
        from edge_embed.documents.word import extract_docx

        document = extract_docx(data, limits)
    else:
        raise ValueError(f"unknown document format {document_format!r}")
    if not document.text.strip():
        reason = "no text layer: scanned?" if document_format == "pdf" else "the document has no text"
        raise Unextractable("no-text", reason)
    return document
