"""SQLite's failures turned into one-line errors at the store's ONE boundary.

Every class of the store that callers hold (``Store``, its parts, ``VectorRanking``)
derives from ``TranslatesErrors``, which wraps each public method of each subclass in
``translated_errors`` when the class is made: a full disk, a damaged file, a lock held too
long or a rebuild under a reader reaches callers as an ``IndexFileError`` subclass that says
what to do next, never as an apsw traceback, whatever private helper or module function the
method reached it through. Writes are transactions: a failed one is rolled back, which is
why the messages can promise that the index is as it was. A name that is not valid UTF-8
becomes ``UnstorableName`` at the same boundary.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import apsw

from edge_embed.errors import (
    IndexBusy,
    IndexChanged,
    IndexCorrupt,
    IndexFileError,
    IndexFull,
    IndexReadOnly,
    UnstorableName,
)

_UNTOUCHED = "the failed write was rolled back, the index holds what it held before it"
_VANISHED_OBJECT = ("no such table", "no such column", "no such index")


def index_error(exc: apsw.Error, path: str | os.PathLike[str] | None) -> IndexFileError:
    """The error a user acts on for an apsw error met on the index ``path`` (None: unknown)."""
    where = f"the index {path}" if path is not None else "the index"
    detail = _first_line(exc)
    shown = None if path is None else str(path)
    if isinstance(exc, apsw.FullError):
        return IndexFull(
            f"the disk holding {where} is full: free some space and run the command again ({_UNTOUCHED})",
            shown, detail,
        )
    if isinstance(exc, (apsw.CorruptError, apsw.NotADBError)):
        return IndexCorrupt(
            f"{where} is damaged ({detail})", shown, detail,
            hint="restore it from a backup, or delete it (with its -wal and -shm files) and {index} again",
        )
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return IndexBusy(
            f"{where} stayed locked by another process (another writer running?)", shown, detail,
            hint="try again when it has finished",
        )
    if isinstance(exc, (apsw.ReadOnlyError, apsw.CantOpenError, apsw.PermissionsError, apsw.AuthError)):
        return IndexReadOnly(
            f"cannot write {where} or its -wal/-shm files beside it ({detail}): check the permissions "
            "of the file and its folder, and that the disk is not mounted read-only",
            shown, detail,
        )
    if isinstance(exc, apsw.IOError):
        return IndexFileError(
            f"reading or writing {where} failed ({detail}): check the disk (unplugged, full, failing?) "
            f"and run the command again ({_UNTOUCHED})",
            shown, detail,
        )
    if isinstance(exc, apsw.SchemaChangeError) or (
        isinstance(exc, apsw.SQLError) and any(phrase in detail for phrase in _VANISHED_OBJECT)
    ):
        return IndexChanged(
            f"{where} was rebuilt while this command read it ({detail}): run the command again",
            shown, detail,
        )
    return IndexFileError(
        f"SQLite failed on {where} ({detail})", shown, detail,
        hint="run the command again; if it keeps failing, {rebuild} to start it over",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unstorable_name(text: str) -> UnstorableName:
    """A name that is not valid UTF-8 (Python holds its bad bytes as lone surrogates).

    SQLite text is UTF-8, and the paths an index stores are printed, compared with --in
    and written as JSON, none of which can carry such bytes; so the name is refused, shown
    with replacement characters, with what to do about it.
    """
    shown = _with_replacement_chars(text)
    return UnstorableName(
        f"'{shown}' is not valid UTF-8, which an edge-embed index cannot hold: rename it "
        "(e.g. with `convmv`) and run the command again",
        shown,
    )


def _with_replacement_chars(text: str) -> str:
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes the file system gave
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


@contextmanager
def translated_errors(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Raise apsw errors met inside as the matching ``IndexFileError`` (see ``index_error``),
    and a name that cannot be stored as ``UnstorableName``."""
    try:
        yield
    except apsw.Error as exc:
        raise index_error(exc, path) from exc
    except UnicodeEncodeError as exc:
        if exc.reason != "surrogates not allowed" or not isinstance(exc.object, str):
            raise
        raise unstorable_name(exc.object) from exc


_MARK = "__translates_errors__"  # set on every wrapper, so tests can walk the boundary


class TranslatesErrors:
    """The boundary: every public method of a subclass translates SQLite's errors.

    A method's index path is its instance's ``path``; a classmethod's is its first argument
    (``Store.open(path)``). A context manager made by a generator (``@contextmanager``)
    translates what happens while it is entered too, the ``with`` body's errors included.
    Private methods are not wrapped: they run inside a public one.
    """

    path: os.PathLike[str] | str

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if name.startswith("_"):
                continue
            if isinstance(member, classmethod):
                setattr(cls, name, classmethod(_translating(member.__func__)))
            elif inspect.isfunction(member):
                setattr(cls, name, _translating(member))


def translates_errors(method: object) -> bool:
    """Whether ``method`` (a function or bound method) runs inside the boundary."""
    return getattr(getattr(method, "__func__", method), _MARK, False)


def _translating(method: Callable) -> Callable:
    generator = getattr(method, "__wrapped__", None)
    if inspect.isgeneratorfunction(generator):  # a @contextmanager: wrap the generator itself
        wrapper = contextmanager(_translating_generator(generator))
    else:

        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            with translated_errors(_index_path(args, kwargs)):
                return method(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


def _translating_generator(generator: Callable[..., Iterator[object]]) -> Callable[..., Iterator[object]]:
    @functools.wraps(generator)
    def translated(*args, **kwargs):
        with translated_errors(_index_path(args, kwargs)):
            return (yield from generator(*args, **kwargs))

    return translated


def _index_path(args: tuple, kwargs: dict) -> str | os.PathLike[str] | None:
    owner = args[0]
    if not isinstance(owner, type):
        return getattr(owner, "path", None)
    return args[1] if len(args) > 1 else kwargs.get("path")
