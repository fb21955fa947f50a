"""Edits in place, wasted space, and compaction (issue 7 item 3).

sqlite-vec 0.1.x never reuses a freed vector slot outside its newest chunk of slots
(``VEC_CHUNK_SIZE`` per chunk in our vec0 table), so these tests use indexes of many chunks,
with the edited rows in the first ones. Counts are written in terms of the chunk size.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_embed.store import ChunkChanges, CompactPolicy, FileRecord, IndexSettings, NewChunk, SpaceUsage, Store
from edge_embed.store.maintenance import MB
from edge_embed.store.schema import VEC_CHUNK_SIZE

DIMS = 16
SETTINGS = IndexSettings("test-model", "/models/test.gguf", 1, "b" * 64, DIMS, chunk_tokens=128, overlap=0)
SLOTS_PER_CHUNK = VEC_CHUNK_SIZE


def chunks_for(vectors: int) -> int:
    """Chunks of slots that ``vectors`` rows written in one go occupy."""
    return -(-vectors // SLOTS_PER_CHUNK)


class Notes:
    """Writes files of text chunks with random unit vectors (the same text, the same vector)."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root
        self.root_id = store.files.add_root(root)
        self.vectors: dict[str, np.ndarray] = {}

    def vector(self, text: str) -> np.ndarray:
        if text not in self.vectors:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            vector = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
            self.vectors[text] = vector / np.linalg.norm(vector)
        return self.vectors[text]

    def write(self, relpath: str, texts: list[str], headings: list[str | None] | None = None) -> ChunkChanges:
        headings = headings or [None] * len(texts)
        chunks = [
            NewChunk(seq, seq * 3 + 1, seq * 3 + 2, heading, text, hashlib.sha256(text.encode()).hexdigest(), self.vector(text))
            for seq, (text, heading) in enumerate(zip(texts, headings))
        ]
        return self.store.files.write_file(FileRecord(self.root_id, relpath, str(self.root / relpath), 1, 1, f"content-{texts}"), chunks)

    def rows(self, relpath: str) -> list[tuple[int, int, int, str]]:
        """(id, seq, start_line, text) of a file's chunks, in order."""
        return self.store._conn.execute(
            "SELECT c.id, c.seq, c.start_line, c.text FROM chunks c JOIN files f ON f.id = c.file_id "
            "WHERE f.relpath = ? ORDER BY c.seq",
            (relpath,),
        ).fetchall()


@pytest.fixture
def notes(tmp_path: Path):
    """Notes over a new index of DIMS-dimension vectors."""
    (tmp_path / "notes").mkdir()
    with Store.open(tmp_path / "index.db") as store:
        store.meta.init_settings(SETTINGS)
        yield Notes(store, tmp_path / "notes")


def paragraphs(prefix: str, count: int) -> list[str]:
    return [f"{prefix} paragraph {i}" for i in range(count)]


# ---------------------------------------------------------------------- in-place writes
def test_an_edit_keeps_the_rows_of_unchanged_texts(notes: Notes) -> None:
    assert notes.write("a.md", ["alpha", "bravo", "charlie"]) == ChunkChanges(inserted=3)
    before = {text: chunk_id for chunk_id, _, _, text in notes.rows("a.md")}

    changes = notes.write("a.md", ["alpha", "xray", "charlie", "delta"])

    assert changes == ChunkChanges(inserted=2, kept=2, deleted=1)
    after = notes.rows("a.md")
    assert [text for *_, text in after] == ["alpha", "xray", "charlie", "delta"]
    assert after[0][0] == before["alpha"] and after[2][0] == before["charlie"]
    assert {after[1][0], after[3][0]}.isdisjoint(before.values())
    assert notes.store.keywords.keyword_search("bravo", 5) == []
    xray = {chunk_id for chunk_id, _ in notes.store.keywords.keyword_search("xray", 5)}
    assert xray == {after[0][0], after[1][0], after[2][0]}  # its own chunk and the kept ones beside it
    assert notes.store.maintenance.stats()["vectors"] == 4
    assert notes.store.maintenance.integrity_check() == "ok"


def test_a_moved_chunk_keeps_its_id_and_gets_its_new_position(notes: Notes) -> None:
    notes.write("a.md", ["alpha", "bravo"])
    [(alpha_id, _, _, _), (bravo_id, _, _, _)] = notes.rows("a.md")
    notes.write("a.md", ["new first", "alpha", "bravo"])
    assert notes.rows("a.md")[1:] == [(alpha_id, 1, 4, "alpha"), (bravo_id, 2, 7, "bravo")]
    hits = notes.store.vectors.vector_search(notes.vector("bravo"), 1)
    assert hits[0][0] == bravo_id and hits[0][1] < 1e-5


