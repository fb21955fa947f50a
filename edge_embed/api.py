"""The library façade: what the CLI, the HTTP server and the MCP tools all call.

Two objects cover everything a caller does with edge-embed:

* ``Index``: one index file. ``Index.open(path)``, ``index(folders)``, ``search(text)``
  (with the model the index was built with, loaded on the first vector search and kept
  warm), ``status()``, and every other operation a face offers: ``watch``,
  ``remove_folder``, ``compact``, ``set_instruction``, ``evaluate``, ``read_file``.
* ``TextEmbedder``: raw texts to unit vectors with any model, as documents or as queries
  (with the Qwen3 instruction), at any Matryoshka dimension.

The faces (click commands, Starlette routes, MCP tools) only parse and render: a rule
such as "a query uses the index's own model" lives here once, so the three cannot drift.
Importing this module is cheap: llama.cpp and numpy load when a model is first needed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from inspect import signature
from pathlib import Path
from typing import TYPE_CHECKING, Literal, ParamSpec

from edge_embed.config import current
from edge_embed.errors import EdgeEmbedError, ModelFileError, ModelNotFound
from edge_embed.paths import resolve_db

if TYPE_CHECKING:
    import numpy as np

    from edge_embed.runtime.choice import ModelChoice
    from edge_embed.evaluate import EvalQuery, EvalReport
    from edge_embed.indexer import IndexOptions, IndexSummary, Progress
    from edge_embed.rerank import RerankDecision, RerankStep
    from edge_embed.results import Hit, SearchOutcome
    from edge_embed.runtime.reranker import RerankerHandle
    from edge_embed.runtime.engine import Embedder
    from edge_embed.runtime.loader import ModelHandle
    from edge_embed.runtime.plan import RuntimeSettings
    from edge_embed.search import EmbedQuery, SearchOptions
    from edge_embed.store import CompactResult, IndexSettings, RootInfo, SpaceUsage, Store
    from edge_embed.store.readers import ThreadReaders
    from edge_embed.store.schema import MigrationProgress
    from edge_embed.watch import WatchReport, WatchSettings

log = logging.getLogger("edge_embed")

InputType = Literal["document", "query"]
INPUT_TYPES: tuple[InputType, ...] = ("document", "query")


def _runtime(runtime: RuntimeSettings | None) -> RuntimeSettings:
    from edge_embed.runtime.plan import RuntimeSettings

    return runtime if runtime is not None else RuntimeSettings.from_env()


# --------------------------------------------------------------------------- embedder
class TextEmbedder:
    """Raw texts to L2-normalised float32 vectors with one model (loaded on first use).

    >>> embedder = TextEmbedder.open("qwen3-embedding-0.6b")
    >>> embedder.embed(["first document", "second"]).shape      # (2, 1024)
    >>> embedder.embed(["how to rotate keys"], input_type="query", dims=256)
    """

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle
        self._lock = threading.RLock()  # loading and unloading vs a borrower's ``pinned`` engine

    @classmethod
    def open(
        cls,
        model: str | None = None,
        runtime: RuntimeSettings | None = None,
        *,
        qwen3_format: bool | None = None,
        embed_url: str | None = None,
    ) -> TextEmbedder:
        """A catalog name or GGUF path (None: $EDGE_EMBED_MODEL or the default model).

        With ``embed_url`` the vectors come from that OpenAI-compatible server (``model``
        is then the server's name for it; None: the first it lists).
        """
        if embed_url:
            from edge_embed.runtime.remote import RemoteEmbedder, RemoteHandle

            return cls(RemoteHandle(RemoteEmbedder(embed_url, model=model, qwen3_format=qwen3_format is not False)))
        from edge_embed.runtime.loader import prepare_model

        return cls(prepare_model(model or current().model, _runtime(runtime), qwen3_format=qwen3_format))

    @property
    def name(self) -> str:
        """The catalog name, else the model file's absolute path."""
        return self.handle.label

    @property
    def native_dim(self) -> int:
        return self.handle.native_dim

    @property
    def loaded(self) -> bool:
        return self.handle.loaded

    def engine(self) -> Embedder:
        """The loaded llama.cpp engine (loads it on the first call)."""
        with self._lock:
            return self.handle.load()

    @contextmanager
    def pinned(self) -> Iterator[Embedder]:
        """The engine, which no other thread can load or unload until the block ends.

        For a second thread that only reads the vocabulary (a watcher counting tokens
        while the server's engine thread decodes): the model cannot vanish under it.
        """
        with self._lock:
            yield self.handle.load()

    def embed(
        self,
        texts: Sequence[str],
        *,
        input_type: InputType = "document",
        instruct: str | None = None,
        dims: int | None = None,
    ) -> np.ndarray:
        """Vectors of shape (len(texts), dims or native), in input order.

        Documents are embedded as they are (+ EOS); queries get the model's instruction
        (``instruct`` replaces its task sentence). Giving ``instruct`` implies a query.
        """
        if input_type not in INPUT_TYPES:
            raise EdgeEmbedError(f"input_type must be one of {', '.join(INPUT_TYPES)}, got {input_type!r}")
        self.handle.check_dims(dims)
        if input_type == "query" or instruct:
            return self.engine().embed_queries(list(texts), instruct=instruct, dims=dims)
        return self.engine().embed_documents(list(texts), dims=dims)

    def close(self) -> None:
        """Free the model (VRAM goes back); the next embed loads it again."""
        with self._lock:
            self.handle.close()


# --------------------------------------------------------------------------- reranker
@dataclass(frozen=True)
class Ranked:
    """One document's place in a rerank: its position in the input and its relevance (0..1)."""

    index: int
    score: float


class TextReranker:
    """Documents ordered by relevance to a query with a Qwen3-Reranker (loaded on first use).

    >>> reranker = TextReranker.open()      # qwen3-reranker-0.6b, once pulled
    >>> best = reranker.rank("rotate keys", ["cats", "Rotate the API keys yearly"], top_n=1)[0]
    >>> best.index, best.score               # its position in the input, P(relevant) in 0..1
    """

    def __init__(self, handle: RerankerHandle) -> None:
        self.handle = handle

    @classmethod
    def open(cls, model: str | None = None, runtime: RuntimeSettings | None = None) -> TextReranker:
        """A catalog name or GGUF path (None: qwen3-reranker-0.6b); never downloads."""
        from edge_embed.runtime.reranker import prepare_reranker

        return cls(prepare_reranker(model, _runtime(runtime)))

    @property
    def name(self) -> str:
        """The catalog name, else the model file's absolute path."""
        return self.handle.label

    @property
    def loaded(self) -> bool:
        return self.handle.loaded

    def rank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> list[Ranked]:
        """The ``top_n`` most relevant documents (None: all), best first; ties keep input order."""
        if not query.strip():
            raise EdgeEmbedError("cannot rerank for an empty query")
        if not documents:
            return []
        scores = self.handle.score(query, list(documents))
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return [Ranked(i, float(scores[i])) for i in order[:top_n]]

    def close(self) -> None:
        """Free the model (VRAM goes back); the next rank loads it again."""
        self.handle.close()


# --------------------------------------------------------------------------- index
@dataclass(frozen=True)
class IndexRequest:
    """What a face asks of an indexing run: which files (walk rules, one run's) and the
    index's own settings. ``chunk_tokens``, ``overlap``, ``dims`` and ``instruction`` None
    keep the index's own, else the model's defaults; the sizes None are the defaults."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    hidden: bool = False
    follow_links: bool = False
    max_file_size: int | None = None
    max_document_size: int | None = None
    chunk_tokens: int | None = None
    overlap: int | None = None
    dims: int | None = None
    instruction: str | None = None

    def options(self) -> IndexOptions:
        """The indexer's options (which also hold what no face sets: document limits, compaction)."""
        from edge_embed.indexer import IndexOptions

        sizes = {name: getattr(self, name) for name in ("max_file_size", "max_document_size") if getattr(self, name) is not None}
        return IndexOptions(
            include=self.include, exclude=self.exclude, hidden=self.hidden, follow_links=self.follow_links,
            chunk_tokens=self.chunk_tokens, overlap=self.overlap, dims=self.dims, instruction=self.instruction, **sizes,
        )


@dataclass(frozen=True)
class IndexStatus:
    """An index described: the store's figures (``stats``: path, size, files, chunks, model
    settings, pending migrations...), its folders, its wasted space and whether compacting
    is worth it, its age and its watcher (None: none runs)."""

    stats: dict[str, object]
    roots: list[RootInfo]
    space: SpaceUsage
    worth_compacting: bool
    index_age_s: float | None
    watch: dict[str, object] | None

    def to_dict(self) -> dict[str, object]:
        """The JSON document of `status --json` and MCP ``status``: the same fields for both."""
        return {
            **self.stats, "space": self.space.to_dict(), "roots": [root_dict(root) for root in self.roots],
            "index_age_s": self.index_age_s, "watch": self.watch,
        }


SearchArguments = ParamSpec("SearchArguments")


def hits_only(search_outcome: Callable[SearchArguments, SearchOutcome]) -> Callable[SearchArguments, list[Hit]]:
    """``Index.search`` made from ``Index.search_outcome``: its very arguments, typed once
    there (a type checker sees them through the ParamSpec), answering only the hits."""

    def search(*args: SearchArguments.args, **kwargs: SearchArguments.kwargs) -> list[Hit]:
        """Hits for ``text``, best first: ``search_outcome``'s hits (its arguments)."""
        index, *rest = args  # through the instance: a subclass's or a patched search_outcome counts
        return index.search_outcome(*rest, **kwargs).hits

    search.__signature__ = signature(search_outcome).replace(return_annotation="list[Hit]")  # for help()
    search.__qualname__ = search_outcome.__qualname__.replace(search_outcome.__name__, "search")
    return search


def _thread_readers() -> ThreadReaders:
    from edge_embed.store.readers import ThreadReaders  # loads no SQLite until a read

    return ThreadReaders()


@dataclass
class Index:
    """One index file: index folders into it, search it, describe it.

    >>> with Index.open("notes.db") as index:
    ...     index.index(["~/notes"])
    ...     for hit in index.search("rotate the API keys"):
    ...         print(hit.chunk.path, hit.chunk.start_line, hit.score)
    """

    path: Path
    runtime: RuntimeSettings | None = None
    embed_url: str | None = None  # vectors from this OpenAI-compatible server, not the local model
    _query_model: TextEmbedder | None = None
    _rerank_decisions: dict[tuple[bool | None, str | None, bool], RerankDecision] = field(default_factory=dict)
    _rerankers: dict[str | None, RerankerHandle] = field(default_factory=dict)  # one per reranker: one model
    _rerank_lock: threading.Lock = field(default_factory=threading.Lock)  # the server decides on many threads
    _upgrade_noted: bool = False  # an index an older edge-embed wrote is pointed out once, not per search
    _readers: ThreadReaders = field(default_factory=_thread_readers)  # searches' stores, one per thread

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        runtime: RuntimeSettings | None = None,
        *,
        embed_url: str | None = None,
    ) -> Index:
        """``path`` None: $EDGE_EMBED_DB, else index.db in the data directory."""
        return cls(resolve_db(path), runtime, embed_url)

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def store(self) -> Store:
        """A store of the caller's own (it closes it) of an index that must already exist
        (remove, config, eval; searches use ``reading()``), opened read-only where it cannot
        be written (its ``writer_lock`` then refuses, by name)."""
        from edge_embed.store import Store

        if not self.exists:
            raise EdgeEmbedError(f"no index at {self.path} yet", kind="not_found", hint="build one first: {index}")
        return Store.open(self.path, create=False, reading=True)

    def reading(self) -> AbstractContextManager[Store]:
        """This thread's read-only store of the index, kept open for its next read (the
        server's pool threads each keep one; ``close()`` closes them all)."""
        return self._readers.reading(self.path)

    def store_settings(self) -> IndexSettings | None:
        """What the index was built with; None before its first files."""
        with self.reading() as store:
            return store.meta.settings()

    def settings(self) -> IndexSettings:
        """What the index was built with; an index without files yet is an error here."""
        settings = self.store_settings()
        if settings is None:
            raise EdgeEmbedError(f"{self.path} has no indexed files yet", kind="not_found", hint="build it first: {index}")
        return settings

    # ------------------------------------------------------------------ index
    def index(
        self,
        folders: Sequence[str | os.PathLike[str]],
        request: IndexRequest | None = None,
        *,
        model: str | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        rebuild: bool = False,
        on_migration: MigrationProgress | None = None,
        on_default: Callable[[ModelChoice], None] | None = None,
        on_missing: Callable[[ModelNotFound], bool] | None = None,
    ) -> IndexSummary:
        """Index ``folders`` incrementally (the index's model, else ``model``/the default).

        Everything that can fail (the model, ``request``'s settings against the model and
        the index) is checked before the index file is touched. ``rebuild``: every folder
        of the index (and ``folders``) again into a new file swapped in whole (rebuild.py).
        ``stop`` set: the current batch is finished and written, then the run returns
        (``summary.interrupted``). An index an older edge-embed wrote is migrated first
        (``on_migration`` hears of each step). ``on_default`` hears which model a new index
        gets when none is named; ``on_missing`` may fetch a catalog model that is not
        downloaded (True: try again), so a face can ask its user first.
        """
        from edge_embed.indexer import Indexer, NoProgress, index_settings, resolve_options
        from edge_embed.rebuild import rebuild_index, remove_partial_rebuilds
        from edge_embed.store import Store

        existing = self.store_settings() if self.exists else None
        handle = self._indexing_model(model, existing, rebuild=rebuild, on_default=on_default, on_missing=on_missing)
        try:
            options = (request or IndexRequest()).options()
            index_settings(handle, resolve_options(options, existing, handle))  # refuses what the model cannot do
            roots = [Path(folder).expanduser() for folder in folders]
            progress, stop = progress or NoProgress(), stop or threading.Event()
            if rebuild:
                return rebuild_index(self.path, handle, options, roots, progress=progress, stop=stop)
            with Store.open(self.path) as store, store.writer_lock(on_migration=on_migration):
                remove_partial_rebuilds(self.path)  # left by a killed --rebuild
                return Indexer(store, handle, options, progress=progress, stop=stop).run(roots)
        finally:
            handle.close()

    def watch(
        self,
        folders: Sequence[str | os.PathLike[str]] = (),
        request: IndexRequest | None = None,
        settings: WatchSettings | None = None,
        *,
        stop: threading.Event,
        model: str | None = None,
        handle: ModelHandle | None = None,
        progress: Progress | None = None,
        report: WatchReport | None = None,
        on_migration: MigrationProgress | None = None,
    ) -> None:
        """Keep ``folders`` (none: every folder of the index) current until ``stop`` is set.

        Holds the writer lock all along (a second `index` or `watch` is told who holds
        it) and publishes its status beside the index for `status` (``read_watch_state``).
        ``handle`` lends another model handle (the server's engine); the watcher's own is
        unloaded after ``settings.keep_alive_s`` without changes and closed at the end.
        An index an older edge-embed wrote is migrated first (``on_migration`` hears of each step).
        """
        from edge_embed.indexer import Indexer, NoProgress
        from edge_embed.store import Store
        from edge_embed.watch import Watcher, WatchSettings, state_path

        if handle is None:
            handle = self._indexing_model(model, self.store_settings() if self.exists else None)
        options = (request or IndexRequest()).options()
        try:
            with Store.open(self.path) as store, store.writer_lock("edge-embed watch", on_migration):
                roots = [Path(folder).expanduser().resolve() for folder in folders]
                roots = roots or [Path(path) for path in store.files.root_paths()]
                if not roots:
                    raise EdgeEmbedError(
                        f"{self.path} has no folders to watch", hint="name some, or {index} first"
                    )

                def apply(root: Path, relpaths: frozenset[str] | None) -> IndexSummary:
                    indexer = Indexer(store, handle, options, progress=progress or NoProgress(), stop=stop)
                    return indexer.run([root]) if relpaths is None else indexer.update(root, relpaths)

                watcher = Watcher(
                    roots, apply, settings or WatchSettings(), report=report, hidden=options.hidden,
                    ignored=index_files(self.path), publish_to=state_path(self.path), on_idle=handle.close,
                )
                watcher.run(stop)
        finally:
            handle.close()

    def _indexing_model(
        self,
        model: str | None,
        existing: IndexSettings | None,
        *,
        rebuild: bool = False,
        on_default: Callable[[ModelChoice], None] | None = None,
        on_missing: Callable[[ModelNotFound], bool] | None = None,
    ) -> ModelHandle:
        """The model to index with: with ``embed_url`` the server's (the index's own by name,
        unless rebuilding; ``model`` then only lends its tokenizer), else ``model``, the
        index's own, or this machine's default."""
        runtime = _runtime(self.runtime)
        if self.embed_url:
            return remote_index_handle(self.embed_url, None if rebuild else existing, model, runtime)
        from edge_embed.download import default_model_choice
        from edge_embed.runtime.loader import prepare_model

        spec = model or (existing.model_label if existing else None)
        if spec is None:
            choice = default_model_choice(runtime)
            if choice is not None:  # None: EDGE_EMBED_MODEL decides
                spec = choice.name
                if on_default is not None:
                    on_default(choice)
        try:
            return prepare_model(spec, runtime)
        except ModelNotFound as missing:
            if on_missing is None or not on_missing(missing):
                raise
            return prepare_model(spec, runtime)

    # ------------------------------------------------------------------ maintenance
    def remove_folder(self, folder: str | os.PathLike[str], *, on_migration: MigrationProgress | None = None) -> str:
        """Forget an indexed folder (as given to ``index``) and all its chunks; its absolute path."""
        absolute = str(Path(folder).expanduser().resolve())
        with self.store() as store, store.writer_lock(on_migration=on_migration):
            if not store.files.remove_root(absolute):
                known = ", ".join(store.files.root_paths()) or "none"
                raise EdgeEmbedError(f"{absolute} is not an indexed folder (indexed: {known})")
        return absolute

    def compact(self, *, on_migration: MigrationProgress | None = None) -> CompactResult:
        """Give back the space edits wasted (``store.maintenance.compact``): the sizes before and after."""
        with self.store() as store, store.writer_lock(on_migration=on_migration):
            return store.maintenance.compact()

    def set_instruction(self, instruction: str | None, *, on_migration: MigrationProgress | None = None) -> None:
        """The index's default query task (None: the model's own)."""
        with self.store() as store, store.writer_lock(on_migration=on_migration):
            store.meta.set_instruction(instruction)

    def evaluate(
        self,
        queries: Sequence[EvalQuery],
        modes: Sequence[str],
        k: int,
        *,
        instruct: str | None = None,
        rerank: bool = False,
        reranker: str | None = None,
        rerank_top: int | None = None,
    ) -> EvalReport:
        """Score ``modes`` on queries with known answers (edge_embed.evaluate); a keyword-only
        run loads no model, and the model loads once for every query of the others."""
        from edge_embed.evaluate import evaluate

        with self.store() as store:
            needs_model = any(mode != "keyword" for mode in modes)
            embed_query = self.query_embedder(store, instruct) if needs_model else None
            step = self.rerank_step(True, reranker, rerank_top) if rerank else None
            return evaluate(store, queries, modes, k, embed_query=embed_query, rerank=step)

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Lines ``start_line``..``end_line`` of an indexed file (MCP ``get``; edge_embed.reader)."""
        from edge_embed.reader import read_indexed

        return read_indexed(self, path, start_line, end_line)

    # ------------------------------------------------------------------ search
    def search_outcome(
        self,
        text: str,
        options: SearchOptions | None = None,
        *,
        instruct: str | None = None,
        embed_query: EmbedQuery | None = None,
        rerank: bool | None = None,
        rerank_top: int | None = None,
        reranker: str | None = None,
    ) -> SearchOutcome:
        """Hits for ``text``, best first (``options``: mode, k, --in, --glob, ...), with the
        rerank reason and the index's age read on the same open store.

        Vector and hybrid searches embed the query with the index's own model, loaded on
        the first such search and kept for the next ones (``close()`` frees it), unless
        ``embed_query`` is given (the server passes its shared engine).
        ``rerank``: True/False, or None = on when the reranker fits whole on the GPU and the
        search loads a model anyway (not keyword mode; see ``rerank_decision``); the first ``rerank_top`` candidates are rescored by
        ``reranker`` (a catalog name or GGUF path; None: qwen3-reranker-0.6b).
        """
        from edge_embed.results import SearchOutcome
        from edge_embed.search import SearchOptions, search

        options = options or SearchOptions()
        with self.reading() as store:
            self._note_upgrade(store)
            if options.uses_vectors and embed_query is None:
                embed_query = self.query_embedder(store, instruct)
            step = self.rerank_step(rerank, reranker, rerank_top, uses_model=options.uses_vectors)
            hits = search(store, text, options, embed_query=embed_query, rerank=step)
            age = age_s(store.meta.last_write_at())
        reason = self.rerank_decision(rerank, reranker, uses_model=options.uses_vectors).reason
        return SearchOutcome(hits, reason, age)

    search = hits_only(search_outcome)  # search(text, options, *, instruct=..., rerank=...) -> list[Hit]

    def _note_upgrade(self, store: Store) -> None:
        """Warn, once, that an older edge-embed wrote the index: searches answer without
        what its pending migrations add, and only a writer runs them (``writer_lock``)."""
        if self._upgrade_noted:
            return
        note = store.upgrade_note()
        if note is not None:
            log.warning(note)
        self._upgrade_noted = True

    def rerank_step(
        self, requested: bool | None, reranker: str | None = None, top: int | None = None, *, uses_model: bool = True
    ) -> RerankStep | None:
        """The hook ``search`` calls after fusion (None: no reranking), as ``rerank_decision``
        decides; ``top`` candidates are rescored (None: the default)."""
        from edge_embed.rerank import DEFAULT_RERANK_TOP, RerankStep

        top = DEFAULT_RERANK_TOP if top is None else top
        if top < 1:
            raise EdgeEmbedError(
                f"asked to rerank the best {top} results", param="rerank_top", hint="{rerank_top} must be at least 1"
            )
        decision = self.rerank_decision(requested, reranker, uses_model=uses_model)
        return RerankStep(decision.handle.score, top) if decision.on and decision.handle else None

    def rerank_decision(
        self, requested: bool | None = None, reranker: str | None = None, *, uses_model: bool = True
    ) -> RerankDecision:
        """Whether searches rerank and why (edge_embed.rerank.decide_rerank), decided once
        per Index: the GPU is probed and the reranker's header read only the first time."""
        from edge_embed.rerank import decide_rerank

        key = (requested, reranker, uses_model)
        with self._rerank_lock:
            if key not in self._rerank_decisions:
                runtime = _runtime(self.runtime)
                self._rerank_decisions[key] = decide_rerank(
                    requested, runtime, reranker, uses_model=uses_model, prepare=self._shared_reranker
                )
            return self._rerank_decisions[key]

    def _shared_reranker(self, spec: str | None, runtime: RuntimeSettings) -> RerankerHandle:
        """The one handle of reranker ``spec``, whatever decision asks for it; planned in the
        GPU memory the index's own model leaves (it may not have loaded yet)."""
        from edge_embed.runtime.reranker import prepare_reranker

        if spec not in self._rerankers:
            reserved = replace(runtime, reserved_vram=runtime.reserved_vram + self._embedder_vram_to_come())
            self._rerankers[spec] = prepare_reranker(spec, reserved)
        return self._rerankers[spec]

    def text_reranker(self, reranker: str | None = None) -> TextReranker:
        """Reranker ``reranker`` (None: the default) on the same model this Index's searches
        rerank with: one copy in memory, freed by ``release_rerankers``."""
        with self._rerank_lock:
            return TextReranker(self._shared_reranker(reranker, _runtime(self.runtime)))

    def _embedder_vram_to_come(self) -> int:
        """GPU memory the index's model will take when it loads: its plan's estimate while it
        is not loaded (once loaded, the free memory the next plan sees already lacks it)."""
        try:
            handle = self.query_model().handle
        except EdgeEmbedError:  # no settings yet, a missing model: nothing will load
            return 0
        plan = getattr(handle, "plan", None)
        if handle.loaded or getattr(plan, "device", "cpu") == "cpu":
            return 0
        return plan.expected_vram

    def release_rerankers(self) -> None:
        """Free the rerankers' models (the server's keep-alive); the next rerank loads again."""
        for handle in list(self._rerankers.values()):
            handle.close()

    def query_embedder(self, store: Store, instruct: str | None) -> EmbedQuery:
        """``embed_query`` with the index's own model, at the index's dimension.

        The model loads on the first call, which search() makes only after checking the
        query and the --in paths: a typo is reported at once, not after seconds of loading.
        """
        settings = store.meta.settings()
        if settings is None:
            raise EdgeEmbedError(f"{store.path} has no indexed files yet", kind="not_found", hint="build it first: {index}")

        def embed_query(text: str) -> np.ndarray:
            model = self.query_model(settings)
            return model.embed([text], input_type="query", instruct=instruct, dims=settings.dims)[0]

        return embed_query

    def share_query_model(self, model: TextEmbedder) -> None:
        """Answer queries with ``model``, already this index's model (a server's engine and
        its index then hold one model, and GPU planning sees whether it is loaded)."""
        self._query_model = model

    def query_model(self, settings: IndexSettings | None = None) -> TextEmbedder:
        """The model the index was built with (kept once loaded); a missing one says what to do."""
        if self._query_model is None:
            settings = settings or self.settings()
            if self.embed_url:
                handle = remote_index_handle(self.embed_url, settings, None, None)
            else:
                handle = index_model_handle(settings, _runtime(self.runtime))
            self._query_model = TextEmbedder(handle)
        return self._query_model

    # ------------------------------------------------------------------ status
    def status(self) -> IndexStatus:
        """What `edge-embed status` and MCP ``status`` show, read on one open store."""
        from edge_embed.store import CompactPolicy
        from edge_embed.watch import read_watch_state

        with self.reading() as store:
            stats = store.maintenance.stats()
            roots = store.files.roots()
            space = store.maintenance.space_usage()
            age = age_s(store.meta.last_write_at())
        return IndexStatus(stats, roots, space, CompactPolicy(min_bytes=0).due(space), age, read_watch_state(self.path))

    def close(self) -> None:
        """Free the query model, the rerankers and every thread's read connection; the next
        search opens them again. Not while another thread searches or embeds with them:
        a closed connection or freed model under it fails or crashes the process."""
        if self._query_model is not None:
            self._query_model.close()
            self._query_model = None
        self.release_rerankers()
        self._rerankers.clear()
        self._rerank_decisions.clear()
        self._readers.close()


