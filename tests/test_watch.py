"""`edge-embed watch`: real file systems in tmp dirs, real watchfiles events, the tiny model.

Every scenario ends the same way: the watched index must equal a fresh `index` of the
final tree (same files, chunks, lines and texts). Reconciles are set an hour apart in
these tests, so what they see was brought by events (except where a test says otherwise).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

import edge_embed
from edge_embed.api import IndexRequest
from edge_embed.cli import cli
from edge_embed.errors import EdgeEmbedError
from edge_embed.files import FoundFile, discover
from edge_embed.indexer import IndexSummary
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.store import Store
from edge_embed.watch import WatchSettings, file_system_type, may_matter, read_watch_state, sends_no_events

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file operations and signals")

CPU = RuntimeSettings(force_cpu=True, ctx=256, threads=1)
OPTIONS = IndexRequest(chunk_tokens=96, overlap=8)
QUICK = WatchSettings(debounce_ms=300, step_ms=50, reconcile_s=3600, poll_s=3600, keep_alive_s=None)


def note(i: int, topic: str = "apples") -> str:
    return f"# Note {i}\n\nThis note {i} is about {topic} and number {i * 7}.\n"


@pytest.fixture
def notes(tmp_path) -> Path:
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text(note(1))
    (root / "b.txt").write_text(note(2, "bananas"))
    (root / "sub" / "c.md").write_text(note(3, "cherries"))
    return root


def state(db: Path) -> set[tuple]:
    """Every chunk as (relpath, seq, text hash, lines): what 'the same index' means."""
    with Store.open(db, create=False) as store:
        rows = store._conn.execute(
            "SELECT f.relpath, c.seq, c.text_hash, c.start_line, c.end_line FROM chunks c JOIN files f ON f.id = c.file_id"
        ).fetchall()
        files = store._conn.execute("SELECT relpath, content_hash FROM files").fetchall()
    return {tuple(row) for row in rows} | {("file", *row) for row in files}


def fresh_state(root: Path, model: Path, tmp_path: Path) -> set[tuple]:
    db = tmp_path / f"fresh-{time.monotonic_ns()}.db"
    with edge_embed.Index.open(db, CPU) as index:
        index.index([root], OPTIONS, model=str(model))
    return state(db)


def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "the watched index to settle") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Report:
    """The watcher's report, kept for the assertions."""

    def __init__(self) -> None:
        self.said_messages: list[str] = []
        self.batches: list[tuple[Path, IndexSummary, bool]] = []

    def said(self, message: str) -> None:
        self.said_messages.append(message)

    def applied(self, root: Path, summary: IndexSummary, whole: bool) -> None:
        self.batches.append((root, summary, whole))


@contextmanager
def watching(db: Path, model: Path, folders=(), settings: WatchSettings = QUICK) -> Iterator[Report]:
    """A library watcher in a thread, settled on its start reconcile; stopped at the end."""
    report = Report()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with edge_embed.Index.open(db, CPU) as index:
                index.watch(folders, OPTIONS, settings, stop=stop, model=str(model), report=report)
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    eventually(lambda: errors or (read_watch_state(db) or {}).get("last_reconcile_at"), what="the first reconcile")
    assert not errors, errors
    try:
        yield report
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors


@pytest.fixture
def indexed(notes, tiny_model, tmp_path) -> Path:
    db = tmp_path / "watched.db"
    with edge_embed.Index.open(db, CPU) as index:
        index.index([notes], OPTIONS, model=str(tiny_model.path))
    return db


def settles_to_fresh(db: Path, root: Path, model: Path, tmp_path: Path, timeout: float = 20.0) -> None:
    expected = fresh_state(root, model, tmp_path)
    eventually(lambda: state(db) == expected, timeout)


# ---------------------------------------------------------------- the indexer's part
def update(db: Path, root: Path, relpaths: set[str], model: Path) -> IndexSummary:
    """``Indexer.update``, what the watcher calls with the paths its events named."""
    from edge_embed.indexer import Indexer
    from edge_embed.runtime.loader import prepare_model

    handle = prepare_model(str(model), CPU)
    try:
        with Store.open(db) as store:
            return Indexer(store, handle, OPTIONS.options()).update(root, relpaths)
    finally:
        handle.close()


