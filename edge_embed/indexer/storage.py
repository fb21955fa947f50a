"""The indexer's every call to the ``Store``, in one place.

The planner and the preparer never see the store; the pipeline reads the index's state
and settings through here, the batcher writes through here. One module to read when the
store's interface changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from edge_embed.files import FoundFile
from edge_embed.store import ChunkChanges, FileRecord, FileState, IndexSettings, NewChunk

if TYPE_CHECKING:
    import numpy as np

    from edge_embed.store import CompactPolicy, CompactResult, Store


def file_record(root_id: int, found: FoundFile, content_hash: str) -> FileRecord:
    """The row a walked file gets in the index, its bytes hashing to ``content_hash``."""
    return FileRecord(root_id, found.relpath, str(found.path), found.size, found.mtime_ns, content_hash)


@dataclass(frozen=True)
class IndexedRoot:
    """A root's row id and the state of every file the index holds under it."""

    id: int
    files: dict[str, FileState]


@dataclass
class IndexStorage:
    """The store as the indexer uses it: settings, roots and file states, writes, upkeep."""

    store: Store

    # ---------------------------------------------------------------- settings
    def settings(self) -> IndexSettings | None:
        return self.store.meta.settings()

    def record_settings(self, settings: IndexSettings) -> None:
        """A new index records its settings; an existing one must match them.

        What may change without re-embedding is updated: the query task (``--instruct``)
        and where the model file lives (the same header hash at another path: the file was
        moved, and the index must follow it or queries cannot load the model).
        """
        stored = self.store.meta.settings()
        if stored is None:
            self.store.meta.init_settings(settings)
            return
        self.store.meta.check_settings(settings)
        if settings.instruction != stored.instruction:
            self.store.meta.set_instruction(settings.instruction)
        if (settings.model_label, settings.model_file, settings.model_size) != (
            stored.model_label, stored.model_file, stored.model_size
        ):
            self.store.meta.set_model_file(settings.model_label, settings.model_file, settings.model_size)

    # ---------------------------------------------------------------- roots
    def indexed_roots(self) -> list[Path]:
        return [Path(path) for path in self.store.files.root_paths()]

    def indexed_file_count(self, root: Path) -> int:
        """How many files the index holds under ``root`` (0 for a folder it does not know,
        without adding it)."""
        if str(root) not in self.store.files.root_paths():
            return 0
        return len(self.open_root(root).files)

    def open_root(self, root: Path) -> IndexedRoot:
        """The root's row (added if new) and its files' states."""
        root_id = self.store.files.add_root(str(root))
        return IndexedRoot(root_id, self.store.files.file_states(root_id))

    def mark_indexed(self, root_id: int) -> None:
        self.store.files.mark_indexed(root_id)

    # ---------------------------------------------------------------- files
    def vectors_for(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        return self.store.vectors.vectors_for_hashes(hashes)

    def write(self, record: FileRecord, chunks: Sequence[NewChunk]) -> ChunkChanges:
        return self.store.files.write_file(record, chunks)

    def touch(self, state: FileState, found: FoundFile) -> None:
        self.store.files.touch_file(state.id, found.size, found.mtime_ns)

    def delete(self, state: FileState) -> None:
        self.store.files.delete_file(state.id)

    def count_timeout(self, content_hash: str) -> int:
        return self.store.meta.count_timeout(content_hash)

    def forget_timeouts(self, content_hash: str) -> None:
        self.store.meta.forget_timeouts(content_hash)

    # ---------------------------------------------------------------- upkeep
    def chunk_count(self) -> int:
        return self.store.files.chunk_count()

    def checkpoint(self) -> None:
        self.store.maintenance.checkpoint()

    def compact_if_due(self, policy: CompactPolicy | None) -> CompactResult | None:
        """Give back the space the edit history wasted, once ``policy`` says it is worth a rewrite."""
        if policy is None or not policy.due(self.store.maintenance.space_usage()):
            return None
        return self.store.maintenance.compact()
