"""The incremental indexing pipeline: files -> text -> chunks -> embeddings -> store.

Incremental at three levels, so a re-run costs (almost) only what changed:

1. a file whose size and mtime match the index is not even opened;
2. a file whose bytes hash to the stored content hash only gets its mtime refreshed;
3. a changed file is re-chunked, and only chunk texts whose embed text (header + text)
   is not in the index anywhere are sent to the model; the rest reuse stored vectors.
   Chunks whose text the file already had keep their rows (ids, vector slots) in place.

When the edit history has wasted enough space (dead vector slots, free pages), the run
ends with a compaction (``IndexOptions.auto_compact``, see ``store.maintenance.compact``).

Crash safety comes from the store: each file's rows are written in one transaction, so an
interrupted run leaves every file either in its old or its new state, and the next run
picks up the rest. Memory stays flat: files are streamed and embedded in batches.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Iterator, Protocol, Sequence

import numpy as np

from edge_embed.catalog import CPU_DEFAULT_MODEL, chunking_for
from edge_embed.chunking import CHUNKER_VERSION, Chunk, chunk_document
from edge_embed.documents import RETRIED_SKIPS, Limits, Unextractable
from edge_embed.documents.sandbox import Sandbox
from edge_embed.errors import EdgeEmbedError
from edge_embed.estimate import SLOW_RUN_S, Estimate, estimated_tokens, format_duration, record_rate, recorded_rate
from edge_embed.extract import file_lines
from edge_embed.files import (
    DEFAULT_MAX_DOCUMENT_SIZE,
    DEFAULT_MAX_FILE_SIZE,
    IGNORE_FILE_NAMES,
    DocumentFile,
    FileContent,
    FoundFile,
    Skip,
    discover,
    read_file,
)
from edge_embed.runtime.plan import ModelShape, cpu_speedup
from edge_embed.store import CompactPolicy, CompactResult, IndexSettings, NewChunk, Store

if TYPE_CHECKING:
    from edge_embed.runtime.loader import ModelHandle

# Chunks embedded per flush: big enough to fill the engine's batches (a few decodes), small
# enough that files complete (and the ETA appears) soon, an interrupt loses little work and
# memory stays flat.
BATCH_CHUNKS = 32
# Skips that may pass by themselves: the file keeps its old chunks until a later run.
TRANSIENT_SKIPS = frozenset({"unreadable", "changed-while-reading"})
TIMEOUTS_REMEMBERED = 2  # once may be a busy machine; twice, the same bytes, is the file
# Skips that are expected and only counted; every other one is worth a warning.
SILENT_SKIPS = frozenset({"binary"})


@dataclass(frozen=True)
class IndexOptions:
    """How to walk and chunk; chunk_tokens/overlap/dims are fixed per index (see IndexSettings).

    The index's own settings (chunking, dims, query task) default to None, meaning "what
    the index already has" (a plain re-run, and a ``--rebuild`` that does not name them,
    keep them), else the defaults; ``resolve_options`` decides, in one place.
    """

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    hidden: bool = False
    follow_links: bool = False  # also symlinks that lead outside the folder (files.discover)
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE
    document_limits: Limits = Limits()
    chunk_tokens: int | None = None
    overlap: int | None = None
    dims: int | None = None
    instruction: str | None = None
    auto_compact: CompactPolicy | None = CompactPolicy()  # None: never compact at the end of a run


@dataclass(frozen=True)
class KeptFolder:
    """A folder that vanished or came up empty while the index holds files from it.

    Its files are kept, not deleted: an unplugged drive, an unmounted share or a link to
    either looks exactly like a deleted folder, and deleting needs the folder to be there.
    ``reason`` is "missing" or "empty" (a root), or "dangling-symlink" (a linked subfolder).
    """

    path: str
    reason: str
    files_kept: int


def resolve_options(options: IndexOptions, stored: IndexSettings | None, model: ModelHandle) -> IndexOptions:
    """Fill the settings the caller left None from the index's own ``stored`` ones, else defaults.

    The chunking defaults are the model family's (``catalog.chunking_for``): an index
    keeps its own chunking across model changes and rebuilds unless told otherwise. The
    dimension is kept only with the same model (``is_same_model``): another model's native
    width can differ, so a rebuild with a new model starts from its native width.
    """
    same_model = is_same_model(stored, model)

    def kept(value, field_name: str, default):
        if value is not None:
            return value
        return getattr(stored, field_name) if stored is not None else default

    dims = options.dims
    if dims is None and same_model:
        dims = stored.dims
    family = chunking_for(model.info.architecture)
    return replace(
        options,
        chunk_tokens=kept(options.chunk_tokens, "chunk_tokens", family.chunk_tokens),
        overlap=kept(options.overlap, "overlap", family.overlap),
        dims=model.check_dims(dims),
        instruction=kept(options.instruction, "instruction", None),
    )


def is_same_model(stored: IndexSettings | None, model: ModelHandle) -> bool:
    """The index's model: the same GGUF header hash; a server's model (--embed-url, no
    header to hash) by its name."""
    if stored is None:
        return False
    if stored.model_hash or model.info.header_hash:
        return stored.model_hash == model.info.header_hash
    return stored.model_label == model.label


@dataclass
class IndexSummary:
    """What a run did; printed by the CLI, as JSON with --json."""

    roots: list[str] = field(default_factory=list)
    files_seen: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: int = 0
    lossy: int = 0
    chunks_added: int = 0
    chunks_kept: int = 0  # chunks of changed files whose text stayed: rows kept in place
    chunks_removed: int = 0
    chunks_reused: int = 0
    texts_embedded: int = 0
    tokens_embedded: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    kept: list[KeptFolder] = field(default_factory=list)
    rebuilt: bool = False  # a --rebuild: interrupted, it left the old index as it was
    compacted: CompactResult | None = None  # the run ended with an automatic compaction
    estimate: Estimate | None = None  # what the run expected to embed, said before embedding

    def to_dict(self) -> dict:
        data = asdict(self)
        data["skipped"] = dict(self.skipped)
        data["compacted"] = self.compacted.to_dict() if self.compacted else None
        data["estimate"] = self.estimate.to_dict() if self.estimate else None
        return data


class Progress(Protocol):
    """Receives pipeline events; the CLI draws a progress line from them."""

    def root_started(self, root: Path, total_files: int, total_bytes: int) -> None: ...

    def file_done(self, relpath: str, size: int) -> None: ...

    def embedded(self, texts: int, tokens: int) -> None: ...

    def estimated(self, estimate: Estimate, slow_note: str | None) -> None: ...

    def warning(self, message: str) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """Ignores every event (library use); the CLI's displays override what they show."""

    def root_started(self, root: Path, total_files: int, total_bytes: int) -> None:
        pass

    def file_done(self, relpath: str, size: int) -> None:
        pass

    def embedded(self, texts: int, tokens: int) -> None:
        pass

    def estimated(self, estimate: Estimate, slow_note: str | None) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _PendingFile:
    """A changed file, chunked, waiting for its missing vectors."""

    root_id: int
    found: FoundFile
    content_hash: str
    chunks: list[Chunk]
    hashes: list[str]
    replaces: bool


