"""Reading an indexed file back for an agent (MCP ``get``): only indexed files, never too much.

The path an agent gives is untrusted. It is resolved once (``..`` and every symlink), and
the *resolved* file must itself be an indexed file of an indexed folder: a link planted
after indexing (``notes/a.md -> ../secret`` or ``-> .env`` beside it) leads to a file the
index never took, so it is refused. The file is then opened without following links and
checked to be the very file that was checked, so swapping it in between gains nothing.

The answer is capped in bytes whatever was asked: lines are streamed, and reading stops
at the cap (or after the last line asked for), so lines 1-2 of a file that grew to
gigabytes cost two lines. PDF and Word files answer with their extracted text (through
the extraction sandbox), a ``[page N]`` line before each page.
"""

from __future__ import annotations

import bisect
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from edge_embed import extract
from edge_embed.errors import EdgeEmbedError

if TYPE_CHECKING:
    from edge_embed.api import Index
    from edge_embed.documents import Document

MAX_READ_BYTES = 2 * 1024 * 1024
"""An agent reading a whole huge file is a mistake; ranges work. Applies to every read."""

_SKIP_CHUNK_CHARS = 1 << 20  # how much of an over-long line is read at once while skipping it


@dataclass(frozen=True)
class _Line:
    number: int
    text: str
    clipped: bool  # the line was longer than what was left of the cap


def read_indexed(
    index: Index, path: str, start_line: int | None = None, end_line: int | None = None,
    *, max_bytes: int = MAX_READ_BYTES,
) -> str:
    """Lines ``start_line``..``end_line`` (1-based, inclusive; None: from the start / to the
    end) of the indexed file ``path``, at most ``max_bytes`` of them, a note saying so when cut."""
    resolved, checked = _indexed_target(index, path)
    first = max(start_line or 1, 1)
    last = end_line if end_line is not None else None
    with _open_checked(resolved, checked, path) as handle:
        document_format = extract.document_format(resolved, handle.read(8))
        handle.seek(0)
        if document_format is not None:
            lines = _document_lines(document_format, handle, path, first)
        else:
            lines = _text_lines(handle)
        return _excerpt(lines, first, last, max_bytes, path)


def _indexed_target(index: Index, path: str) -> tuple[str, os.stat_result]:
    """``path`` resolved, if the resolved file is an indexed file; else a neutral error."""
    given = Path(path).expanduser()
    if not given.is_absolute():
        raise EdgeEmbedError(f"give an absolute path (as search results show), not {path!r}")
    try:
        resolved = os.path.realpath(given, strict=True)
        checked = os.stat(resolved)
    except (OSError, RuntimeError):
        raise EdgeEmbedError(f"{path} does not exist") from None
    with index.reading() as store:
        roots = [os.path.realpath(root) for root in store.files.root_paths()]
        containing = [root for root in roots if resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep)]
        if not containing:
            raise EdgeEmbedError(f"{path} is not inside an indexed folder: only indexed files can be read")
        # Inside a folder is not enough: hidden files, .git/, ignored files (.env, keys) are
        # never indexed, and an agent must not read them through us, under any name.
        if not store.files.has_file(resolved):
            raise EdgeEmbedError(f"{path} is not an indexed file: only indexed files can be read")
    if not stat.S_ISREG(checked.st_mode):
        raise EdgeEmbedError(f"{path} is not a file")
    return resolved, checked


