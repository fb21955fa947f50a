"""The records the store reads and writes, and the settings an index refuses to mix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported when a vector is stored: the server client never is
    import numpy as np

MAX_KNN_K = 4096  # the most chunks one vector search reads: sqlite-vec 0.1.x refuses larger k in the KNN form


@dataclass(frozen=True)
class IndexSettings:
    """What an index is built with; vectors or chunks made otherwise must not be mixed in."""

    model_label: str
    model_file: str
    model_size: int
    model_hash: str
    dims: int
    chunk_tokens: int
    overlap: int
    instruction: str | None = None
    chunker_version: int = 1

    def describe(self) -> str:
        return f"{self.model_label} (dims {self.dims}, chunks of {self.chunk_tokens} tokens, overlap {self.overlap})"


@dataclass(frozen=True)
class RootInfo:
    id: int
    path: str
    last_indexed_at: float | None
    files: int
    chunks: int


@dataclass(frozen=True)
class FileRecord:
    """A file's row as the index keeps it: where it is, its stat, what its bytes hash to
    (``Files.write_file`` writes it with the file's chunks)."""

    root_id: int
    relpath: str
    path: str
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class FileState:
    """What the indexer compares against the disk to skip unchanged files."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class NewChunk:
    seq: int
    start_line: int
    end_line: int
    heading: str | None
    text: str
    text_hash: str  # sha256 of the exact text embedded: the dedup key
    vector: np.ndarray
    page_start: int | None = None  # pages of a PDF or Word file; None for text files
    page_end: int | None = None


@dataclass(frozen=True)
class ChunkChanges:
    """What one ``write_file`` did to a file's chunk rows."""

    inserted: int = 0  # new texts: new rows, vectors and keyword rows
    kept: int = 0  # texts the file already had: rows kept in place (same chunk id, same vector slot)
    deleted: int = 0  # texts the file no longer has


@dataclass(frozen=True)
class StoredChunk:
    """A chunk row as ``write_file`` compares it with the new version of its file."""

    id: int
    seq: int
    start_line: int
    end_line: int
    heading: str | None
    text: str
    page_start: int | None = None
    page_end: int | None = None


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    root: str
    path: str
    relpath: str
    start_line: int
    end_line: int
    heading: str | None
    text: str
    page_start: int | None = None  # pages of a PDF or Word file; None for text files
    page_end: int | None = None


def vector_blob(vector: np.ndarray, dims: int) -> bytes:
    """A float32 vector as sqlite-vec stores it, after checking its dimension."""
    import numpy as np

    array = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
    if array.shape[0] != dims:
        raise ValueError(f"vector has {array.shape[0]} dimensions, the index stores {dims}")
    return array.tobytes()


def settings_differences(stored: IndexSettings, wanted: IndexSettings) -> list[str]:
    """Names of what would make old and new vectors or chunks incomparable."""
    differences = []
    if stored.model_hash and wanted.model_hash:
        if stored.model_hash != wanted.model_hash:
            same_label = stored.model_label == wanted.model_label
            differences.append(
                f"the model file ({Path(stored.model_file).name} vs {Path(wanted.model_file).name})"
                if same_label
                else "the model"
            )
    elif stored.model_label != wanted.model_label:
        differences.append("the model")
    for field, name in (
        ("dims", "dims"),
        ("chunk_tokens", "chunk size"),
        ("overlap", "overlap"),
        ("chunker_version", "chunking rules (a newer edge-embed)"),
    ):
        if getattr(stored, field) != getattr(wanted, field):
            differences.append(name)
    return differences