def test_discover_within_walks_only_the_named_paths_under_the_same_rules(notes):
    (notes / ".gitignore").write_text("ignored.md\n")
    (notes / "sub" / "ignored.md").write_text(note(9))
    (notes / "sub" / "deep").mkdir()
    (notes / "sub" / "deep" / "d.md").write_text(note(4))
    found = [item.relpath for item in discover(notes, within={"sub/ignored.md", "sub/deep", "b.txt", "gone.md"})
             if isinstance(item, FoundFile)]
    assert found == ["b.txt", "sub/deep/d.md"]  # the ignore file above still applies; a.md is not looked at


def test_update_indexes_only_the_named_paths(notes, indexed, tiny_model, tmp_path):
    (notes / "a.md").write_text(note(1, "apricots"))
    (notes / "b.txt").write_text(note(2, "blueberries"))
    summary = update(indexed, notes, {"a.md"}, tiny_model.path)
    assert (summary.indexed, summary.unchanged) == (1, 0)  # b.txt changed too, but was not named
    with Store.open(indexed) as store:
        texts = {row[0] for row in store._conn.execute("SELECT text FROM chunks")}
    assert any("apricots" in text for text in texts) and not any("blueberries" in text for text in texts)


def test_update_of_a_changed_ignore_file_rechecks_its_folder(notes, indexed, tiny_model, tmp_path):
    (notes / "sub" / ".edgeembedignore").write_text("*.md\n")
    summary = update(indexed, notes, {"sub/.edgeembedignore"}, tiny_model.path)
    assert summary.removed == 1
    assert state(indexed) == fresh_state(notes, tiny_model.path, tmp_path)


def test_update_of_a_missing_root_keeps_its_files(notes, indexed, tiny_model, tmp_path):
    before = state(indexed)
    notes.rename(tmp_path / "unplugged")
    summary = update(indexed, notes, {"a.md", "sub"}, tiny_model.path)
    assert summary.removed == 0 and summary.kept[0].reason == "missing"
    assert state(indexed) == before


# ---------------------------------------------------------------- events
def test_create_edit_rename_delete(notes, indexed, tiny_model, tmp_path):
    with watching(indexed, tiny_model.path) as report:
        (notes / "new.md").write_text(note(5, "melons"))
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
        (notes / "a.md").write_text(note(1, "apricots"))
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
        (notes / "new.md").rename(notes / "sub" / "renamed.md")
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
        (notes / "b.txt").unlink()
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
    assert not any(whole for _root, _summary, whole in report.batches[1:])  # events did it, not reconciles


def test_a_folder_moved_out_and_back(notes, indexed, tiny_model, tmp_path):
    (notes / "sub" / "more.md").write_text(note(6, "grapes"))
    outside = tmp_path / "elsewhere"
    with watching(indexed, tiny_model.path):
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
        (notes / "sub").rename(outside)
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
        assert not any(row[1] == "sub/c.md" for row in state(indexed) if row[0] == "file")
        outside.rename(notes / "sub")
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
        (notes / "sub" / "c.md").write_text(note(3, "plums"))  # the folder moved back in is watched too
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)


def test_a_file_replaced_by_a_symlink(notes, indexed, tiny_model, tmp_path):
    target = tmp_path / "target.md"
    target.write_text(note(7, "figs"))
    with watching(indexed, tiny_model.path):
        (notes / "a.md").unlink()
        (notes / "a.md").symlink_to(target)
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
    with Store.open(indexed) as store:  # a link out of the folder is never followed (issue 17)
        texts = [row[0] for row in store._conn.execute("SELECT text FROM chunks")]
    assert texts and not any("figs" in text for text in texts)


def test_a_burst_of_1000_writes_is_embedded_in_batches(notes, indexed, tiny_model, tmp_path):
    with watching(indexed, tiny_model.path) as report:
        for i in range(1000):
            (notes / f"burst-{i:04d}.md").write_text(note(100 + i, "bursts"))
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path, timeout=120)
    batches = [summary for _root, summary, _whole in report.batches[1:]]
    assert sum(summary.indexed for summary in batches) == 1000  # no file indexed twice
    assert len(batches) < 50  # coalesced: not one batch per file


def test_an_unplugged_folder_keeps_its_files_and_is_watched_again_when_back(notes, indexed, tiny_model, tmp_path):
    before = state(indexed)
    settings = WatchSettings(debounce_ms=300, step_ms=50, reconcile_s=3600, poll_s=0.5, keep_alive_s=None)
    with watching(indexed, tiny_model.path, settings=settings):
        notes.rename(tmp_path / "unplugged")
        time.sleep(2)  # the watch is dropped; the reconcile that follows must not delete anything
        assert state(indexed) == before
        (tmp_path / "unplugged").rename(notes)
        (notes / "a.md").write_text(note(1, "kiwis"))
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)


