"""The disk side of planning: what is at a root, and what a walk of it yields (stats only).

Kept apart from the planner so that the planner decides from plain data; this module only
looks, and turns a root it cannot read into a one-line error.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from edge_embed.errors import EdgeEmbedError
from edge_embed.files import FoundFile, Skip, discover
from edge_embed.indexer.options import IndexOptions
from edge_embed.indexer.planner import Walk


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


def walk_root(root: Path, options: IndexOptions, scope: frozenset[str] | None, stop: threading.Event) -> Walk:
    """Walk first (cheap stats only) so the progress display knows the total; only
    ``scope`` under the root when given. A stop ends the walk early (``Walk.complete``)."""
    found: list[FoundFile] = []
    skips: list[Skip] = []
    walk = discover(
        root,
        include=options.include,
        exclude=options.exclude,
        hidden=options.hidden,
        follow_links=options.follow_links,
        max_file_size=options.max_file_size,
        max_document_size=options.max_document_size,
        within=scope,
    )
    try:
        for item in walk:
            if stop.is_set():
                return Walk(tuple(found), tuple(skips), complete=False)
            (skips if isinstance(item, Skip) else found).append(item)
    except OSError as exc:  # the root itself (per-file problems are Skips)
        raise EdgeEmbedError(f"cannot read the folder {root}: {exc.strerror or exc}") from None
    return Walk(tuple(found), tuple(skips))
