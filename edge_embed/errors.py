"""Errors a user can act on, as data each face words for itself.

Every failure the user can fix (a missing model, a bad file, a wrong option) is raised as
an ``EdgeEmbedError``. Its message says what is wrong in one line; three fields say the
rest as data, because the library has three faces (the CLI, the HTTP server, MCP) that
name the same input differently (``in_paths`` is ``--in`` to the CLI, ``in`` in
/v1/search's JSON): a message naming a CLI flag misled HTTP clients and agents (issue 16).

- ``kind``: what sort of failure, from a small closed set (``KINDS``); the HTTP face maps
  it to a status (invalid 400, not_found 404, conflict 409, busy and unavailable 503,
  storage_full 507, damaged 500). Subclasses set their own default.
- ``param``: which input was wrong, in the library's terms (``k``, ``in_paths``,
  ``model``, ``dims``), or None.
- ``hint``: what to do, worded neutrally. It is a template: ``{name}`` for a term of
  ``TERMS`` (an input, a setting or an operation) becomes the face's word for it (the CLI's
  ``{in_paths}`` is ``--in``, its ``{index}`` ``run `edge-embed index FOLDER```), and
  ``{name}`` for a keyword value given to the error becomes that value. User data (paths,
  names) goes in as such values, never into the template, so braces in it stay literal.

``str(error)`` is the message and the hint in neutral words; a face renders with its own
words through ``error.render(words)``. The CLI prints ``Error: ...`` and exits with status
2, never with a traceback.

Texts for a person that are not errors (why a search reranks, a device plan's notes, a
skipped file's detail, an upgrade to apply) reach the same faces, so they are ``Phrase``s:
the same template and values as a hint, ``str(phrase)`` in neutral words,
``phrase.render(words)`` in a face's (``say`` takes plain text too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Kind = Literal["invalid", "not_found", "conflict", "busy", "storage_full", "unavailable", "damaged"]
KINDS: frozenset[str] = frozenset(get_args(Kind))

# Every term a hint may name, in neutral words: what str(error) and a face without its
# own word for a term say. Inputs and settings are named as the library's parameters are.
TERMS: dict[str, str] = {
    # search
    "k": "k",
    "in_paths": "in_paths",
    "per_file": "per_file",
    "min_score": "min_score",
    "mode": "mode",
    "rerank": "rerank",
    "rerank_top": "rerank_top",
    "rerank_on": "rerank=True",
    "no_rerank": "rerank=False",
    # embedding
    "input": "input",
    # models and the engine
    "model": "model",
    "reranker": "reranker",
    "dims": "dims",
    "ctx": "context size",
    "batch": "batch size",
    "gpu_layers": "gpu_layers",
    "cpu": "force_cpu",
    "embed_url": "embed_url",
    "db": "an index file",
    # indexing
    "include": "include",
    "exclude": "exclude",
    "chunk_tokens": "chunk_tokens",
    "follow_links": "follow_links",
    "rebuilding": "rebuild=True",
    # eval
    "queries": "the queries file",
    "split": "split",
    "compare": "the file to compare with",
    # operations a hint may tell the user to do, as imperatives ("build one first: {index}")
    "index": "index a folder",
    "rebuild": "rebuild the index",
    "pull": "download {model_name}",
    "remove": "remove {root} from the index",
    "status": "ask for the index's status",
    "models": "look at the model catalog",
    "stop_watch": "stop the watcher",
    "index_again": "index {root} again",
    # the same operations as the subject of a sentence ("{pulling} turns it on here")
    "pulling": "downloading {model_name}",
    "removing": "removing {root} from the index",
    # what a file given to eval's comparison must be
    "eval_json": "an evaluation's JSON output",
}

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, words: Mapping[str, str], values: Mapping[str, str]) -> str:
    """``template`` with each ``{term}`` in the face's words (else the neutral ones) and
    each ``{value}`` filled in, in one pass: what is filled in is not read again, so a
    value with braces stays as it is. A word may itself name values (``{model_name}``)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in TERMS:
            word = words.get(name, TERMS[name])
            return _PLACEHOLDER.sub(lambda inner: values.get(inner.group(1), inner.group(0)), word)
        return values.get(name, match.group(0))

    return _PLACEHOLDER.sub(one, template)


