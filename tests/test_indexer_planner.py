"""The indexer's decisions from plain data: no model, no SQLite, no disk.

Each rule here once guarded against losing indexed files (an unplugged drive, a folder
unreadable for a moment, a narrowed run) or re-reading unchanged ones; the planner takes
literals, so each rule is checked on its own.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from edge_embed.cli.wording import cli_text
from edge_embed.errors import EdgeEmbedError
from edge_embed.files import FoundFile, Skip
from edge_embed.indexer.planner import (
    KeptFolder,
    RootCheck,
    Walk,
    drops_old_chunks,
    in_scope,
    plan_files,
    plan_roots,
    refuse_overlapping_roots,
    under_any,
    watched_scope,
)
from edge_embed.indexer.summary import IndexSummary, Tally
from edge_embed.store import FileState

ROOT = Path("/data/notes")


def found(relpath: str, size: int = 10, mtime_ns: int = 1) -> FoundFile:
    return FoundFile(ROOT / relpath, relpath, size, mtime_ns)


def state(file_id: int, size: int = 10, mtime_ns: int = 1) -> FileState:
    return FileState(file_id, size, mtime_ns, f"hash{file_id}")


def never_asked(relpath: str) -> bool:
    raise AssertionError(f"on_disk asked for {relpath} in a run that is not narrowed")


def plan(walk: Walk, known: dict[str, FileState], narrowed: bool = False, on_disk=never_asked):
    return plan_files(ROOT, walk, known, narrowed=narrowed, on_disk=on_disk)


# ---------------------------------------------------------------- roots
def check(name: str, unavailable: str | None = None, files: int = 0) -> RootCheck:
    return RootCheck(Path(name), Path("/r") / name, unavailable, files)


def test_available_roots_are_walked_in_the_order_given():
    assert plan_roots([check("b"), check("a")]).walk == (Path("/r/b"), Path("/r/a"))


@pytest.mark.parametrize("unavailable", ["missing", "empty", "not-a-folder"])
def test_a_root_that_looks_gone_with_indexed_files_is_kept_not_walked(unavailable):
    """An unplugged drive looks like a missing or empty folder: its files stay."""
    roots = plan_roots([check("drive", unavailable, files=7), check("other")])
    assert roots.walk == (Path("/r/other"),)
    assert roots.kept == (KeptFolder("/r/drive", unavailable, 7),)


def test_an_empty_root_the_index_does_not_know_is_walked():
    assert plan_roots([check("new", "empty")]) .walk == (Path("/r/new"),)


@pytest.mark.parametrize(("unavailable", "message"), [("missing", "no such folder: nope"), ("not-a-folder", "not a folder: nope")])
def test_a_root_that_is_not_a_folder_and_holds_nothing_is_an_error(unavailable, message):
    with pytest.raises(EdgeEmbedError, match=message):
        plan_roots([check("fine"), check("nope", unavailable)])


def test_kept_folders_say_how_to_drop_their_files():
    drop = KeptFolder("/r/drive", "missing", 3).how_to_drop
    assert (cli_text(drop), str(drop)) == ("`edge-embed remove /r/drive` drops them", "removing /r/drive from the index drops them")
    assert str(KeptFolder("/r/notes/usb", "dangling-symlink", 1).how_to_drop) == "delete the link to drop them"


@pytest.mark.parametrize(
    ("roots", "indexed", "advice"),
    [
        ([Path("/r/notes/sub")], [Path("/r/notes")], "index only /r/notes (or remove /r/notes from the index first)"),
        ([Path("/r")], [Path("/r/notes")], "index only /r (or remove /r/notes from the index first)"),
        ([Path("/r/notes"), Path("/r/notes/sub")], [], "index only /r/notes"),  # two named in one run
    ],
)
def test_overlapping_roots_are_refused(roots, indexed, advice):
    """The folder to remove is the one already indexed (the hint named the new inner one)."""
    with pytest.raises(EdgeEmbedError, match="indexed twice") as refused:
        refuse_overlapping_roots(roots, indexed)
    assert refused.value.rendered_hint() == advice


def test_a_root_already_indexed_and_its_siblings_do_not_overlap():
    refuse_overlapping_roots([Path("/r/notes"), Path("/r/notes2")], [Path("/r/notes"), Path("/r/other")])


# ---------------------------------------------------------------- files
def test_only_new_files_and_changed_stats_are_read():
    walk = Walk((found("same.md"), found("new.md"), found("grown.md", size=11), found("touched.md", mtime_ns=2)), ())
    known = {"same.md": state(1), "grown.md": state(2), "touched.md": state(3)}
    files = plan(walk, known)
    assert [(task.found.relpath, task.changed) for task in files.tasks] == [
        ("same.md", False), ("new.md", True), ("grown.md", True), ("touched.md", True),
    ]
    assert [item.relpath for item in files.changed] == ["new.md", "grown.md", "touched.md"]
    assert files.tasks[0].state == state(1) and files.tasks[1].state is None


def test_files_the_walk_no_longer_yields_are_forgotten():
    files = plan(Walk((found("a.md"),), ()), {"a.md": state(1), "gone.md": state(2), "sub/gone.py": state(3)})
    assert files.remove == (state(2), state(3))


def test_an_incomplete_walk_forgets_nothing():
    """A stop during the walk: a file the walk did not reach is not a file that is gone."""
    files = plan(Walk((found("a.md"),), (), complete=False), {"a.md": state(1), "b.md": state(2)})
    assert files.remove == ()


@pytest.mark.parametrize("reason", ["unreadable", "changed-while-reading"])
def test_a_passing_skip_keeps_the_file_and_everything_under_it(reason):
    walk = Walk((), (Skip("b.txt", reason, ""), Skip("sub", reason, "")))
    files = plan(walk, {"b.txt": state(1), "sub/c.py": state(2), "subway.md": state(3)})
    assert files.remove == (state(3),), "sub/ is kept; subway.md is not under it"


def test_a_lasting_skip_forgets_the_file():
    files = plan(Walk((), (Skip("b.txt", "too-large", ">10 MB"),)), {"b.txt": state(1)})
    assert files.remove == (state(1),)


def test_a_dangling_link_to_a_folder_with_indexed_files_keeps_them_and_says_so():
    walk = Walk((found("a.md"),), (Skip("usb", "broken-symlink", ""), Skip("old-link", "broken-symlink", "")))
    files = plan(walk, {"a.md": state(1), "usb/far.md": state(2), "usb/deep/x.md": state(3)})
    assert files.kept == (KeptFolder(str(ROOT / "usb"), "dangling-symlink", 2),)
    assert files.remove == ()


def test_a_narrowed_run_forgets_only_what_is_gone_from_disk():
    on_disk = {"kept-out.md"}
    asked = []

    def exists(relpath: str) -> bool:
        asked.append(relpath)
        return relpath in on_disk

    known = {"new.md": state(1), "kept-out.md": state(2), "deleted.md": state(3)}
    files = plan(Walk((found("new.md"),), ()), known, narrowed=True, on_disk=exists)
    assert files.remove == (state(3),)
    assert sorted(asked) == ["deleted.md", "kept-out.md"], "the disk is asked only of files the walk left out"


def test_the_walks_skips_are_passed_on_in_order():
    skips = (Skip("z.bin", "binary", ""), Skip("a.bin", "binary", ""))
    assert plan(Walk((), skips), {}).skips == skips


def test_only_unreadable_for_good_drops_an_indexed_files_chunks():
    assert drops_old_chunks(Skip("a.md", "binary", ""), state(1))
    assert not drops_old_chunks(Skip("a.md", "unreadable", ""), state(1))
    assert not drops_old_chunks(Skip("a.md", "binary", ""), None), "a new file has nothing to drop"


# ---------------------------------------------------------------- a watcher's paths
def test_a_changed_ignore_file_stands_for_its_folder():
    assert watched_scope(["docs/a.md", "src/.gitignore", "x/.edgeembedignore"]) == {"docs/a.md", "src", "x"}


def test_an_ignore_file_at_the_root_means_the_whole_root():
    assert watched_scope(["docs/a.md", ".gitignore"]) is None


def test_scope_narrows_the_indexed_files_to_those_under_it():
    known = {"docs/a.md": state(1), "docs2/b.md": state(2), "c.md": state(3)}
    assert in_scope(known, frozenset({"docs", "c.md"})) == {"docs/a.md": state(1), "c.md": state(3)}
    assert in_scope(known, None) == known


def test_under_any_matches_whole_path_segments():
    assert under_any("a/b/c.md", {"a/b"}) and under_any("a/b", {"a/b"})
    assert not under_any("a/bc/d.md", {"a/b"}) and not under_any("a", {"a/b"})


# ---------------------------------------------------------------- summary
def test_tallies_add_up_into_the_summary():
    walked = Tally(roots=("/r/a",), files_seen=3, skipped=Counter({"binary": 1}), kept=(KeptFolder("/r/a/usb", "dangling-symlink", 1),))
    written = Tally(indexed=2, chunks_added=5, texts_embedded=4, tokens_embedded=100, embed_s=0.5)
    failed = Tally(skipped=Counter({"binary": 1, "too-large": 1}), failed=1)
    total = walked + written + failed + Tally(roots=("/r/b",))
    assert total.skipped == {"binary": 2, "too-large": 1} and total.embed_s == 0.5
    summary = IndexSummary.of(total, chunks_removed=1, interrupted=False, elapsed_s=2.0)
    assert summary.roots == ["/r/a", "/r/b"] and summary.files_seen == 3 and summary.indexed == 2
    assert (summary.failed, summary.chunks_added, summary.tokens_embedded, summary.chunks_removed) == (1, 5, 100, 1)
    assert summary.to_dict()["skipped"] == {"binary": 2, "too-large": 1}
    assert summary.kept == [KeptFolder("/r/a/usb", "dangling-symlink", 1)]
    assert walked.skipped == {"binary": 1}, "adding leaves the parts as they were"