def stat_changed(found: FoundFile, state) -> bool:
    """Whether a file must be read: new, or its size or mtime differ from the index's."""
    return state is None or state.size != found.size or state.mtime_ns != found.mtime_ns


def slow_run_note(device: str, parameters: int, estimate: Estimate) -> str | None:
    """On a CPU, a run estimated past SLOW_RUN_S names the CPU's catalog model, once, when
    it is at least twice as fast (parameters, as ``plan.cpu_speed_note`` counts them)."""
    seconds = estimate.seconds
    if seconds is None or seconds <= SLOW_RUN_S or device != "cpu":
        return None
    faster = cpu_speedup(parameters)
    if faster < 2:
        return None
    return (
        f"about {estimate.tokens:,} tokens to embed: roughly {format_duration(seconds)} on the CPU at "
        f"{estimate.tokens_per_s:,.0f} tokens/s ({estimate.basis}); {CPU_DEFAULT_MODEL} is ~{faster:.0f}x "
        f"faster: --model {CPU_DEFAULT_MODEL} (an existing index: with --rebuild)"
    )


def _under_any(relpath: str, prefixes: set[str]) -> bool:
    """Whether relpath is one of ``prefixes`` or inside one of them (POSIX relpaths).

    By set lookups of relpath's own folders, so thousands of prefixes (a watcher's batch)
    cost no more than a few.
    """
    return relpath in prefixes or any(relpath[:i] in prefixes for i, char in enumerate(relpath) if char == "/")