def _as_values(values: Mapping[str, object]) -> dict[str, str | Phrase]:
    """Values as text (a Phrase stays one, to be said in a face's words); one named like
    a term would be filled in as the term, so it is refused."""
    clashing = sorted(set(values) & set(TERMS))
    if clashing:
        raise ValueError(f"error values named like terms: {clashing}")
    return {name: value if isinstance(value, Phrase) else str(value) for name, value in values.items()}


@dataclass(frozen=True, init=False)
class Phrase:
    """A library text for a person that is not an error (a reason, a note, advice): a
    template like an error's hint, with ``{term}``s each face words and ``{name}`` values.
    A value may be a Phrase itself (a plan's note inside a rerank reason): it is said in
    the same words. ``str()`` is the neutral words; a face calls ``render(words)``."""

    template: str
    values: tuple[tuple[str, str | Phrase], ...]

    def __init__(self, template: str, /, **values: object) -> None:
        # positional-only: a value may be called "template" (another server's error data)
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "values", tuple(_as_values(values).items()))

    def render(self, words: Mapping[str, str] = TERMS) -> str:
        """The text with each term in ``words`` (a face's names for ``TERMS``)."""
        return fill(self.template, words, {name: say(value, words) for name, value in self.values})

    def __str__(self) -> str:
        return self.render()

    def to_dict(self) -> dict[str, Any]:
        """As JSON data (a value Phrase nested), for a client that words it itself."""
        return {
            "template": self.template,
            "values": {name: value.to_dict() if isinstance(value, Phrase) else value for name, value in self.values},
        }

    @classmethod
    def from_dict(cls, data: object, depth: int = 4) -> Phrase | None:
        """``to_dict``'s data back as a Phrase; None for anything else (another version's answer)."""
        if not (isinstance(data, dict) and isinstance(data.get("template"), str) and isinstance(data.get("values"), dict)):
            return None
        values: dict[str, object] = {}
        for name, value in data["values"].items():
            if name in TERMS or not isinstance(value, (str, dict)):
                return None
            values[name] = value if isinstance(value, str) else cls.from_dict(value, depth - 1) if depth else None
            if values[name] is None:
                return None
        return cls(data["template"], **values)


def say(text: str | Phrase, words: Mapping[str, str] = TERMS) -> str:
    """``text`` in a face's ``words``: a Phrase rendered, plain text as it is."""
    return text.render(words) if isinstance(text, Phrase) else text