def test_repeated_paragraphs_keep_one_row_each(notes: Notes) -> None:
    notes.write("a.md", ["same", "other", "same"])
    first, _, last = (row[0] for row in notes.rows("a.md"))
    assert notes.write("a.md", ["same", "same", "same"]) == ChunkChanges(inserted=1, kept=2, deleted=1)
    assert [row[0] for row in notes.rows("a.md")][:2] == [first, last]
    assert notes.write("a.md", ["same"]) == ChunkChanges(kept=1, deleted=2)
    assert [row[0] for row in notes.rows("a.md")] == [first]
    assert notes.store.maintenance.integrity_check() == "ok"


def test_a_kept_row_whose_heading_changed_is_found_by_the_new_heading(notes: Notes) -> None:
    """The store matches on the hash alone; a hash that does not cover the heading still works."""
    notes.write("a.md", ["text"], headings=["Oldheading"])
    assert notes.write("a.md", ["text"], headings=["Newheading"]) == ChunkChanges(kept=1)
    assert notes.store.keywords.keyword_search("Oldheading", 5) == []
    assert len(notes.store.keywords.keyword_search("Newheading", 5)) == 1
    assert notes.store.maintenance.integrity_check() == "ok"


def test_vector_slots_do_not_grow_over_many_edit_cycles(notes: Notes) -> None:
    """200 edits of one paragraph, in 50 files in turn: only the 200 changed paragraphs
    take new slots. Before in-place writes each edit rewrote all 20 of the file's rows,
    leaving 4,000 dead slots."""
    files = {f"note-{n:02d}.md": paragraphs(f"note {n}", 20) for n in range(50)}
    for relpath, texts in files.items():  # their rows fill the first chunk of slots
        notes.write(relpath, texts)
    notes.write("big.md", paragraphs("big", 1100))
    [before] = notes.store.maintenance.space_usage().vector_tables
    assert before.slots == chunks_for(2100) * SLOTS_PER_CHUNK
    for cycle in range(200):
        relpath = f"note-{cycle % 50:02d}.md"
        files[relpath][cycle % 20] = f"edit {cycle}"
        notes.write(relpath, files[relpath])
    usage = notes.store.maintenance.space_usage()
    assert usage.vectors == 2100
    assert usage.vector_tables[0].slots <= before.slots + 200 + SLOTS_PER_CHUNK
    assert notes.store.maintenance.integrity_check() == "ok"


# ---------------------------------------------------------------------- wasted space and compaction
def wasteful_index(notes: Notes) -> None:
    """A big file cut to every 4th paragraph after 50 notes were written: its kept rows
    keep 4,000 slots allocated for 1,750 live vectors."""
    big = paragraphs("big", 3000)
    notes.write("big.md", big)
    for n in range(50):
        notes.write(f"note-{n:02d}.md", paragraphs(f"note {n}", 20))
    notes.write("big.md", big[::4])
    notes.store.maintenance.checkpoint()