def test_folders_without_events_are_polled_and_said_once(notes, indexed, tiny_model, tmp_path):
    settings = WatchSettings(debounce_ms=300, step_ms=50, reconcile_s=3600, poll_s=0.5, keep_alive_s=None, force_polling=True)
    with watching(indexed, tiny_model.path, settings=settings) as report:
        (notes / "polled.md").write_text(note(8, "limes"))
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path)
        assert read_watch_state(indexed)["polling"] == [str(notes)]
    assert sum("checking it every" in message for message in report.said_messages) == 1


def test_an_idle_watcher_writes_nothing(indexed, tiny_model):
    from edge_embed.watch import state_path

    with watching(indexed, tiny_model.path):
        time.sleep(0.5)
        published = state_path(indexed).stat().st_mtime_ns
        wal = Path(f"{indexed}-wal").stat().st_mtime_ns
        time.sleep(2)  # four idle loops
        assert (state_path(indexed).stat().st_mtime_ns, Path(f"{indexed}-wal").stat().st_mtime_ns) == (published, wal)


def test_file_system_types_without_events(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\nserver:/export /mnt/nas nfs4 rw 0 0\nsshfs#me@h: /home/me/remote fuse.sshfs rw 0 0\n"
    )
    assert file_system_type(Path("/home/me/notes"), str(mounts)) == "ext4"
    assert file_system_type(Path("/mnt/nas/notes"), str(mounts)) == "nfs4"
    assert file_system_type(Path("/home/me/remote/x"), str(mounts)) == "fuse.sshfs"
    assert [sends_no_events(kind) for kind in ("ext4", "nfs4", "fuse.sshfs", None)] == [False, True, True, False]


def test_event_paths_are_cut_by_name_before_the_walk():
    assert may_matter("notes/a.md", hidden=False)
    assert may_matter("sub/.gitignore", hidden=False)  # ignore files change what is indexed
    assert not may_matter(".git/index", hidden=True)
    assert not may_matter("app/node_modules/x/readme.md", hidden=False)
    assert not may_matter("sub/.a.md.swp", hidden=False) and may_matter("sub/.a.md.swp", hidden=True)


# ---------------------------------------------------------------- processes
def watch_command(db: Path, model: Path, *folders: Path) -> list[str]:
    return [sys.executable, "-m", "edge_embed", "watch", *map(str, folders), "--db", str(db), "--model", str(model),
            "--threads", "1", "--debounce", "300ms", "--quiet"]