def _open_checked(resolved: str, checked: os.stat_result, path: str) -> BinaryIO:
    """The resolved file, opened without following a link, and only if it is the file checked."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        raise EdgeEmbedError(f"{path} cannot be read ({exc.strerror or exc})") from None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino) or not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise EdgeEmbedError(f"{path} changed while it was being opened: try again")
    return os.fdopen(fd, "rb")


def _text_lines(handle: BinaryIO) -> Iterator[tuple[str, bool]]:
    """The file's lines as ``(text, complete)``, read lazily; the encoding as the indexer
    reads it (a BOM decides, else UTF-8 with replacement), newlines of any kind."""
    from edge_embed.files import bom_encoding

    encoding = bom_encoding(handle.read(4)) or "utf-8"
    handle.seek(0)
    text = io.TextIOWrapper(handle, encoding=encoding, errors="replace", newline=None)
    first = True
    while True:
        piece = text.readline(_SKIP_CHUNK_CHARS)
        if not piece:
            return
        if first:  # a UTF-16/32 BOM decodes to U+FEFF (utf-8-sig drops its own)
            piece, first = piece.removeprefix("\ufeff"), False
        complete = piece.endswith("\n")
        yield piece.rstrip("\n"), complete


def _document_lines(document_format: str, handle: BinaryIO, path: str, first: int = 1) -> Iterator[tuple[str, bool]]:
    """A PDF or Word file's extracted text, a ``[page N]`` line before each page (and before
    line ``first``, inside its page); the page lines are not counted: line numbers are
    those search results give."""
    from edge_embed.files import DEFAULT_MAX_DOCUMENT_SIZE

    data = handle.read(DEFAULT_MAX_DOCUMENT_SIZE + 1)
    if len(data) > DEFAULT_MAX_DOCUMENT_SIZE:
        raise EdgeEmbedError(f"{path} is larger than {DEFAULT_MAX_DOCUMENT_SIZE} bytes, too large to extract")
    document = _extract_in_sandbox(document_format, data, path)
    starts = [line for line, _ in document.layout.pages]
    numbers = [number for _, number in document.layout.pages]
    for index, line in enumerate(document.text.split("\n")):
        at = bisect.bisect_right(starts, index) - 1
        marked = at >= 0 and (starts[at] == index or index == first - 1)
        yield (f"[page {numbers[at]}]\n{line}" if marked else line), True


def _extract_in_sandbox(document_format: str, data: bytes, path: str) -> Document:
    from edge_embed.documents import Unextractable
    from edge_embed.documents.sandbox import Sandbox

    with Sandbox() as sandbox:
        try:
            return sandbox.extract(document_format, data)
        except Unextractable as exc:
            raise EdgeEmbedError(f"{path} has no text to read ({exc.reason}: {exc.detail})") from None


def _numbered(pieces: Iterator[tuple[str, bool]], limit: int) -> Iterator[_Line]:
    """Pieces joined back into numbered lines, each kept to at most ``limit`` characters.

    An over-long line is yielded (clipped) as soon as it passes the limit, so a reader that
    stops there reads no further; one that goes on gets the rest read and dropped, never held.
    """
    number = 0
    kept: list[str] = []
    length = 0
    announced = False
    for text, complete in pieces:
        if length < limit:
            kept.append(text[: limit - length])
        length += len(text)
        if length > limit and not announced:
            announced = True
            yield _Line(number + 1, "".join(kept), True)
        if complete:
            number += 1
            if not announced:
                yield _Line(number, "".join(kept), False)
            kept, length, announced = [], 0, False
    if length and not announced:
        yield _Line(number + 1, "".join(kept), False)


def _excerpt(pieces: Iterator[tuple[str, bool]], first: int, last: int | None, max_bytes: int, path: str) -> str:
    out: list[str] = []
    used = 0
    shown_last = 0
    cut = False
    line_count = 0
    for line in _numbered(pieces, max_bytes):
        line_count = line.number
        if line.number < first:
            continue
        if last is not None and line.number > last:
            break
        size = len(line.text.encode("utf-8", errors="replace")) + 1
        if used + size > max_bytes or line.clipped:
            if used + size <= max_bytes or not out:  # a first line alone over the cap: its start
                out.append(line.text.encode("utf-8", errors="replace")[: max_bytes - used].decode("utf-8", "ignore"))
                shown_last = line.number
            cut = True
            break
        out.append(line.text)
        used += size
        shown_last = line.number
        if line.number == last:  # not a byte further: the next line may be gigabytes long
            break
    if not out:
        raise EdgeEmbedError(f"no lines {first}-{last if last is not None else ''} in {path} (it has {line_count})")
    text = "\n".join(out)
    if cut:
        text += (
            f"\n[cut: answers stop at {max_bytes} bytes; this one ends in line {shown_last}: "
            f"ask for start_line={shown_last + 1} to read on]"
        )
    return text
