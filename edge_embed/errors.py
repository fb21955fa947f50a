"""Errors a user can act on.

Every failure the user can fix (a missing model, a bad file, a wrong option) is raised as
an ``EdgeEmbedError`` whose message is one line that says what is wrong and what to do.
The CLI prints it as ``Error: ...`` and exits with status 2, never with a traceback.
"""


class EdgeEmbedError(Exception):
    """A failure with a one-line, user-facing explanation."""


class ModelFileError(EdgeEmbedError):
    """A model file is missing, is not a GGUF, or is truncated/corrupt."""


class ModelNotFound(EdgeEmbedError):
    """A catalog model is not downloaded yet (the message names the `pull` command)."""

    def __init__(self, message: str, model_name: str) -> None:
        super().__init__(message)
        self.model_name = model_name  # the catalog name, so a caller can offer to pull it


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