def _widen_for_ignore_files(relpaths: Collection[str]) -> frozenset[str] | None:
    """The paths to re-check: a changed ignore file stands for its whole folder; None = all."""
    scope = set()
    for relpath in relpaths:
        parent, _, name = relpath.rpartition("/")
        scope.add(parent if name in IGNORE_FILE_NAMES else relpath)
    return None if "" in scope else frozenset(scope)


def unavailable_state(root: Path) -> str | None:
    """None for a folder with something in it; else "empty", "missing" or "not-a-folder".

    An unplugged drive or an unmounted share looks exactly like an empty or missing
    folder, so callers keep such a folder's indexed files instead of deleting them.
    """
    if root.is_dir():
        try:
            with os.scandir(root) as entries:
                return "empty" if next(entries, None) is None else None
        except OSError:  # unreadable: the walk reports it
            return None
    return "not-a-folder" if root.exists() else "missing"


def _in_file_lines(chunk: Chunk, source_lines: Sequence[tuple[int, int]] | None) -> Chunk:
    """A chunk located by the file's own lines (for extracted HTML text too), for `path:line`."""
    start_line, end_line = file_lines(source_lines, chunk.start_line, chunk.end_line)
    return replace(chunk, start_line=start_line, end_line=end_line)


def text_hash(text: str) -> str:
    """The dedup key of a chunk: sha256 of exactly what the model embeds."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def index_settings(model: ModelHandle, options: IndexOptions) -> IndexSettings:
    """What an index records and later refuses to mix: model, dimension, chunking.

    ``options`` must be resolved (``resolve_options``). Raises EdgeEmbedError for options
    the model cannot honour, before any file is indexed.
    """
    if options.chunk_tokens > model.max_tokens:
        raise EdgeEmbedError(
            f"--chunk-tokens {options.chunk_tokens} is larger than the model context "
            f"in use ({model.max_tokens}); raise --ctx or lower --chunk-tokens"
        )
    return IndexSettings(
        model_label=model.label,
        model_file=str(model.info.path),
        model_size=model.info.file_size,
        model_hash=model.info.header_hash,
        dims=model.check_dims(options.dims),
        chunk_tokens=options.chunk_tokens,
        overlap=options.overlap,
        instruction=options.instruction,
        chunker_version=CHUNKER_VERSION,
    )


@dataclass
class Indexer:
    """Runs one `edge-embed index` over some roots into one store.

    The model is loaded only when a file needs chunking (its tokenizer) or embedding, and
    the extraction worker only when a PDF or Word file changed. A ``sandbox`` passed in
    is the caller's to close; one the indexer starts is closed at the end of ``run``.
    """

    store: Store
    model: ModelHandle
    options: IndexOptions
    progress: Progress = field(default_factory=NoProgress)
    stop: threading.Event = field(default_factory=threading.Event)
    summary: IndexSummary = field(default_factory=IndexSummary)
    sandbox: Sandbox | None = None

    def __post_init__(self) -> None:
        self.options = resolve_options(self.options, self.store.meta.settings(), self.model)
        self.settings = index_settings(self.model, self.options)
        self._pending: list[_PendingFile] = []
        self._pending_chunks = 0
        self._embed_s = 0.0
        self._said_slow = False

    def run(self, roots: Sequence[Path]) -> IndexSummary:
        """Bring every file under ``roots`` up to date (new roots are added to the index)."""
        started = time.perf_counter()
        self._record_settings()
        roots = self._available_roots(roots)
        self._refuse_overlapping_roots(roots)
        return self._walk_roots([(root, None) for root in roots], started)

    def update(self, root: Path, relpaths: Collection[str]) -> IndexSummary:
        """Bring only ``relpaths`` (files or folders under the indexed ``root``) up to date.

        What a watcher calls with the paths its events named: the same rules as ``run``
        (ignore files, include/exclude, dedup, one transaction per file), over a walk of
        just those paths; an indexed file under one of them that the walk no longer yields
        is forgotten. A root that is missing or empty keeps its files (``run``'s rule).
        A changed ignore file re-checks its whole folder.
        """
        started = time.perf_counter()
        self._record_settings()
        scope = _widen_for_ignore_files(relpaths)
        return self._walk_roots([(root, scope) for root in self._available_roots([root])], started)

    def _walk_roots(self, roots: list[tuple[Path, frozenset[str] | None]], started: float) -> IndexSummary:
        chunks_before = self.store.files.chunk_count()
        owns_sandbox = self.sandbox is None
        try:
            for root, scope in roots:
                if self.stop.is_set():
                    break
                self._index_root(root, scope)
        finally:
            if owns_sandbox and self.sandbox is not None:
                self.sandbox.close()
                self.sandbox = None
        self.store.maintenance.checkpoint()
        record_rate(self.model.rate_key(), self.summary.tokens_embedded, self._embed_s)
        self.summary.chunks_removed = chunks_before + self.summary.chunks_added - self.store.files.chunk_count()
        self.summary.interrupted = self.stop.is_set()
        self._compact_if_due()
        self.summary.elapsed_s = round(time.perf_counter() - started, 3)
        return self.summary

    def _available_roots(self, roots: Sequence[Path]) -> list[Path]:
        """The roots to walk, resolved; all checked before any is walked.

        A root that is missing (a dangling link too) or empty while the index holds files
        from it is set aside and reported, its files kept. Any other missing root, or a
        file, is an error.
        """
        available = []
        for given in roots:
            root = given.resolve()
            state = unavailable_state(root)
            if state is None:
                available.append(root)
                continue
            files = self._indexed_file_count(root)
            if files:
                self._keep(KeptFolder(str(root), state, files), f"`edge-embed remove {root}` drops them")
            elif state == "empty":  # nothing indexed from it: an empty folder is just empty
                available.append(root)
            else:
                raise EdgeEmbedError(f"{'no such folder' if state == 'missing' else 'not a folder'}: {given}")
        return available

    def _indexed_file_count(self, root: Path) -> int:
        if str(root) not in self.store.files.root_paths():
            return 0
        return len(self.store.files.file_states(self.store.files.add_root(str(root))))

    def _keep(self, kept: KeptFolder, how_to_drop: str) -> None:
        self.summary.kept.append(kept)
        state = {"missing": "does not exist", "empty": "is empty", "dangling-symlink": "is a dangling symlink"}
        self.progress.warning(
            f"{kept.path} {state[kept.reason]} but the index holds {kept.files_kept} files from it (an "
            f"unplugged drive or an unmounted share?): they are kept; {how_to_drop}"
        )

    def _record_settings(self) -> None:
        """A new index records its settings; an existing one must match them.

        What may change without re-embedding is updated: the query task (``--instruct``)
        and where the model file lives (the same header hash at another path: the file was
        moved, and the index must follow it or queries cannot load the model).
        """
        stored = self.store.meta.settings()
        if stored is None:
            self.store.meta.init_settings(self.settings)
            return
        self.store.meta.check_settings(self.settings)
        if self.settings.instruction != stored.instruction:
            self.store.meta.set_instruction(self.settings.instruction)
        new = self.settings
        if (new.model_label, new.model_file, new.model_size) != (stored.model_label, stored.model_file, stored.model_size):
            self.store.meta.set_model_file(new.model_label, new.model_file, new.model_size)
    def _compact_if_due(self) -> None:
        """Give back the space the edit history wasted, once it is worth a rewrite.

        Not after an interrupted run: the user asked it to stop.
        """
        policy = self.options.auto_compact
        if policy is None or self.summary.interrupted or not policy.due(self.store.maintenance.space_usage()):
            return
        self.summary.compacted = self.store.maintenance.compact()

    def _refuse_overlapping_roots(self, roots: list[Path]) -> None:
        """A folder inside another indexed folder would store its files twice."""
        known = [Path(path) for path in self.store.files.root_paths()]
        for i, root in enumerate(roots):
            others = [other for other in known + roots[:i] + roots[i + 1:] if other != root]
            for other in others:
                if root.is_relative_to(other) or other.is_relative_to(root):
                    inner, outer = (root, other) if root.is_relative_to(other) else (other, root)
                    raise EdgeEmbedError(
                        f"{inner} is inside {outer}: its files would be indexed twice; index only "
                        f"{outer} (or `edge-embed remove` one of them first)"
                    )

    # ---------------------------------------------------------------- per root
    def _index_root(self, root: Path, scope: frozenset[str] | None = None) -> None:
        """Walk the root (only ``scope`` under it, when given), index, forget what vanished."""
        self.summary.roots.append(str(root))
        root_id = self.store.files.add_root(str(root))
        known = self.store.files.file_states(root_id)
        if scope is not None:
            known = {relpath: state for relpath, state in known.items() if _under_any(relpath, scope)}
        found, keep, dangling = self._discover(root, scope)
        keep |= self._keep_under_dangling_links(root, known, dangling)
        self.progress.root_started(root, len(found), sum(item.size for item in found))
        self._estimate([item for item in found if stat_changed(item, known.get(item.relpath))])
        for item in found:
            if self.stop.is_set():
                break
            self._index_file(root_id, item, known.get(item.relpath))
        self._flush()
        if not self.stop.is_set():
            seen = {item.relpath for item in found}
            self._remove_missing(root, known, seen, keep)
            if scope is None:
                self.store.files.mark_indexed(root_id)

    def _discover(self, root: Path, scope: frozenset[str] | None = None) -> tuple[list[FoundFile], set[str], list[str]]:
        """Walk first (cheap stats only) so the progress display knows the total.

        Also returns the relpaths (files or folders) to keep in the index although the walk
        did not yield them: those skipped for a reason that may pass (unreadable just now),
        and the relpaths of the dangling symlinks met.
        """
        found: list[FoundFile] = []
        keep: set[str] = set()
        dangling: list[str] = []
        walk = discover(
            root,
            include=self.options.include,
            exclude=self.options.exclude,
            hidden=self.options.hidden,
            follow_links=self.options.follow_links,
            max_file_size=self.options.max_file_size,
            max_document_size=self.options.max_document_size,
            within=scope,
        )
        try:
            for item in walk:
                if self.stop.is_set():
                    break
                if isinstance(item, Skip):
                    self._record_skip(item)
                    if item.reason in TRANSIENT_SKIPS:
                        keep.add(item.relpath)
                    elif item.reason == "broken-symlink":
                        dangling.append(item.relpath)
                else:
                    found.append(item)
        except OSError as exc:  # the root itself (per-file problems are Skips)
            raise EdgeEmbedError(f"cannot read the folder {root}: {exc.strerror or exc}") from None
        self.summary.files_seen += len(found)
        return found, keep, dangling

    def _keep_under_dangling_links(self, root: Path, known: dict, dangling: list[str]) -> set[str]:
        """Dangling links that were folders with indexed files (a link to an unplugged drive)."""
        kept = set()
        for link in dangling:
            files = sum(1 for relpath in known if relpath.startswith(link + "/"))
            if files:
                kept.add(link)
                self._keep(KeptFolder(str(root / link), "dangling-symlink", files), "delete the link to drop them")
        return kept

    def _estimate(self, changed: list[FoundFile]) -> None:
        """Say what this root's changed files will cost to embed (at most: dedup and
        unchanged contents make it less), adding to the run's estimate."""
        if not changed:
            return
        tokens = sum(estimated_tokens(item.relpath, item.size) for item in changed)
        previous = self.summary.estimate
        rate = recorded_rate(self.model.rate_key())
        basis = "measured" if rate else "planned"
        estimate = Estimate(
            files=len(changed) + (previous.files if previous else 0),
            tokens=tokens + (previous.tokens if previous else 0),
            tokens_per_s=rate or self.model.planned_tokens_per_s(),
            basis=basis,
        )
        self.summary.estimate = estimate
        note = None if self._said_slow else self._slow_run_note(estimate)
        self._said_slow = self._said_slow or note is not None
        self.progress.estimated(estimate, note)

    def _slow_run_note(self, estimate: Estimate) -> str | None:
        device = getattr(self.model.plan, "device", "remote")  # a server's model has no local plan
        if device != "cpu":
            return None
        return slow_run_note(device, ModelShape.from_model_info(self.model.info).parameters, estimate)

    def _index_file(self, root_id: int, found: FoundFile, state) -> None:
        if not stat_changed(found, state):
            self.summary.unchanged += 1
            self.progress.file_done(found.relpath, found.size)
            return
        content = read_file(found)
        if isinstance(content, Skip):
            self._record_skip(content)
            if state is not None and content.reason not in TRANSIENT_SKIPS:
                self._delete(state)
            return
        if state is not None and state.content_hash == content.content_hash:
            self.store.files.touch_file(state.id, found.size, found.mtime_ns)
            self.summary.unchanged += 1
            self.progress.file_done(found.relpath, found.size)
            return
        if isinstance(content, DocumentFile):
            content = self._extract(root_id, found, content)
            if content is None:
                return
        if content.lossy:
            self.summary.lossy += 1
            self.progress.warning(f"{found.relpath}: not valid UTF-8 or UTF-16, indexed with replacement characters")
        chunks = self._chunk(found, content)
        if chunks is None:
            return
        hashes = [text_hash(chunk.embed_text) for chunk in chunks]
        self._pending.append(_PendingFile(root_id, found, content.content_hash, chunks, hashes, state is not None))
        self._pending_chunks += len(chunks)
        if self._pending_chunks >= BATCH_CHUNKS:
            self._flush()

    def _extract(self, root_id: int, found: FoundFile, document: DocumentFile) -> FileContent | None:
        """A PDF or Word file's text from the sandboxed worker; None when it has none.

        A file without text is stored without chunks (its old ones go): the same bytes
        would fail the same way, so an unchanged re-run does not parse it again. A timeout
        or a worker crash (``RETRIED_SKIPS``) may pass: the file keeps its old chunks and
        stat, so the next run tries again; but bytes that timed out ``TIMEOUTS_REMEMBERED``
        times are remembered like a damaged file, so one hostile document cannot add its
        timeout to every later run.
        """
        if self.sandbox is None:
            self.sandbox = Sandbox(self.options.document_limits)
        try:
            extracted = self.sandbox.extract(document.document_format, document.data)
        except Unextractable as exc:
            remembered = exc.reason not in RETRIED_SKIPS or self._timed_out_again(exc, document.content_hash)
            detail = exc.detail + ("; not tried again until the file changes" if exc.reason in RETRIED_SKIPS and remembered else "")
            self._record_skip(Skip(found.relpath, exc.reason, detail))
            if remembered:
                self.store.files.write_file(
                    root_id, found.relpath, str(found.path), found.size, found.mtime_ns, document.content_hash, []
                )
            return None
        return FileContent(
            extracted.text, document.content_hash, document.document_format, False, "document", layout=extracted.layout
        )

    def _timed_out_again(self, exc: Unextractable, content_hash: str) -> bool:
        """Whether these bytes have now timed out ``TIMEOUTS_REMEMBERED`` times (then forgotten
        as a count: the file row remembers them from here)."""
        if exc.reason != "timed-out" or self.store.meta.count_timeout(content_hash) < TIMEOUTS_REMEMBERED:
            return False
        self.store.meta.forget_timeouts(content_hash)
        return True

    def _chunk(self, found: FoundFile, content: FileContent) -> list[Chunk] | None:
        """The file's chunks, in the model's tokens; None (counted as failed) if impossible."""
        embedder = self.model.load()
        try:
            chunks = chunk_document(
                content.text,
                name=Path(found.relpath).name,
                kind=content.kind,
                count_tokens=embedder.count_tokens,
                # the chunker reserves one token (the EOS); models that add more get a smaller budget
                max_tokens=self.options.chunk_tokens - embedder.special_token_count + 1,
                overlap=self.options.overlap,
                layout=content.layout,
            )
        except ValueError as exc:  # e.g. a budget too small for the header and one character
            self.summary.failed += 1
            self.progress.warning(f"{found.relpath}: could not be chunked ({exc})")
            return None
        return [_in_file_lines(chunk, content.source_lines) for chunk in chunks]

    # ---------------------------------------------------------------- batches
    def _flush(self) -> None:
        """Embed what the pending files miss and write each file once its vectors exist.

        Embedding goes one decode's worth of texts at a time, in file order, writing the
        files that became complete after each: a Ctrl-C waits for one decode, not for the
        whole batch, and every finished file is kept. Files not written are simply done
        again by the next run.
        """
        if not self._pending:
            return
        wanted: dict[str, str] = {}
        for item in self._pending:
            for chunk, digest in zip(item.chunks, item.hashes):
                wanted.setdefault(digest, chunk.embed_text)
        vectors = self.store.vectors.vectors_for_hashes(list(wanted))
        missing = [digest for digest in wanted if digest not in vectors]
        self.summary.chunks_reused += sum(len(item.hashes) for item in self._pending) - len(missing)
        waiting = list(self._pending)
        waiting = self._write_complete(waiting, vectors)
        for group in self._decode_groups(missing, wanted):
            if self.stop.is_set():
                break
            vectors.update(zip(group, self._embed([wanted[digest] for digest in group])))
            waiting = self._write_complete(waiting, vectors)
        self._pending = []
        self._pending_chunks = 0

    def _decode_groups(self, digests: list[str], texts: dict[str, str]) -> Iterator[list[str]]:
        """Consecutive runs of texts that fill about one decode (the plan's packing budget)."""
        embedder = self.model.load()
        budget = self.model.plan.n_batch
        group: list[str] = []
        used = 0
        for digest in digests:
            tokens = embedder.count_tokens(texts[digest]) + embedder.special_token_count
            if group and used + tokens > budget:
                yield group
                group, used = [], 0
            group.append(digest)
            used += tokens
        if group:
            yield group

    def _embed(self, texts: list[str]) -> np.ndarray:
        embedder = self.model.load()
        before = embedder.stats.tokens
        started = time.perf_counter()
        vectors = embedder.embed_documents(texts, dims=self.settings.dims, on_decode=self.progress.embedded)
        self._embed_s += time.perf_counter() - started
        self.summary.texts_embedded += len(texts)
        self.summary.tokens_embedded += embedder.stats.tokens - before
        return vectors

    def _write_complete(self, waiting: list[_PendingFile], vectors: dict[str, np.ndarray]) -> list[_PendingFile]:
        """Write the files whose every chunk has a vector; return the others, in order."""
        still_waiting = []
        for pending in waiting:
            if all(digest in vectors for digest in pending.hashes):
                self._write(pending, vectors)
            else:
                still_waiting.append(pending)
        return still_waiting

    def _write(self, pending: _PendingFile, vectors: dict[str, np.ndarray]) -> None:
        found = pending.found
        chunks = [
            NewChunk(
                seq=seq,
                start_line=chunk.start_line,
                end_line=chunk.end_line,
                heading=chunk.heading,
                text=chunk.text,
                text_hash=digest,
                vector=vectors[digest],
                page_start=chunk.page_start,
                page_end=chunk.page_end,
            )
            for seq, (chunk, digest) in enumerate(zip(pending.chunks, pending.hashes))
        ]
        changes = self.store.files.write_file(
            pending.root_id, found.relpath, str(found.path), found.size, found.mtime_ns, pending.content_hash, chunks
        )
        self.summary.indexed += 1
        self.summary.chunks_added += changes.inserted
        self.summary.chunks_kept += changes.kept
        self.progress.file_done(found.relpath, found.size)

    # ---------------------------------------------------------------- removal
    def _remove_missing(self, root: Path, known: dict, seen: set[str], keep: set[str]) -> None:
        """Forget indexed files the walk no longer yields.

        Not those under a folder or file skipped for a passing reason (``keep``), and, when
        --include/--exclude narrow this run, not those still on disk: a narrowed run adds
        or refreshes files, it never deletes what it was told not to look at.
        """
        narrowed = bool(self.options.include or self.options.exclude)
        for relpath, state in known.items():
            if relpath in seen or _under_any(relpath, keep):
                continue
            if narrowed and (root / relpath).exists():
                continue
            self._delete(state)

    def _delete(self, state) -> None:
        self.store.files.delete_file(state.id)
        self.summary.removed += 1

    def _record_skip(self, skip: Skip) -> None:
        self.summary.skipped[skip.reason] += 1
        if skip.reason not in SILENT_SKIPS:
            self.progress.warning(f"skipped {skip.relpath}: {skip.reason}" + (f" ({skip.detail})" if skip.detail else ""))