def escaped_sqlite_error(exc: Exception) -> EdgeEmbedError | None:
    """An apsw error that got past the store's translation, as the one-line error the store
    would have raised; None for any other exception."""
    import apsw

    from edge_embed.store.sqlite_errors import index_error

    if not isinstance(exc, apsw.Error):
        return None

    return index_error(exc, None)


def age_s(timestamp: float | None) -> float | None:
    """Seconds since an epoch ``timestamp``, to a tenth (None stays None)."""
    import time

    return None if timestamp is None else round(max(time.time() - timestamp, 0.0), 1)


def index_files(index_path: Path) -> list[Path]:
    """The files an index lives in (SQLite's journals, the lock, the watch status): a
    watcher of a folder that holds its own index must not take its writes for changes."""
    from edge_embed.store.lock import lock_path
    from edge_embed.watch import partial_path, state_path

    sqlite_files = [Path(f"{index_path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    watch_state = state_path(index_path)
    return [*sqlite_files, lock_path(index_path), watch_state, partial_path(watch_state)]


def root_dict(root) -> dict[str, object]:
    return {"path": root.path, "files": root.files, "chunks": root.chunks, "last_indexed_at": root.last_indexed_at}


def index_model_handle(settings: IndexSettings, runtime: RuntimeSettings) -> ModelHandle:
    """Exactly the model an index was built with (not loaded yet); a missing one says how to get it back."""
    from edge_embed.runtime.loader import index_model

    try:
        return index_model(settings, runtime)
    except ModelNotFound as exc:
        raise exc.add_hint("or search without the model ({mode} keyword)") from None
    except ModelFileError as exc:
        raise ModelFileError(
            f"this index was built with {settings.model_file}, which cannot be loaded ({exc})", kind="not_found",
            hint="put the file back, {rebuild} with another model ({model}), or search without the model ({mode} keyword)",
        ) from None


def remote_index_handle(url: str, existing: IndexSettings | None, tokenizer_model: str | None, runtime):
    """The remote model for an index: the one it was built with (by name), else the first
    the server lists; ``runtime`` given (indexing): a local GGUF for the tokenizer."""
    from edge_embed.catalog import find_entry
    from edge_embed.runtime.engine import DEFAULT_INSTRUCTION
    from edge_embed.runtime.loader import prepare_model
    from edge_embed.runtime.remote import RemoteEmbedder, RemoteHandle

    name = existing.model_label if existing else None
    entry = find_entry(name) if name else None
    instruction = (existing.instruction if existing else None) or (entry.query_instruction if entry else DEFAULT_INSTRUCTION)
    tokenizer = None
    if runtime is not None:
        tokenizer = prepare_model(tokenizer_model or (name if entry else None), runtime)
    return RemoteHandle(RemoteEmbedder(url, model=name, tokenizer=tokenizer, instruction=instruction))
