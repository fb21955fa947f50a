"""What kind of text a file holds, and the text worth embedding from it.

The kind tells the chunker where a file's natural boundaries are (Markdown headings,
code definitions, data records). PDF and Word files are "document": their text is
extracted by ``edge_embed.documents`` in a sandboxed worker, not decoded here. Every
other kind except HTML is indexed as its source text:
Markdown, reStructuredText, Org and code read well as they are, and their markup helps
keyword search. HTML is the exception: its tags, scripts and styles would drown the
words a reader sees, so it is reduced to visible text with the stdlib parser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath

KINDS = ("markdown", "rst", "org", "html", "code", "data", "text", "document")

DOCUMENT_FORMATS = {".pdf": "pdf", ".docx": "docx"}
"""Files whose text must be extracted by a parser, by extension: the format's name."""

_PDF_MAGIC = b"%PDF-"

_MARKUP_KINDS = {
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown", ".mdx": "markdown",
    ".rst": "rst", ".rest": "rst",
    ".org": "org",
    ".html": "html", ".htm": "html", ".xhtml": "html",
}

_DATA_SUFFIXES = frozenset({
    ".json", ".jsonl", ".ndjson", ".geojson", ".ipynb",
    ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".properties", ".env",
    ".csv", ".tsv", ".xml", ".svg", ".plist",
})

_LANGUAGES_BY_SUFFIX = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp",
    ".cu": "cuda", ".cuh": "cuda",
    ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala",
    ".groovy": "groovy", ".gradle": "groovy",
    ".rb": "ruby",
    ".php": "php",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ksh": "shell",
    ".fish": "fish",
    ".ps1": "powershell", ".psm1": "powershell",
    ".bat": "batch", ".cmd": "batch",
    ".cs": "csharp",
    ".fs": "fsharp", ".fsx": "fsharp",
    ".vb": "vbnet",
    ".swift": "swift",
    ".mm": "objective-c",
    ".dart": "dart",
    ".lua": "lua",
    ".pl": "perl", ".pm": "perl",
    ".r": "r",
    ".jl": "julia",
    ".hs": "haskell",
    ".ml": "ocaml", ".mli": "ocaml",
    ".ex": "elixir", ".exs": "elixir",
    ".erl": "erlang", ".hrl": "erlang",
    ".clj": "clojure", ".cljs": "clojure", ".edn": "clojure",
    ".el": "elisp",
    ".zig": "zig",
    ".nim": "nim",
    ".sql": "sql",
    ".proto": "protobuf",
    ".graphql": "graphql", ".gql": "graphql",
    ".css": "css", ".scss": "scss", ".sass": "sass", ".less": "less",
    ".vue": "vue", ".svelte": "svelte",
    ".tf": "terraform", ".hcl": "hcl",
    ".cmake": "cmake",
    ".mk": "make",
    ".dockerfile": "dockerfile",
    ".nix": "nix",
}

_LANGUAGES_BY_NAME = {
    "Makefile": "make", "makefile": "make", "GNUmakefile": "make",
    "Dockerfile": "dockerfile", "Containerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "Rakefile": "ruby", "Gemfile": "ruby", "Vagrantfile": "ruby",
    "Jenkinsfile": "groovy",
    "BUILD": "starlark", "BUILD.bazel": "starlark", "WORKSPACE": "starlark",
    "Justfile": "just", "justfile": "just",
}


def language(relpath: str) -> str | None:
    """The programming language of a code file, by well-known name or extension."""
    path = PurePosixPath(relpath)
    by_name = _LANGUAGES_BY_NAME.get(path.name)
    if by_name is not None:
        return by_name
    return _LANGUAGES_BY_SUFFIX.get(path.suffix.lower())


def document_format(relpath: str, head: bytes = b"") -> str | None:
    """"pdf" or "docx" for a file whose text needs a parser, else None.

    By extension, and for PDFs also by their first bytes: a PDF saved without its
    extension (downloads often are) is still a PDF, not a binary file to skip.
    """
    by_suffix = DOCUMENT_FORMATS.get(PurePosixPath(relpath).suffix.lower())
    if by_suffix is not None:
        return by_suffix
    return "pdf" if head.startswith(_PDF_MAGIC) else None


def file_kind(relpath: str) -> str:
    """One of ``KINDS``; anything unrecognised is "text" (any non-binary file is indexed)."""
    suffix = PurePosixPath(relpath).suffix.lower()
    if suffix in DOCUMENT_FORMATS:
        return "document"
    if suffix in _MARKUP_KINDS:
        return _MARKUP_KINDS[suffix]
    if language(relpath) is not None:
        return "code"
    if suffix in _DATA_SUFFIXES:
        return "data"
    return "text"


LineSpan = tuple[int, int]  # first and last line of the file that one line of extracted text came from


@dataclass(frozen=True)
class Extracted:
    """The text to index for a file, its kind, and which file lines its lines came from.

    ``source_lines`` is None when the text is the file's own text, line for line; for
    HTML it holds a span per text line, so chunks report lines an editor can jump to.
    """

    text: str
    kind: str
    source_lines: tuple[LineSpan, ...] | None = None


def to_text(relpath: str, raw_text: str) -> Extracted:
    """The text to index for a file: visible text for HTML, the source otherwise."""
    kind = file_kind(relpath)
    if kind == "html":
        text, source_lines = html_to_text(raw_text)
        return Extracted(text, kind, source_lines)
    return Extracted(raw_text, kind)


