"""The orchestrating ``Indexer``: plan each root, prepare its changed files, batch them.

Per run: the settings are recorded (or checked), the roots planned (``planner.plan_roots``:
a missing or empty root with indexed files is kept, not walked). Per root: the walk
(``walk.walk_root``), the file plan (``planner.plan_files``), then each changed file
through the preparer into the batcher, and the plan's removals once the files are done.
Each step returns a ``Tally``; the run's ``IndexSummary`` is their sum.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Sequence

from edge_embed.documents.sandbox import Sandbox
from edge_embed.estimate import Estimate, record_rate, recorded_rate
from edge_embed.files import FoundFile
from edge_embed.indexer.batcher import EmbedBatcher
from edge_embed.indexer.options import IndexOptions, index_settings, resolve_options
from edge_embed.indexer.planner import (
    FilePlan,
    KeptFolder,
    RootCheck,
    drops_old_chunks,
    in_scope,
    plan_files,
    plan_roots,
    refuse_overlapping_roots,
    watched_scope,
)
from edge_embed.indexer.preparer import FilePreparer, Outcome, Prepared, SameContent, Unchunkable, Unextracted, Unreadable
from edge_embed.indexer.progress import grown_estimate, slow_run_note, warn_kept, warn_skip
from edge_embed.indexer.storage import IndexStorage
from edge_embed.indexer.summary import IndexSummary, Tally
from edge_embed.indexer.walk import unavailable_state, walk_root
from edge_embed.progress import NoProgress, Progress
from edge_embed.runtime.plan import ModelShape

if TYPE_CHECKING:
    from edge_embed.runtime.loader import ModelHandle
    from edge_embed.store import FileState, Store


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
    sandbox: Sandbox | None = None

    def __post_init__(self) -> None:
        self.storage = IndexStorage(self.store)
        self.options = resolve_options(self.options, self.storage.settings(), self.model)
        self.settings = index_settings(self.model, self.options)

    def run(self, roots: Sequence[Path]) -> IndexSummary:
        """Bring every file under ``roots`` up to date (new roots are added to the index)."""
        started = time.perf_counter()
        self.storage.record_settings(self.settings)
        plan = plan_roots([self._check_root(root) for root in roots])
        kept = self._kept(plan.kept)
        refuse_overlapping_roots(plan.walk, self.storage.indexed_roots())
        return self._index_roots([(root, None) for root in plan.walk], kept, started)

    def update(self, root: Path, relpaths: Collection[str]) -> IndexSummary:
        """Bring only ``relpaths`` (files or folders under the indexed ``root``) up to date.

        What a watcher calls with the paths its events named: the same rules as ``run``
        (ignore files, include/exclude, dedup, one transaction per file), over a walk of
        just those paths; an indexed file under one of them that the walk no longer yields
        is forgotten. A root that is missing or empty keeps its files (``run``'s rule).
        A changed ignore file re-checks its whole folder.
        """
        started = time.perf_counter()
        self.storage.record_settings(self.settings)
        plan = plan_roots([self._check_root(root)])
        scope = watched_scope(relpaths)
        return self._index_roots([(walked, scope) for walked in plan.walk], self._kept(plan.kept), started)

    def _check_root(self, given: Path) -> RootCheck:
        """What the disk says of a named root, and (only if it looks gone) what the index holds there."""
        path = given.resolve()
        state = unavailable_state(path)
        return RootCheck(given, path, state, self.storage.indexed_file_count(path) if state else 0)

    def _kept(self, kept: Sequence[KeptFolder]) -> Tally:
        """Warn of the roots set aside (their files kept), and count them."""
        for folder in kept:
            warn_kept(self.progress, folder)
        return Tally(kept=tuple(kept))

    # ---------------------------------------------------------------- the run
    def _index_roots(self, roots: list[tuple[Path, frozenset[str] | None]], tally: Tally, started: float) -> IndexSummary:
        """Index each root in turn, then the run's upkeep; the summary of all they returned."""
        chunks_before = self.storage.chunk_count()
        run = _Run.of(self)
        try:
            for root, scope in roots:
                if self.stop.is_set():
                    break
                tally += run.index_root(root, scope)
        finally:
            run.preparer.close()
        self.storage.checkpoint()
        record_rate(self.model.rate_key(), tally.tokens_embedded, tally.embed_s)
        interrupted = self.stop.is_set()
        return IndexSummary.of(
            tally,
            chunks_removed=chunks_before + tally.chunks_added - self.storage.chunk_count(),
            interrupted=interrupted,
            # not after an interrupted run: the user asked it to stop
            compacted=None if interrupted else self.storage.compact_if_due(self.options.auto_compact),
            estimate=run.estimate,
            elapsed_s=round(time.perf_counter() - started, 3),
        )


@dataclass
class _Run:
    """One run over its roots: the stages it feeds, and the estimate said so far."""

    options: IndexOptions
    model: ModelHandle
    storage: IndexStorage
    progress: Progress
    stop: threading.Event
    preparer: FilePreparer
    batcher: EmbedBatcher
    estimate: Estimate | None = None
    said_slow: bool = False  # the slow-run note is said once a run

    @classmethod
    def of(cls, indexer: Indexer) -> _Run:
        return cls(
            options=indexer.options,
            model=indexer.model,
            storage=indexer.storage,
            progress=indexer.progress,
            stop=indexer.stop,
            preparer=FilePreparer(indexer.model, indexer.options, indexer.storage, indexer.sandbox),
            batcher=EmbedBatcher(indexer.model, indexer.settings.dims, indexer.storage, indexer.progress, indexer.stop),
        )

    def index_root(self, root: Path, scope: frozenset[str] | None) -> Tally:
        """Walk the root (only ``scope`` under it, when given), index, forget what vanished."""
        indexed = self.storage.open_root(root)
        walk = walk_root(root, self.options, scope, self.stop)
        plan = plan_files(
            root, walk, in_scope(indexed.files, scope),
            narrowed=self.options.narrowed, on_disk=lambda relpath: (root / relpath).exists(),
        )
        tally = self._report_plan(root, plan)
        tally += self._index_files(indexed.id, plan)
        if not self.stop.is_set():
            tally += self._remove(plan)
            if scope is None:
                self.storage.mark_indexed(indexed.id)
        return tally

    def _report_plan(self, root: Path, plan: FilePlan) -> Tally:
        """Say what the walk met (skips, kept links, totals, the estimate); count it."""
        for skip in plan.skips:
            warn_skip(self.progress, skip)
        for folder in plan.kept:
            warn_kept(self.progress, folder)
        self.progress.root_started(root, len(plan.tasks), sum(task.found.size for task in plan.tasks))
        self._say_estimate(plan.changed)
        skipped = Counter(skip.reason for skip in plan.skips)
        return Tally(roots=(str(root),), files_seen=len(plan.tasks), skipped=skipped, kept=plan.kept)

    def _index_files(self, root_id: int, plan: FilePlan) -> Tally:
        """Every file of the plan, in walk order: an unchanged stat is only counted."""
        tally = Tally()
        unchanged = 0
        for task in plan.tasks:
            if self.stop.is_set():
                break
            if task.changed:
                tally += self._settle(self.preparer.prepare(root_id, task), task.state)
            else:
                unchanged += 1
                self.progress.file_done(task.found.relpath, task.found.size)
        return tally + self.batcher.flush() + Tally(unchanged=unchanged)

    def _settle(self, outcome: Outcome, state: FileState | None) -> Tally:
        """Act on what the preparer made of a changed file."""
        if isinstance(outcome, Prepared):
            return self._lossy(outcome.record.relpath, outcome.lossy) + self.batcher.add(outcome)
        if isinstance(outcome, SameContent):
            self.storage.touch(outcome.state, outcome.found)
            self.progress.file_done(outcome.found.relpath, outcome.found.size)
            return Tally(unchanged=1)
        if isinstance(outcome, Unreadable):
            warn_skip(self.progress, outcome.skip)
            removed = drops_old_chunks(outcome.skip, state)
            if removed:
                self.storage.delete(state)
            return Tally(skipped=Counter([outcome.skip.reason]), removed=int(removed))
        if isinstance(outcome, Unextracted):
            warn_skip(self.progress, outcome.skip)
            if outcome.remembered:
                self.storage.write(outcome.record, [])
            return Tally(skipped=Counter([outcome.skip.reason]))
        assert isinstance(outcome, Unchunkable)
        tally = self._lossy(outcome.relpath, outcome.lossy)
        self.progress.warning(f"{outcome.relpath}: could not be chunked ({outcome.error})")
        return tally + Tally(failed=1)

    def _lossy(self, relpath: str, lossy: bool) -> Tally:
        """Warn of a file decoded with replacement characters, and count it."""
        if not lossy:
            return Tally()
        self.progress.warning(f"{relpath}: not valid UTF-8 or UTF-16, indexed with replacement characters")
        return Tally(lossy=1)

    def _remove(self, plan: FilePlan) -> Tally:
        """Forget the indexed files the plan found gone (after a complete, uninterrupted root)."""
        for state in plan.remove:
            self.storage.delete(state)
        return Tally(removed=len(plan.remove))

    def _say_estimate(self, changed: list[FoundFile]) -> None:
        """Say what this root's changed files will cost to embed, added to the run's estimate."""
        if not changed:
            return
        model = self.model
        measured = recorded_rate(model.rate_key())
        rate, basis = (measured, "measured") if measured else (model.planned_tokens_per_s(), "planned")
        self.estimate = grown_estimate(self.estimate, changed, rate, basis)
        note = None if self.said_slow else self._slow_run_note(self.estimate)
        self.said_slow = self.said_slow or note is not None
        self.progress.estimated(self.estimate, note)

    def _slow_run_note(self, estimate: Estimate) -> str | None:
        model = self.model
        device = getattr(model.plan, "device", "remote")  # a server's model has no local plan
        if device != "cpu":
            return None
        return slow_run_note(device, ModelShape.from_model_info(model.info).parameters, estimate)
