"""A changed file to chunks: read and hash, extract (PDF/Word, in the sandbox), chunk.

The preparer writes nothing: it answers each file with an outcome (``Prepared`` chunks
for the batcher, or why there are none) and the pipeline acts on it. The model is loaded
only when a file needs chunking (its tokenizer), the extraction worker only when a PDF or
Word file changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence, Union

from edge_embed.chunking import Chunk, chunk_document
from edge_embed.documents import RETRIED_SKIPS, Unextractable
from edge_embed.documents.sandbox import Sandbox
from edge_embed.extract import file_lines
from edge_embed.files import DocumentFile, FileContent, FoundFile, Skip, read_file
from edge_embed.indexer.options import IndexOptions
from edge_embed.indexer.planner import FileTask
from edge_embed.indexer.storage import file_record

if TYPE_CHECKING:
    from edge_embed.runtime.loader import ModelHandle
    from edge_embed.store import FileRecord, FileState

TIMEOUTS_REMEMBERED = 2  # once may be a busy machine; twice, the same bytes, is the file


@dataclass(frozen=True)
class Prepared:
    """A changed file, chunked: what the batcher embeds and writes."""

    record: FileRecord
    chunks: tuple[Chunk, ...]
    hashes: tuple[str, ...]  # text_hash of each chunk's embed text: the dedup keys
    lossy: bool  # decoded with replacement characters


@dataclass(frozen=True)
class SameContent:
    """New stat, same bytes (a `touch`, a checkout): only the stat is refreshed."""

    found: FoundFile
    state: FileState


@dataclass(frozen=True)
class Unreadable:
    """The file could not be read as text (binary, vanished, too large...)."""

    skip: Skip


@dataclass(frozen=True)
class Unextracted:
    """A PDF or Word file without text to index; ``remembered``: store it without chunks,
    so the same bytes are not parsed again (else it keeps its old chunks and stat)."""

    record: FileRecord
    skip: Skip
    remembered: bool


@dataclass(frozen=True)
class Unchunkable:
    """Text the chunker refused (a budget too small for the header and one character)."""

    relpath: str
    error: str
    lossy: bool


Outcome = Union[Prepared, SameContent, Unreadable, Unextracted, Unchunkable]


class TimeoutMemory(Protocol):
    """Where extraction timeouts of exact bytes are counted across runs (the index)."""

    def count_timeout(self, content_hash: str) -> int: ...

    def forget_timeouts(self, content_hash: str) -> None: ...


class FilePreparer:
    """Turns the changed files of a run into outcomes, one at a time.

    A ``sandbox`` passed in is the caller's to close; one the preparer starts is closed
    by ``close``.
    """

    def __init__(self, model: ModelHandle, options: IndexOptions, timeouts: TimeoutMemory, sandbox: Sandbox | None = None) -> None:
        self.model = model
        self.options = options
        self.timeouts = timeouts
        self._sandbox = sandbox
        self._owns_sandbox = sandbox is None

    def prepare(self, root_id: int, task: FileTask) -> Outcome:
        """Read, hash, extract and chunk the file of ``task`` (its stat changed)."""
        found, state = task.found, task.state
        content = read_file(found)
        if isinstance(content, Skip):
            return Unreadable(content)
        if state is not None and state.content_hash == content.content_hash:
            return SameContent(found, state)
        record = file_record(root_id, found, content.content_hash)
        if isinstance(content, DocumentFile):
            extracted = self._extract(record, content)
            if isinstance(extracted, Unextracted):
                return extracted
            content = extracted
        return self._chunk(record, content)

    def close(self) -> None:
        """Stop the extraction worker if this preparer started it."""
        if self._owns_sandbox and self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def _extract(self, record: FileRecord, document: DocumentFile) -> FileContent | Unextracted:
        """A PDF or Word file's text from the sandboxed worker, or why it has none.

        A file without text is stored without chunks (its old ones go): the same bytes
        would fail the same way, so an unchanged re-run does not parse it again. A timeout
        or a worker crash (``RETRIED_SKIPS``) may pass: the file keeps its old chunks and
        stat, so the next run tries again; but bytes that timed out ``TIMEOUTS_REMEMBERED``
        times are remembered like a damaged file, so one hostile document cannot add its
        timeout to every later run.
        """
        if self._sandbox is None:
            self._sandbox = Sandbox(self.options.document_limits)
        try:
            extracted = self._sandbox.extract(document.document_format, document.data)
        except Unextractable as exc:
            remembered = exc.reason not in RETRIED_SKIPS or self._timed_out_again(exc, document.content_hash)
            detail = exc.detail + ("; not tried again until the file changes" if exc.reason in RETRIED_SKIPS and remembered else "")
            return Unextracted(record, Skip(record.relpath, exc.reason, detail), remembered)
        return FileContent(
            extracted.text, document.content_hash, document.document_format, False, "document", layout=extracted.layout
        )

    def _timed_out_again(self, exc: Unextractable, content_hash: str) -> bool:
        """Whether these bytes have now timed out ``TIMEOUTS_REMEMBERED`` times (then forgotten
        as a count: the file row remembers them from here)."""
        if exc.reason != "timed-out" or self.timeouts.count_timeout(content_hash) < TIMEOUTS_REMEMBERED:
            return False
        self.timeouts.forget_timeouts(content_hash)
        return True

    def _chunk(self, record: FileRecord, content: FileContent) -> Prepared | Unchunkable:
        """The file's chunks in the model's tokens, located by the file's own lines."""
        embedder = self.model.load()
        try:
            chunks = chunk_document(
                content.text,
                name=Path(record.relpath).name,
                kind=content.kind,
                count_tokens=embedder.count_tokens,
                # the chunker reserves one token (the EOS); models that add more get a smaller budget
                max_tokens=self.options.chunk_tokens - embedder.special_token_count + 1,
                overlap=self.options.overlap,
                layout=content.layout,
            )
        except ValueError as exc:  # e.g. a budget too small for the header and one character
            return Unchunkable(record.relpath, str(exc), content.lossy)
        located = tuple(in_file_lines(chunk, content.source_lines) for chunk in chunks)
        return Prepared(record, located, tuple(text_hash(chunk.embed_text) for chunk in located), content.lossy)


def in_file_lines(chunk: Chunk, source_lines: Sequence[tuple[int, int]] | None) -> Chunk:
    """A chunk located by the file's own lines (for extracted HTML text too), for `path:line`."""
    start_line, end_line = file_lines(source_lines, chunk.start_line, chunk.end_line)
    return replace(chunk, start_line=start_line, end_line=end_line)


def text_hash(text: str) -> str:
    """The dedup key of a chunk: sha256 of exactly what the model embeds."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