def keeps_lines(relpath: str) -> bool:
    """Whether a file's indexed text is its own text, line for line (not HTML, PDF or Word)."""
    return file_kind(relpath) not in ("html", "document")


def file_lines(source_lines: Sequence[LineSpan] | None, start_line: int, end_line: int) -> LineSpan:
    """The file's lines that text lines ``start_line``..``end_line`` (1-based) came from."""
    if source_lines is None:
        return start_line, end_line
    return source_lines[start_line - 1][0], source_lines[end_line - 1][1]


def html_to_text(html: str) -> tuple[str, tuple[LineSpan, ...]]:
    """What a reader sees: no scripts, styles or comments; blocks on their own lines.

    Also returns, for each line of that text, the lines of ``html`` it came from.
    """
    parser = _VisibleTextParser()
    parser.feed(html)
    parser.close()
    return parser.text()


_HIDDEN_ELEMENTS = frozenset({"script", "style", "noscript", "template"})
# Blocks that read as paragraphs get a blank line around them (the chunker splits there);
# smaller blocks just start a new line.
_PARAGRAPH_ELEMENTS = frozenset({
    "address", "article", "aside", "blockquote", "details", "dl", "fieldset", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "main",
    "nav", "ol", "p", "pre", "section", "table", "title", "ul",
})
_LINE_ELEMENTS = frozenset({
    "caption", "dd", "div", "dt", "figcaption", "legend", "li", "option", "summary", "tr",
})
_VOID_LINE_ELEMENTS = frozenset({"br", "hr"})  # no end tag: each start tag is one break
_CELL_ELEMENTS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")
_BLANK_LINE_RUNS = re.compile(r"\n{3,}")


@dataclass
class _Line:
    """One line of visible text being built, with the file lines its characters came from."""

    text: str = ""
    first: int | None = None
    last: int | None = None


# a piece of text with no "\n" and the span of file lines of its visible characters
_Segment = tuple[str, LineSpan | None]


class _VisibleTextParser(HTMLParser):
    """Collects visible text; entities are decoded by the parser (``convert_charrefs``).

    Breaks are held back until the next text arrives, so an element's end and the next
    one's start make one break, not two, and the output never starts with one. Each text
    line remembers the file lines (``getpos``) of its first and last visible character.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._lines = [_Line()]
        self._started = False
        self._pending_newlines = 0
        self._hidden_depth = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_ELEMENTS:
            self._hidden_depth += 1
        elif not self._hidden_depth:
            self._break_around(tag, is_start=True)
            if tag == "pre":
                self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_ELEMENTS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif not self._hidden_depth:
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)
            self._break_around(tag, is_start=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """``<br/>`` is one break, and a self-closed ``<script/>`` hides nothing after it."""
        if tag not in _HIDDEN_ELEMENTS:
            self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        if self._hidden_depth:
            return
        line = self.getpos()[0]  # the file line where ``data`` starts
        if self._pre_depth:
            self._append([(part, (line + i, line + i)) for i, part in enumerate(data.split("\n"))])
            return
        text = _WHITESPACE.sub(" ", data)
        if self._pending_newlines or not self._started or self._lines[-1].text.endswith(" "):
            text = text.lstrip(" ")
        self._append([(text, _visible_span(data, line))])

    def text(self) -> tuple[str, tuple[LineSpan, ...]]:
        """The text, without trailing spaces, blank-line runs or blank ends, and its spans."""
        kept: list[tuple[str, int | None, int | None]] = []
        for line in self._lines:
            text = line.text.rstrip()
            if text or (kept and kept[-1][0]):  # a blank line only after a line of text
                kept.append((text, line.first, line.last))
        while kept and not kept[-1][0]:
            kept.pop()
        spans: list[LineSpan] = []
        for _, first, last in kept:
            previous = spans[-1][1] if spans else 1
            spans.append((first or previous, last or first or previous))  # blank lines: where the last text ended
        return "\n".join(text for text, _, _ in kept), tuple(spans)

    def _break_around(self, tag: str, *, is_start: bool) -> None:
        if tag in _PARAGRAPH_ELEMENTS:
            self._pending_newlines = 2
        elif is_start and tag in _VOID_LINE_ELEMENTS:  # <br><br> reads as a paragraph break
            self._pending_newlines = min(2, self._pending_newlines + 1)
        elif tag in _LINE_ELEMENTS:
            self._pending_newlines = max(self._pending_newlines, 1)
        elif is_start and tag in _CELL_ELEMENTS and self._started and not self._pending_newlines:
            self._append([(" ", None)])

    def _append(self, segments: list[_Segment]) -> None:
        """Add text made of ``segments`` (one per line) after any pending break."""
        if len(segments) == 1 and not segments[0][0]:
            return
        if self._pending_newlines and self._started:
            self._lines.extend(_Line() for _ in range(self._pending_newlines))
        self._pending_newlines = 0
        self._started = True
        for i, (text, span) in enumerate(segments):
            if i:
                self._lines.append(_Line())
            line = self._lines[-1]
            line.text += text
            if span is not None and text.strip():
                line.first = span[0] if line.first is None else line.first
                line.last = span[1]


def _visible_span(data: str, line: int) -> LineSpan | None:
    """The file lines of the first and last non-space characters of ``data`` (from ``line``)."""
    if not data.strip():
        return None
    start = len(data) - len(data.lstrip())
    end = len(data.rstrip()) - 1
    return line + data.count("\n", 0, start), line + data.count("\n", 0, end)