@pytest.fixture(scope="module")
def wasteful_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(index file, its root): built once, copied by each test that changes it."""
    folder = tmp_path_factory.mktemp("wasteful")
    (folder / "notes").mkdir()
    with Store.open(folder / "index.db") as store:
        store.meta.init_settings(SETTINGS)
        wasteful_index(Notes(store, folder / "notes"))
    return folder / "index.db", folder / "notes"


@pytest.fixture
def wasted(wasteful_db: tuple[Path, Path], tmp_path: Path):
    """Notes over a private copy of the wasteful index."""
    db, root = wasteful_db
    shutil.copy(db, tmp_path / "wasted.db")
    with Store.open(tmp_path / "wasted.db", create=False) as store:
        yield Notes(store, root)


def search_results(store: Store, notes: Notes) -> list[object]:
    queries = [notes.vector(text) for text in ("note 3 paragraph 4", "note 40 paragraph 7", "big paragraph 400")]
    return [store.vectors.vector_search(query, 20) for query in queries] + [store.keywords.keyword_search("big paragraph 400", 5)]


def test_status_numbers_say_what_compaction_gives_back(wasted: Notes) -> None:
    notes = wasted
    usage = notes.store.maintenance.space_usage()
    assert usage.vectors == 1750 and usage.needed_vector_chunks == chunks_for(1750)
    assert usage.vector_chunks == chunks_for(4000)
    assert usage.reclaimable_bytes > 0 and 0 < usage.reclaimable_fraction < 1
    [vectors] = usage.vector_tables
    assert vectors.dead_bytes == (chunks_for(4000) - chunks_for(1750)) * vectors.chunk_bytes
    assert vectors.chunk_bytes >= SLOTS_PER_CHUNK * DIMS * 4


def test_compact_gives_back_the_space_and_keeps_ids_vectors_and_results(wasted: Notes) -> None:
    notes = wasted
    store = notes.store
    expected = search_results(store, notes)
    before = store.maintenance.space_usage()

    result = store.maintenance.compact()

    assert result.before == before
    assert result.after.vector_chunks == result.after.needed_vector_chunks == chunks_for(1750)
    assert result.after.free_bytes == 0 and result.after.reclaimable_bytes == 0
    assert result.after.database_bytes < before.database_bytes and result.freed_bytes > 0
    assert search_results(store, notes) == expected
    assert store.maintenance.integrity_check() == "ok"
    notes.write("note-00.md", ["after compaction"])  # writes go on as before
    assert store.maintenance.integrity_check() == "ok"


def test_compact_an_index_without_vectors_yet(tmp_path: Path) -> None:
    with Store.open(tmp_path / "empty.db") as store:
        result = store.maintenance.compact()
        assert result.after.vector_chunks == 0 and store.maintenance.integrity_check() == "ok"


def test_queries_from_another_connection_answer_throughout_a_compaction(wasted: Notes) -> None:
    notes = wasted
    expected = search_results(notes.store, notes)
    compacting = threading.Event()
    done = threading.Event()
    answers: list[tuple[float, float, bool]] = []  # (started, finished, same results)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with Store.open(notes.store.path, create=False) as own:
                compacting.wait()
                while not done.is_set():
                    started = time.perf_counter()
                    same = search_results(own, notes) == expected
                    answers.append((started, time.perf_counter(), same))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    compacting.set()
    started = time.perf_counter()
    notes.store.maintenance.compact()
    finished = time.perf_counter()
    done.set()
    thread.join(timeout=60)
    assert not errors
    during = [same for begin, end, same in answers if begin < finished and end > started]
    assert during and all(same for *_, same in answers)


def test_a_read_snapshot_taken_before_compaction_still_reads_after_it(wasted: Notes) -> None:
    notes = wasted
    expected = search_results(notes.store, notes)
    with Store.open(notes.store.path, create=False) as reader:
        with reader._conn:  # one read transaction across the compaction: its snapshot stays
            assert search_results(reader, notes) == expected
            notes.store.maintenance.compact()
            assert search_results(reader, notes) == expected
        assert search_results(reader, notes) == expected


# ---------------------------------------------------------------------- edge-embed compact
def invoke(*args: object):
    from click.testing import CliRunner

    from edge_embed.cli import cli

    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def test_status_reports_the_space_and_compact_gives_it_back(wasted: Notes) -> None:
    db = wasted.store.path
    wasted.store.close()
    usage_line = next(line for line in invoke("status", "--db", db).output.splitlines() if line.startswith("space:"))
    needed = chunks_for(1750)
    assert "reclaimable" in usage_line and f"{needed} needed" in usage_line and "edge-embed compact" in usage_line
    space = json.loads(invoke("status", "--db", db, "--json").output)["space"]
    assert space["vector_chunks"] > space["needed_vector_chunks"] == needed and space["reclaimable_bytes"] > 0

    result = invoke("compact", "--db", db)

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Compacted {db}: ") and f"vector chunks {space['vector_chunks']} -> {needed}" in result.output
    after = json.loads(invoke("status", "--db", db, "--json").output)["space"]
    assert after["reclaimable_bytes"] == 0 and after["vector_chunks"] == needed
    assert "edge-embed compact" not in invoke("status", "--db", db).output
    report = json.loads(invoke("compact", "--db", db, "--json").output)
    assert report["after"]["vector_chunks"] == needed and report["freed_bytes"] >= 0


def test_compact_refuses_a_missing_index_and_a_busy_one(tmp_path: Path, notes: Notes) -> None:
    missing = invoke("compact", "--db", tmp_path / "none.db")
    assert missing.exit_code == 2 and "no index at" in missing.output
    with notes.store.writer_lock():
        busy = invoke("compact", "--db", notes.store.path)
    assert busy.exit_code == 2 and "is writing to" in busy.output


def test_compact_help_says_when_to_use_it_and_when_index_does_it() -> None:
    policy = CompactPolicy()
    text = invoke("compact", "--help").output
    assert f"{policy.min_fraction:.0%}" in text and f"{policy.min_bytes // MB} MB" in text
    assert "status" in text and "Examples:" in text


@pytest.fixture(scope="module")
def fragmented_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """8 big files cut to every 4th paragraph: 6,000 vectors in 24,000 slots."""
    folder = tmp_path_factory.mktemp("fragmented")
    (folder / "notes").mkdir()
    rng = np.random.default_rng(11)
    with Store.open(folder / "index.db") as store:
        store.meta.init_settings(SETTINGS)
        notes = Notes(store, folder / "notes")
        for n in range(8):
            texts = paragraphs(f"big {n}", 3000)
            vectors = rng.standard_normal((len(texts), DIMS)).astype(np.float32)
            notes.vectors.update(zip(texts, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)))
            notes.write(f"big-{n}.md", texts)
        for n in range(8):
            notes.write(f"big-{n}.md", paragraphs(f"big {n}", 3000)[::4])
        store.maintenance.checkpoint()
    return folder / "index.db", folder / "notes"


COMPACT_IN_A_CHILD = """
import sys, time
from edge_embed.store import Store
store = Store.open(sys.argv[1], create=False)
print("ready", flush=True)
started = time.perf_counter()
store.maintenance.compact()
print(time.perf_counter() - started, flush=True)
"""


def start_compaction(db: Path) -> subprocess.Popen:
    """A process that compacts db; returns once it is about to start."""
    process = subprocess.Popen([sys.executable, "-c", COMPACT_IN_A_CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_kill_9_during_compaction_leaves_the_old_or_the_new_index(fragmented_db: tuple[Path, Path], tmp_path: Path) -> None:
    """kill -9 at random moments of a compaction (spread over one uninterrupted run's
    duration): integrity ok, the same results, and the next compaction succeeds."""
    db, root = fragmented_db
    with Store.open(db, create=False) as store:
        expected = search_results(store, Notes(store, root))
        assert store.maintenance.space_usage().vector_chunks == chunks_for(24_000)
    timing = start_compaction(Path(shutil.copy(db, tmp_path / "timing.db")))
    duration = float(timing.communicate()[0])
    rng = random.Random(7)
    outcomes = set()
    for trial in range(8):
        copy = Path(shutil.copy(db, tmp_path / f"kill-{trial}.db"))
        process = start_compaction(copy)
        time.sleep(rng.uniform(0, 1.2) * duration)
        process.kill()
        process.communicate()
        with Store.open(copy, create=False) as store:
            assert store.maintenance.integrity_check() == "ok"
            assert search_results(store, Notes(store, root)) == expected
            outcomes.add(store.maintenance.space_usage().vector_chunks)
            store.maintenance.compact()
            assert store.maintenance.space_usage().vector_chunks == chunks_for(6000) and store.maintenance.integrity_check() == "ok"
    assert outcomes <= {chunks_for(24_000), chunks_for(6000)}


# ---------------------------------------------------------------------- automatic compaction
def usage_of(database_mb: float, free_mb: float) -> SpaceUsage:
    return SpaceUsage(database_bytes=int(database_mb * MB), free_bytes=int(free_mb * MB), vector_tables=())


@pytest.mark.parametrize(
    ("database_mb", "free_mb", "due"),
    [(100, 40, True), (100, 20, False), (40, 15, False), (10, 9, False), (1000, 300, True)],
)
def test_the_default_policy_needs_30_percent_and_16_mb(database_mb: float, free_mb: float, due: bool) -> None:
    assert CompactPolicy().due(usage_of(database_mb, free_mb)) is due


def test_index_says_when_it_compacted(tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text("# A\\n\\nSome text.\\n")
    monkeypatch.setattr(CompactPolicy, "due", lambda self, usage: True)
    result = invoke("index", root, "--db", tmp_path / "i.db", "--model", tiny_model.path)
    assert result.exit_code == 0, result.output
    assert "  compacted (edits had wasted space): " in result.output and "vector chunks 1 -> 1" in result.output
    report = json.loads(invoke("index", root, "--db", tmp_path / "i.db", "--json").output)
    assert report["compacted"]["after"]["vector_chunks"] == 1


def test_a_kept_chunk_that_moved_to_another_page_gets_its_new_page(notes: Notes) -> None:
    """A PDF paragraph pushed onto the next page keeps its row but must report the new page."""
    digest = hashlib.sha256(b"moved").hexdigest()
    write = notes.store.files.write_file
    first = NewChunk(0, 1, 1, None, "moved", digest, notes.vector("moved"), page_start=3, page_end=3)
    write(FileRecord(notes.root_id, "m.pdf", str(notes.root / "m.pdf"), 1, 1, "v1"), [first])
    [(chunk_id, _, _, _)] = notes.rows("m.pdf")
    moved = NewChunk(0, 1, 1, None, "moved", digest, notes.vector("moved"), page_start=4, page_end=4)
    write(FileRecord(notes.root_id, "m.pdf", str(notes.root / "m.pdf"), 1, 1, "v2"), [moved])
    record = notes.store.files.chunks_by_id([chunk_id])[chunk_id]
    assert (record.page_start, record.page_end) == (4, 4)


def test_compact_help_names_the_slot_block_the_vector_table_really_has() -> None:
    """Issue 16, defect 7: the help still said freed slots are reused in the newest block of 1024."""
    from click.testing import CliRunner

    from edge_embed.cli import cli
    from edge_embed.store.schema import VEC_CHUNK_SIZE

    text = CliRunner().invoke(cli, ["compact", "--help"]).stdout
    assert f"newest block of {VEC_CHUNK_SIZE} slots" in " ".join(text.split())
