"""What a run does to each root and file, decided from plain data: no model, no SQLite.

The policy lives here, apart from the reading and writing, because its mistakes cost the
most: deleting the indexed files of an unplugged drive, or forgetting a file that was only
unreadable for a moment. The orchestrator (``pipeline.Indexer``) gathers the facts (what
the disk says about each root, what the walk yielded, what the index holds) and applies
the plan; every rule can be tested here with a few literals.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_embed.errors import EdgeEmbedError, Phrase
from edge_embed.files import IGNORE_FILE_NAMES, FoundFile, Skip

if TYPE_CHECKING:
    from edge_embed.store import FileState

# Skips that may pass by themselves: the file keeps its old chunks until a later run.
TRANSIENT_SKIPS = frozenset({"unreadable", "changed-while-reading"})


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

    @property
    def how_to_drop(self) -> Phrase:
        """The warning's last words: what the user does to let these files go."""
        if self.reason == "dangling-symlink":
            return Phrase("delete the link to drop them")
        return Phrase("{removing} drops them", root=self.path)


# ---------------------------------------------------------------- roots
@dataclass(frozen=True)
class RootCheck:
    """What the disk and the index say about one root the caller named, before any walk."""

    given: Path  # as the caller wrote it, for the error message
    path: Path  # resolved
    unavailable: str | None  # None, or "empty", "missing", "not-a-folder" (walk.unavailable_state)
    files_indexed: int  # the index's files under it; only asked when ``unavailable`` is set


@dataclass(frozen=True)
class RootPlan:
    """The roots to walk, in order, and those set aside with their files kept."""

    walk: tuple[Path, ...]
    kept: tuple[KeptFolder, ...]


def plan_roots(checks: Sequence[RootCheck]) -> RootPlan:
    """Which roots to walk; all are checked before any is walked.

    A root that is missing (a dangling link too) or empty while the index holds files
    from it is set aside and reported, its files kept. An empty root the index knows
    nothing of is just empty (walked, finding nothing). Any other missing root, or a
    file, is an error: the caller named something that is not a folder.
    """
    walk: list[Path] = []
    kept: list[KeptFolder] = []
    for check in checks:
        if check.unavailable is None:
            walk.append(check.path)
        elif check.files_indexed:
            kept.append(KeptFolder(str(check.path), check.unavailable, check.files_indexed))
        elif check.unavailable == "empty":
            walk.append(check.path)
        else:
            raise EdgeEmbedError(f"{'no such folder' if check.unavailable == 'missing' else 'not a folder'}: {check.given}")
    return RootPlan(tuple(walk), tuple(kept))


def refuse_overlapping_roots(roots: Sequence[Path], indexed: Sequence[Path]) -> None:
    """A folder inside another indexed (or named) folder would store its files twice."""
    for i, root in enumerate(roots):
        others = [other for other in [*indexed, *roots[:i], *roots[i + 1:]] if other != root]
        for other in others:
            if root.is_relative_to(other) or other.is_relative_to(root):
                inner, outer = (root, other) if root.is_relative_to(other) else (other, root)
                if other not in indexed:  # both named in this run: nothing to remove
                    hint, values = "index only {outer}", {"outer": outer}
                else:  # removing the indexed one frees the way
                    hint, values = "index only {outer} (or {remove} first)", {"outer": outer, "root": other}
                raise EdgeEmbedError(
                    f"{inner} is inside {outer}: its files would be indexed twice", kind="conflict", hint=hint, **values
                )


# ---------------------------------------------------------------- files
@dataclass(frozen=True)
class Walk:
    """What the walk of one root yielded, in its order: the files to consider, the skips.

    ``complete`` is False when a stop cut it short: then nothing may be deleted, since a
    file the walk did not reach is not a file that is gone.
    """

    found: tuple[FoundFile, ...]
    skips: tuple[Skip, ...]
    complete: bool = True


@dataclass(frozen=True)
class FileTask:
    """One file of the walk, with what the index holds of it (None: a new file)."""

    found: FoundFile
    state: FileState | None

    @property
    def changed(self) -> bool:
        """Whether the file must be read: new, or its size or mtime differ from the index's."""
        return stat_changed(self.found, self.state)


