"""Errors a user can act on.

Every failure the user can fix (a missing model, a bad file, a wrong option) is raised as
an ``EdgeEmbedError`` whose message is one line that says what is wrong and what to do.
The CLI prints it as ``Error: ...`` and exits with status 2, never with a traceback.
"""

from __future__ import annotations


class EdgeEmbedError(Exception):
    """A failure with a one-line, user-facing explanation."""


class ModelFileError(EdgeEmbedError):
    """A model file is missing, is not a GGUF, or is truncated/corrupt."""


class ModelNotFound(EdgeEmbedError):
    """A catalog model is not downloaded yet (the message names the `pull` command)."""

    def __init__(self, message: str, model_name: str) -> None:
        super().__init__(message)
        self.model_name = model_name  # the catalog name, so a caller can offer to pull it


class LlamaCppCrashes(EdgeEmbedError):
    """The installed llama.cpp dies on this CPU (a probe in a child process saw it), so no
    model is loaded; the message says how to rebuild it. ``detail``: how the probe died."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class IndexMismatch(EdgeEmbedError):
    """An index was built with another model, dimension or chunking."""


class IndexFileError(EdgeEmbedError):
    """SQLite could not read or write the index file (see edge_embed/store/sqlite_errors.py).

    ``path`` is the index file (None when unknown) and ``sqlite_error`` SQLite's own words,
    so a program can tell the cases apart by class and still log the detail.
    """

    def __init__(self, message: str, path: str | None, sqlite_error: str) -> None:
        super().__init__(message)
        self.path = path
        self.sqlite_error = sqlite_error


class IndexFull(IndexFileError):
    """The disk (or a size limit) ran out during a write; the write was rolled back."""


class IndexCorrupt(IndexFileError):
    """The file is damaged: SQLite found pages that are not what it wrote."""


class IndexBusy(IndexFileError):
    """Another process held the index locked for longer than the busy timeout."""


class IndexReadOnly(IndexFileError):
    """The file, its folder or its -wal/-shm files cannot be written."""


class IndexChanged(IndexFileError):
    """A table vanished under a reader: the index was rebuilt while it was read."""


class UnstorableName(EdgeEmbedError):
    """A path (or text) that is not valid UTF-8, which the index cannot store or search.

    ``shown`` is the name with replacement characters for the bytes that do not decode.
    """

    def __init__(self, message: str, shown: str) -> None:
        super().__init__(message)
        self.shown = shown


class NotAnEmbeddingModel(EdgeEmbedError):
    """A GGUF that llama.cpp would run without pooling: a chat/generation model."""

    def __init__(self, message: str, model_name: str, pooling: str | None) -> None:
        super().__init__(message)
        self.model_name = model_name  # the file's general.name
        self.pooling = pooling  # what the header declares: "none", or None without a pooling key


class DependencyError(EdgeEmbedError):
    """A package edge-embed imports is missing, or installed in a version it cannot use."""

    def __init__(self, message: str, package: str, installed: str | None, requirement: str) -> None:
        super().__init__(message)
        self.package = package  # the distribution to install, e.g. "huggingface-hub"
        self.installed = installed  # its installed version, None when it is not installed
        self.requirement = requirement  # what edge-embed declares, e.g. "huggingface-hub<3,>=1.20"
