"""``index --rebuild``: build a new index beside the old one, then swap it in whole.

A rebuild that fails half-way (a model llama.cpp cannot load, VRAM running out, a Ctrl-C,
a kill -9) must not cost the user the index they had. So nothing is dropped: every
folder of the old index (and any new one named) is indexed into ``INDEX.rebuild-<pid>``
in the same folder while the old index stays as it was, queryable. Only a complete
rebuild replaces it, through SQLite's backup API in one destination transaction
(``store.maintenance.replace_with``): a reader sees the old index or the new one, and a crash during
the copy rolls back to the old one. Renaming the file instead would pull it from under
readers that hold the old inode together with a ``-wal``/``-shm`` found by name.

An interrupted or failed rebuild deletes its partial file; one left by a killed rebuild
is deleted by the next run on that index (the writer lock says no rebuild is running).
"""

from __future__ import annotations

import glob
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from edge_embed.errors import EdgeEmbedError
from edge_embed.indexer import IndexOptions, Indexer, IndexSummary, NoProgress, Progress, resolve_options, unavailable_state
from edge_embed.store import Store
from edge_embed.store.lock import writer_lock

if TYPE_CHECKING:
    from edge_embed.runtime.loader import ModelHandle

PARTIAL_MARK = ".rebuild-"


def partial_path(index: Path) -> Path:
    """Where this process builds the new index: beside the old one, so the swap never crosses disks."""
    return index.with_name(f"{index.name}{PARTIAL_MARK}{os.getpid()}")


def remove_partial_rebuilds(index: Path) -> None:
    """Delete every partial rebuild of ``index`` (and its -wal/-shm); call only under the writer lock."""
    for leftover in glob.glob(glob.escape(str(index)) + PARTIAL_MARK + "*"):
        Path(leftover).unlink(missing_ok=True)


def rebuild_roots(indexed: Sequence[str], named: Sequence[Path]) -> list[Path]:
    """Every folder of the old index, then the newly named ones: a rebuild drops no folder."""
    roots = [Path(path) for path in indexed]
    roots += [path.resolve() for path in named if path.resolve() not in roots]
    if not roots:
        raise EdgeEmbedError("nothing to rebuild: the index has no folders yet; name the folders to index")
    for root in roots:
        state = unavailable_state(root)
        if state is not None and (state != "empty" or str(root) in indexed):
            where = "is not there" if state != "empty" else "is empty (an unmounted share?)"
            raise EdgeEmbedError(
                f"{root}, a folder of this index, {where}", kind="conflict",
                hint="before a rebuild, plug it back in, or {remove}", root=root,
            )
    return roots


def rebuild_index(
    index: Path,
    model: ModelHandle,
    options: IndexOptions,
    roots: Sequence[Path] = (),
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> IndexSummary:
    """Rebuild ``index`` with ``model``: all its folders plus ``roots``, its own settings
    unless ``options`` override them. The old index is replaced only when the new one is
    complete; an interrupted rebuild (``summary.interrupted``) leaves it untouched.
    """
    if not roots and not index.exists():
        raise EdgeEmbedError(f"no index at {index} to rebuild: name the folders to index")
    if options.include or options.exclude:
        raise EdgeEmbedError(
            "include and exclude patterns narrow one run and keep the indexed files they leave out, which a "
            "rebuild would drop", param="include",
            hint="rebuild without {include} or {exclude} (list files in .edgeembedignore to drop them for good)",
        )
    model.load()  # a model llama.cpp cannot load (or that does not fit) fails before anything is written
    # the lock alone, not Store.writer_lock: the old index is replaced whole, so migrating it first would be wasted
    with Store.open(index) as current, writer_lock(current.path):
        remove_partial_rebuilds(index)
        options = resolve_options(options, current.meta.settings(), model)
        folders = rebuild_roots(current.files.root_paths(), roots)
        try:
            with Store.open(partial_path(index), page_size=current.maintenance.page_size()) as fresh:
                indexer = Indexer(fresh, model, options, progress=progress or NoProgress(), stop=stop or threading.Event())
                summary = indexer.run(folders)
                summary = replace(summary, rebuilt=True)
                if not summary.interrupted:
                    current.maintenance.replace_with(fresh.maintenance)
        finally:
            remove_partial_rebuilds(index)
    return summary