@dataclass(frozen=True)
class FilePlan:
    """What to do under one root: check every found file (walk order), forget ``remove``
    once the files are done, report the walk's skips and the ``kept`` linked folders."""

    tasks: tuple[FileTask, ...]
    remove: tuple[FileState, ...]
    skips: tuple[Skip, ...]
    kept: tuple[KeptFolder, ...]

    @property
    def changed(self) -> list[FoundFile]:
        """The files that will be read (what the run's estimate counts)."""
        return [task.found for task in self.tasks if task.changed]


def plan_files(
    root: Path,
    walk: Walk,
    known: Mapping[str, FileState],
    *,
    narrowed: bool,
    on_disk: Callable[[str], bool],
) -> FilePlan:
    """Every found file to check, and the indexed files (``known``) to forget.

    Forgotten: what the walk no longer yields, except under a path skipped for a passing
    reason (``TRANSIENT_SKIPS``) or under a dangling link to a folder with indexed files
    (an unplugged drive), and, when --include/--exclude narrow the run (``narrowed``),
    except what is still ``on_disk``: a narrowed run adds or refreshes files, it never
    deletes what it was told not to look at. ``on_disk`` (a relpath's existence) is asked
    only then, and only for the few files the walk left out.
    """
    tasks = tuple(FileTask(found, known.get(found.relpath)) for found in walk.found)
    links = links_keeping_files(walk.skips, known)
    kept = tuple(KeptFolder(str(root / link), "dangling-symlink", files) for link, files in links.items())
    if not walk.complete:
        return FilePlan(tasks, (), walk.skips, kept)
    keep = {skip.relpath for skip in walk.skips if skip.reason in TRANSIENT_SKIPS} | set(links)
    seen = {found.relpath for found in walk.found}
    remove = tuple(
        state
        for relpath, state in known.items()
        if relpath not in seen and not under_any(relpath, keep) and not (narrowed and on_disk(relpath))
    )
    return FilePlan(tasks, remove, walk.skips, kept)


def links_keeping_files(skips: Sequence[Skip], known: Mapping[str, FileState]) -> dict[str, int]:
    """Dangling links that were folders with indexed files (a link to an unplugged drive),
    with how many files each holds."""
    links = {}
    for skip in skips:
        if skip.reason == "broken-symlink":
            files = sum(1 for relpath in known if relpath.startswith(skip.relpath + "/"))
            if files:
                links[skip.relpath] = files
    return links


def stat_changed(found: FoundFile, state: FileState | None) -> bool:
    """Whether a file must be read: new, or its size or mtime differ from the index's."""
    return state is None or state.size != found.size or state.mtime_ns != found.mtime_ns


def drops_old_chunks(skip: Skip, state: FileState | None) -> bool:
    """Whether an indexed file that could not be read now leaves the index: yes, unless the
    reason may pass by itself (it keeps its old chunks until a later run reads it)."""
    return state is not None and skip.reason not in TRANSIENT_SKIPS


# ---------------------------------------------------------------- a watcher's paths
def watched_scope(relpaths: Collection[str]) -> frozenset[str] | None:
    """The paths to re-check: a changed ignore file stands for its whole folder; None = all."""
    scope = set()
    for relpath in relpaths:
        parent, _, name = relpath.rpartition("/")
        scope.add(parent if name in IGNORE_FILE_NAMES else relpath)
    return None if "" in scope else frozenset(scope)


def in_scope(known: Mapping[str, FileState], scope: frozenset[str] | None) -> dict[str, FileState]:
    """The indexed files a walk of ``scope`` (None: the whole root) answers for."""
    if scope is None:
        return dict(known)
    return {relpath: state for relpath, state in known.items() if under_any(relpath, scope)}


def under_any(relpath: str, prefixes: Collection[str]) -> bool:
    """Whether relpath is one of ``prefixes`` or inside one of them (POSIX relpaths).

    By set lookups of relpath's own folders, so thousands of prefixes (a watcher's batch)
    cost no more than a few.
    """
    return relpath in prefixes or any(relpath[:i] in prefixes for i, char in enumerate(relpath) if char == "/")