def test_kill_9_mid_burst_then_the_next_start_reconciles(notes, indexed, tiny_model, tmp_path):
    process = subprocess.Popen(watch_command(indexed, tiny_model.path), stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: (read_watch_state(indexed) or {}).get("last_reconcile_at") or process.poll() is not None)
        assert process.poll() is None, process.stderr.read()
        files_before = len({row for row in state(indexed) if row[0] == "file"})
        for i in range(400):
            (notes / f"burst-{i:04d}.md").write_text(note(100 + i, "bursts"))
        eventually(lambda: len({row for row in state(indexed) if row[0] == "file"}) > files_before + 10, timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert read_watch_state(indexed) is None  # a dead watcher is not reported as watching
    files = len({row for row in state(indexed) if row[0] == "file"})
    assert files < files_before + 400, "the burst was done before the kill: enlarge it"
    with watching(indexed, tiny_model.path):
        settles_to_fresh(indexed, notes, tiny_model.path, tmp_path, timeout=120)


def test_a_second_writer_is_told_the_watcher_holds_the_lock(notes, indexed, tiny_model):
    with watching(indexed, tiny_model.path):
        result = CliRunner().invoke(cli, ["index", str(notes), "--db", str(indexed), "--model", str(tiny_model.path)])
        assert result.exit_code == 2
        assert f"another `edge-embed watch` is writing to {indexed} (pid {os.getpid()})" in result.output
        assert "stop it" in result.output
        with pytest.raises(EdgeEmbedError, match="another `edge-embed watch`"):
            with edge_embed.Index.open(indexed, CPU) as index:
                index.watch([notes], OPTIONS, QUICK, stop=threading.Event(), model=str(tiny_model.path))


# ---------------------------------------------------------------- the faces
def test_status_shows_the_watcher_and_query_json_the_index_age(notes, indexed, tiny_model):
    runner = CliRunner()
    idle = runner.invoke(cli, ["status", "--db", str(indexed)])
    assert "watching: no" in idle.output
    with watching(indexed, tiny_model.path):
        shown = runner.invoke(cli, ["status", "--db", str(indexed)])
        assert "watching: 1 folders (pid" in shown.output and "0 changes pending" in shown.output
        import json

        document = json.loads(runner.invoke(cli, ["status", "--db", str(indexed), "--json"]).output)
        assert document["watch"]["watching"] == [str(notes)] and document["watch"]["error"] is None
        facade = edge_embed.Index.open(indexed).status()  # what MCP `status` answers
        assert facade.watch["watching"] == [str(notes)] and facade.index_age_s >= 0
        time.sleep(1.1)
        answer = runner.invoke(cli, ["query", "apples", "--db", str(indexed), "--json", "--mode", "keyword", "--no-server"])
        assert 1.0 <= json.loads(answer.output)["index_age_s"] < 60
        (notes / "a.md").write_text(note(1, "apples again"))

        def fresh() -> bool:
            # While the watcher thread loads its model: llama-cpp-python's quiet load used to
            # swap sys.stdout process-wide, so this query printed nothing or wrote to a closed
            # stream (tests/test_engine.py, "leaves what the process prints alone").
            result = runner.invoke(cli, ["query", "apples", "--db", str(indexed), "--json", "--mode", "keyword", "--no-server"])
            assert result.exit_code == 0, (repr(result.exception), result.stderr[-500:])
            return json.loads(result.output)["index_age_s"] < 1.0

        eventually(fresh)


def test_watch_command_runs_until_sigterm(notes, indexed, tiny_model):
    timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    (notes / "a.md").write_text(note(1, "oranges"))  # found by the start reconcile
    result = CliRunner().invoke(cli, ["watch", "--db", str(indexed), "--model", str(tiny_model.path), "--debounce", "200ms"])
    timer.cancel()
    assert result.exit_code == 0, result.output
    assert f"watching every folder of the index into {indexed}" in result.output
    assert f"{notes} (re-checked): 1 indexed, 0 removed" in result.output
    assert "stopped: the index is consistent" in result.output
    assert read_watch_state(indexed) is None


def test_watch_help_reads_like_documentation():
    result = CliRunner().invoke(cli, ["watch", "--help"])
    assert result.exit_code == 0
    for words in ("every folder of the index", "--reconcile", "--poll", "network or FUSE", "serve", "writer lock"):
        assert words in result.output


def test_serve_watch_indexes_through_the_server_engine(notes, indexed, tiny_model):
    import httpx

    from tests.serving import running_server

    with running_server(indexed, None, watch=QUICK) as (base, service):
        eventually(lambda: (read_watch_state(indexed) or {}).get("last_reconcile_at"))
        inputs_before = service.worker.inputs
        (notes / "sub" / "fresh.md").write_text(note(11, "papayas"))

        def found() -> bool:
            answer = httpx.post(f"{base}/v1/search", json={"query": "papayas", "mode": "keyword"}).json()
            return any(result["relpath"] == "sub/fresh.md" for result in answer["results"])

        eventually(found)
        assert service.worker.inputs > inputs_before  # embedded by the server's one engine
        health = httpx.get(f"{base}/health").json()
        assert health["watch"]["watching"] == [str(notes)] and health["watch"]["pid"] == os.getpid()


def test_the_end_of_serving_leaves_the_index_open_while_the_watcher_still_works(notes, indexed, tiny_model, monkeypatch):
    """A watcher still embedding a file when the server stops may still write: the server
    closed the index under it anyway (the engine stopped, the read connections freed);
    now it says so and leaves the index to the process's end."""
    from edge_embed.server import watching as watching_module
    from tests.serving import running_server

    release = threading.Event()
    stuck = watching_module.ServerWatch(threading.Thread(target=release.wait, daemon=True), threading.Event())
    stuck.thread.start()
    assert stuck.close(timeout_s=0.1) is False  # at work past the wait
    release.set()
    assert stuck.close(timeout_s=5) is True

    closed = []
    monkeypatch.setattr(watching_module.ServerWatch, "close", lambda self, timeout_s=0: self.stop.set() or False)
    with running_server(indexed, None, watch=QUICK) as (_, service):
        eventually(lambda: (read_watch_state(indexed) or {}).get("last_reconcile_at"))
        monkeypatch.setattr(service.index, "close", lambda: closed.append(True))
    assert closed == [] and not service.worker.loaded  # the engine stopped; the index stays open
