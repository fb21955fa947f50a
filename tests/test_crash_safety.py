"""kill -9 at random moments, queries during an index, and a second concurrent index."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_embed.errors import EdgeEmbedError
from edge_embed.store import Store

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TOPICS = ["keys", "garden", "python", "travel", "music", "budget", "backup", "kernel", "recipes", "running"]


def make_corpus(root: Path, files: int) -> Path:
    rng = random.Random(42)
    for i in range(files):
        folder = root / TOPICS[i % len(TOPICS)]
        folder.mkdir(parents=True, exist_ok=True)
        sections = []
        for s in range(4):
            words = " ".join(rng.choice(TOPICS) + rng.choice(["", "s", "ing"]) for _ in range(rng.randint(20, 60)))
            sections.append(f"## Section {s} of note {i}\n\n{words}.\n")
        (folder / f"note-{i:04d}.md").write_text(f"# Note {i}\n\n" + "\n".join(sections))
    return root


def index_command(db: Path, root: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "edge_embed", "index", str(root), "--db", str(db),
            "--model", str(model), "--quiet", "--chunk-tokens", "96", "--overlap", "8"]


def chunks_written(db: Path) -> int:
    """Chunks in a database another process is creating (0 until its schema exists)."""
    if not db.exists():
        return 0
    try:
        store = Store.open(db, create=False)
    except EdgeEmbedError:
        return 0
    with store:
        return store.maintenance.stats()["chunks"]


def final_state(db: Path) -> tuple[set, int]:
    with Store.open(db, create=False) as store:
        assert store.maintenance.integrity_check() == "ok"
        rows = store._conn.execute(
            "SELECT f.relpath, c.seq, c.text_hash, c.start_line, c.end_line FROM chunks c JOIN files f ON f.id = c.file_id"
        ).fetchall()
        return {tuple(row) for row in rows}, store.maintenance.stats()["vectors"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "notes", files=150)


@pytest.fixture(scope="module")
def reference(corpus, tiny_model, tmp_path_factory) -> tuple[set, int, float]:
    db = tmp_path_factory.mktemp("reference") / "ref.db"
    started = time.monotonic()
    done = subprocess.run(index_command(db, corpus, tiny_model.path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    state, vectors = final_state(db)
    return state, vectors, time.monotonic() - started


def test_kill_9_at_random_moments_then_resume(corpus, tiny_model, reference, tmp_path):
    expected, expected_vectors, duration = reference
    db = tmp_path / "killed.db"
    rng = random.Random(7)
    for attempt in range(4):
        process = subprocess.Popen(index_command(db, corpus, tiny_model.path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 0.95) * duration)
        process.kill()
        process.wait(timeout=30)
        if db.exists():
            with Store.open(db, create=False) as store:
                assert store.maintenance.integrity_check() == "ok", f"after kill {attempt}"
    done = subprocess.run(index_command(db, corpus, tiny_model.path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    state, vectors = final_state(db)
    assert state == expected
    assert vectors == expected_vectors == len(expected)


def test_kill_9_in_the_first_instants_of_a_new_index_never_leaves_a_dead_file(tiny_model, tmp_path):
    """Kills aimed at the window between creating the file and committing its schema.

    Each leftover must open (what the next run does first) and check ok; the last one
    must take a whole index run. Bounded in time, not in trials, for slow machines.
    """
    small = make_corpus(tmp_path / "small", files=3)
    rng = random.Random(11)
    deadline = time.monotonic() + 45
    leftovers = []
    while len(leftovers) < 12 and time.monotonic() < deadline:
        db = tmp_path / f"new-{len(leftovers)}.db"
        process = subprocess.Popen(index_command(db, small, tiny_model.path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not db.exists() and process.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.02))
        process.kill()
        process.wait(timeout=30)
        leftovers.append((db, db.stat().st_size))
    *opened, (last, _size) = leftovers
    for db, size in opened:
        with Store.open(db, create=False) as store:
            assert store.maintenance.integrity_check() == "ok", f"{db.name} ({size} bytes after the kill)"
    done = subprocess.run(index_command(last, small, tiny_model.path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Store.open(last, create=False) as store:
        assert store.maintenance.integrity_check() == "ok" and store.maintenance.stats()["files"] == 3
    assert len(leftovers) >= 3


def test_queries_during_an_index_get_answers(corpus, tiny_model, tmp_path):
    db = tmp_path / "busy.db"
    process = subprocess.Popen(index_command(db, corpus, tiny_model.path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    answered = 0
    rng = np.random.default_rng(0)
    try:
        while process.poll() is None:
            if not db.exists():
                time.sleep(0.01)
                continue
            with Store.open(db, create=False) as store:  # an empty new file is initialised, not refused
                settings = store.meta.settings()
                if settings is None:
                    continue
                store.keywords.keyword_search("garden keys", 5)
                vector = rng.normal(size=settings.dims).astype(np.float32)
                store.vectors.vector_search(vector / np.linalg.norm(vector), 5)
                answered += 1
    finally:
        process.wait(timeout=300)
    assert process.returncode == 0, process.stderr.read().decode()
    assert answered > 0, "the index finished before any query ran: enlarge the corpus"


def test_second_index_on_the_same_db_exits_with_a_clear_message(corpus, tiny_model, tmp_path):
    db = tmp_path / "twice.db"
    first = subprocess.Popen(index_command(db, corpus, tiny_model.path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{db}.lock").exists() or Path(f"{db}.lock").stat().st_size == 0:
            assert first.poll() is None and time.monotonic() < deadline, "first index ended before holding the lock"
            time.sleep(0.01)
        second = subprocess.run(index_command(db, corpus, tiny_model.path), capture_output=True, text=True, timeout=120)
    finally:
        first.wait(timeout=300)
    assert second.returncode == 2
    assert "another `edge-embed index`" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == 0


def test_ctrl_c_finishes_the_batch_prints_the_summary_and_keeps_the_work(corpus, tiny_model, reference, tmp_path):
    import signal

    expected, _vectors, duration = reference
    db = tmp_path / "interrupted.db"
    command = [arg for arg in index_command(db, corpus, tiny_model.path) if arg != "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not chunks_written(db):
        assert process.poll() is None and time.monotonic() < deadline, "index ended before any chunk was written"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Interrupted" in out and "run the same command again" in out
    assert "finishing the current batch" in err and "Traceback" not in err
    state, _ = final_state(db)
    assert 0 < len(state) < len(expected)
    assert state <= expected, "what an interrupted run wrote is exactly what a full run writes"
    done = subprocess.run(index_command(db, corpus, tiny_model.path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert final_state(db)[0] == expected


def test_second_ctrl_c_aborts_at_once_with_130(corpus, tiny_model, tmp_path):
    import signal

    db = tmp_path / "aborted.db"
    process = subprocess.Popen(index_command(db, corpus, tiny_model.path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not chunks_written(db):
        assert process.poll() is None and time.monotonic() < deadline, "index ended before any chunk was written"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    # 130 from the CLI, or death by SIGINT when the second one lands after the summary:
    # a shell reports both as $? = 130 (never click's "Aborted!" with status 1)
    assert process.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "Aborted!" not in err
    with Store.open(db, create=False) as store:
        assert store.maintenance.integrity_check() == "ok"