class EdgeEmbedError(Exception):
    """A failure with a one-line explanation, plus its kind, the input at fault and what
    to do (see the module docstring); subclasses set ``kind`` (and ``param``) defaults."""

    kind: Kind = "invalid"
    param: str | None = None

    def __init__(
        self, message: str, *, kind: Kind | None = None, param: str | None = None, hint: str | None = None,
        **values: object,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            if kind not in KINDS:
                raise ValueError(f"unknown error kind {kind!r}; one of {sorted(KINDS)}")
            self.kind = kind
        if param is not None:
            self.param = param
        self.hint = hint
        self.values = _error_values(values)

    def render(self, words: Mapping[str, str] = TERMS) -> str:
        """The message, then the hint in ``words`` (a face's names for ``TERMS``)."""
        if not self.hint:
            return self.message
        return f"{self.message}; {self.rendered_hint(words)}"

    def rendered_hint(self, words: Mapping[str, str] = TERMS) -> str | None:
        """The hint alone in ``words``; None without one."""
        return Phrase(self.hint, **self.values).render(words) if self.hint else None

    def add_hint(self, more: str, **values: object) -> EdgeEmbedError:
        """This error with ``more`` advice (a template too) after its hint: a caller that
        knows another way out (search without the model) says so without rewording."""
        self.hint = f"{self.hint}; {more}" if self.hint else more
        self.values.update(_error_values(values))
        return self

    def add_context(self, context: str) -> EdgeEmbedError:
        """This error with ``context`` before its message ("this index was built with X: ..."):
        a caller says where it happened without rebuilding it (a subclass's fields stay)."""
        self.message = f"{context}: {self.message}"
        self.args = (self.message,)
        return self

    def __str__(self) -> str:
        return self.render()


def _error_values(values: Mapping[str, object]) -> dict[str, str]:
    """An error's values, as text: they travel as JSON (``server/protocol.library_error``)."""
    return {name: str(value) for name, value in _as_values(values).items()}


class ModelFileError(EdgeEmbedError):
    """A model file is missing, is not a GGUF, or is truncated/corrupt."""

    param = "model"


class ModelNotFound(EdgeEmbedError):
    """A catalog model is not downloaded yet (the hint names the download, ``{pull}``)."""

    kind: Kind = "not_found"
    param = "model"

    def __init__(self, message: str, model_name: str, **details: Any) -> None:
        super().__init__(message, **{"model_name": model_name, **details})
        self.model_name = model_name  # the catalog name, so a caller can offer to pull it


class LlamaCppCrashes(EdgeEmbedError):
    """The installed llama.cpp dies on this CPU (a probe in a child process saw it), so no
    model is loaded; the message says how to rebuild it. ``detail``: how the probe died."""

    kind: Kind = "unavailable"

    def __init__(self, message: str, detail: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.detail = detail


class IndexMismatch(EdgeEmbedError):
    """An index was built with another model, dimension or chunking."""

    kind: Kind = "conflict"


class IndexFileError(EdgeEmbedError):
    """SQLite could not read or write the index file (see edge_embed/store/sqlite_errors.py).

    ``path`` is the index file (None when unknown) and ``sqlite_error`` SQLite's own words,
    so a program can tell the cases apart by class and still log the detail.
    """

    kind: Kind = "unavailable"

    def __init__(self, message: str, path: str | None, sqlite_error: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.path = path
        self.sqlite_error = sqlite_error


class IndexFull(IndexFileError):
    """The disk (or a size limit) ran out during a write; the write was rolled back."""

    kind: Kind = "storage_full"


class IndexCorrupt(IndexFileError):
    """The file is damaged: SQLite found pages that are not what it wrote."""

    kind: Kind = "damaged"


class IndexBusy(IndexFileError):
    """Another process held the index locked for longer than the busy timeout: trying
    again later works, hence its own kind (HTTP: 503 with Retry-After)."""

    kind: Kind = "busy"


class IndexReadOnly(IndexFileError):
    """The file, its folder or its -wal/-shm files cannot be written."""


class IndexChanged(IndexFileError):
    """A table vanished under a reader: the index was rebuilt while it was read (asking
    again reads the new one, so it is ``busy``, not ``damaged``)."""

    kind: Kind = "busy"


class UnstorableName(EdgeEmbedError):
    """A path (or text) that is not valid UTF-8, which the index cannot store or search.

    ``shown`` is the name with replacement characters for the bytes that do not decode.
    """

    def __init__(self, message: str, shown: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.shown = shown


class NotAnEmbeddingModel(EdgeEmbedError):
    """A GGUF that llama.cpp would run without pooling: a chat/generation model."""

    param = "model"

    def __init__(self, message: str, model_name: str, pooling: str | None, **details: Any) -> None:
        super().__init__(message, **details)
        self.model_name = model_name  # the file's general.name
        self.pooling = pooling  # what the header declares: "none", or None without a pooling key


class DependencyError(EdgeEmbedError):
    """A package edge-embed imports is missing, or installed in a version it cannot use."""

    kind: Kind = "unavailable"

    def __init__(
        self, message: str, package: str, installed: str | None, requirement: str, **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.package = package  # the distribution to install, e.g. "huggingface-hub"
        self.installed = installed  # its installed version, None when it is not installed
        self.requirement = requirement  # what edge-embed declares, e.g. "huggingface-hub<3,>=1.20"
