"""The incremental pipeline, with the real tiny GGUF model and a real store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_embed.cli.wording import cli_text
from edge_embed.errors import EdgeEmbedError, IndexMismatch
from edge_embed.indexer import IndexOptions, Indexer, KeptFolder, NoProgress
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.loader import ModelHandle
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, make_plan
from edge_embed.store import CompactPolicy, Store
from edge_embed.store.schema import VEC_CHUNK_SIZE
from edge_embed.testing import write_tiny_qwen3


class CountingEmbedder(Embedder):
    """The real engine, remembering every text it was asked to embed."""

    def embed_documents(self, texts, dims=None, on_decode=None):
        self.calls.append(list(texts))
        return super().embed_documents(texts, dims, on_decode)

    @property
    def embedded(self) -> list[str]:
        return [text for call in self.calls for text in call]


def load(model_path: Path, label: str = "", threads: int | None = None) -> CountingEmbedder:
    info = read_model_info(model_path)
    settings = RuntimeSettings(ctx=2048, threads=threads)
    plan = make_plan(ModelShape.from_model_info(info), settings, gpu=None, offload_supported=False)
    engine = CountingEmbedder(info, plan, label=label or str(model_path))
    engine.calls = []
    return engine


@pytest.fixture(scope="module")
def engine(tiny_model):
    embedder = load(tiny_model.path)
    yield embedder
    embedder.close()


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# Alpha\n\nThe first note talks about apples.\n\n## Keys\n\nRotate the API keys monthly.\n")
    (root / "b.txt").write_text("Bananas are yellow.\nThey grow in bunches.\n")
    (root / "sub" / "c.py").write_text("def cherry():\n    return 'red'\n\n\ndef date():\n    return 'brown'\n")
    (root / "image.bin").write_bytes(b"\x00\x01\x02binary")
    return root


def run(store: Store, engine: CountingEmbedder, *roots: Path, **options) -> object:
    engine.calls = []
    indexer = Indexer(store, ModelHandle.from_embedder(engine), IndexOptions(chunk_tokens=128, overlap=8, **options))
    return indexer.run(list(roots))


def index_state(store: Store) -> set[tuple[str, int, str]]:
    """(relpath, seq, text hash) of every chunk: what 'the same final state' means."""
    rows = store._conn.execute(
        "SELECT f.relpath, c.seq, c.text_hash FROM chunks c JOIN files f ON f.id = c.file_id"
    ).fetchall()
    return {tuple(row) for row in rows}


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "index.db") as opened:
        yield opened


def test_first_run_indexes_text_files_and_skips_binary(store, engine, tree):
    summary = run(store, engine, tree)
    assert summary.indexed == 3
    assert summary.skipped == {"binary": 1}
    stats = store.maintenance.stats()
    assert stats["files"] == 3
    assert stats["chunks"] == summary.chunks_added == len(engine.embedded)
    assert summary.tokens_embedded > 0
    assert store.maintenance.integrity_check() == "ok"


def test_stored_vectors_are_the_engines_document_vectors(store, engine, tree):
    run(store, engine, tree)
    text_hash, embed_text = None, None
    for call in engine.calls:
        for text in call:
            if "Rotate the API keys" in text:
                embed_text = text
    assert embed_text is not None and embed_text.startswith("file: a.md\n")
    import hashlib

    text_hash = hashlib.sha256(embed_text.encode()).hexdigest()
    stored = store.vectors.vectors_for_hashes([text_hash])[text_hash]
    assert np.allclose(stored, engine.embed_documents([embed_text])[0], atol=1e-5)


def test_unchanged_rerun_embeds_nothing(store, engine, tree):
    run(store, engine, tree)
    summary = run(store, engine, tree)
    assert engine.calls == []
    assert summary.unchanged == 3 and summary.indexed == 0


def test_touch_without_change_embeds_nothing(store, engine, tree):
    run(store, engine, tree)
    os.utime(tree / "a.md", ns=(1_000_000_000, 1_000_000_000))
    summary = run(store, engine, tree)
    assert engine.calls == []
    assert summary.unchanged == 3
    assert store.files.file_states(store.files.add_root(tree))["a.md"].mtime_ns == 1_000_000_000


def test_edit_embeds_only_new_chunk_texts(store, engine, tree):
    run(store, engine, tree)
    before = index_state(store)
    (tree / "b.txt").write_text("Bananas are yellow.\nThey grow in bunches.\n\nPlantains are cooked.\n")
    summary = run(store, engine, tree)
    assert summary.indexed == 1 and summary.unchanged == 2
    assert len(engine.embedded) >= 1
    assert all(text.startswith("file: b.txt") for text in engine.embedded)
    after = index_state(store)
    assert {row for row in before if row[0] != "b.txt"} == {row for row in after if row[0] != "b.txt"}


def chunk_ids_by_text(store: Store, relpath: str) -> dict[str, int]:
    rows = store._conn.execute(
        "SELECT c.text, c.id FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.relpath = ?", (relpath,)
    ).fetchall()
    return dict(rows)


def test_an_edited_paragraph_leaves_the_other_chunks_in_place(store, engine, tmp_path):
    root = tmp_path / "doc"
    root.mkdir()
    paragraphs = [f"Paragraph {i} talks about topic number {i} at some length." for i in range(8)]
    (root / "doc.txt").write_text("\n\n".join(paragraphs) + "\n")
    run(store, engine, root)
    before = chunk_ids_by_text(store, "doc.txt")
    assert len(before) > 3
    paragraphs[3] = "Paragraph three was rewritten entirely."
    (root / "doc.txt").write_text("\n\n".join(paragraphs) + "\n")

    summary = run(store, engine, root)

    after = chunk_ids_by_text(store, "doc.txt")
    unchanged = set(before) & set(after)
    assert len(unchanged) == len(before) - 1
    assert all(before[text] == after[text] for text in unchanged)
    assert summary.chunks_kept == len(unchanged)
    assert summary.chunks_added == summary.chunks_removed == len(engine.embedded) == 1
    assert store.maintenance.integrity_check() == "ok"


def write_note(root: Path, number: int, paragraphs: list[str]) -> None:
    """Every note is named note.txt (in its own folder): equal paragraphs embed once."""
    folder = root / f"n{number:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "note.txt").write_text("\n\n".join(paragraphs) + "\n")


@pytest.fixture(scope="module")
def single_thread_engine(tiny_model):
    """Many one-text decodes: one thread does not wait on a busy machine's other core."""
    embedder = load(tiny_model.path, threads=1)
    yield embedder
    embedder.close()


def test_200_edit_cycles_leave_the_index_the_size_of_a_fresh_one(store, single_thread_engine, tmp_path):
    """40 notes, one paragraph of one note edited per cycle (the notes in turn). The notes
    start identical (same name, same text: embedded once) so the cycles are fast; 2,400
    chunks, one per paragraph. Only an edited paragraph takes a new vector slot (at most
    200); before in-place writes each cycle rewrote all 60 rows of its note: 12,000 dead
    slots and 1.23x the fresh size."""
    notes = [[f"Paragraph {i} of the note, long enough to make a chunk of its own here." for i in range(60)] for _ in range(40)]
    edited_root, fresh_root = tmp_path / "edited", tmp_path / "fresh"
    for number, paragraphs in enumerate(notes):
        write_note(edited_root, number, paragraphs)
    run(store, single_thread_engine, edited_root, auto_compact=None)
    for cycle in range(200):
        number = cycle % len(notes)
        notes[number][cycle % 60] = f"Edit number {cycle}, a paragraph rewritten from its first word to its last."
        write_note(edited_root, number, notes[number])
        assert run(store, single_thread_engine, edited_root, auto_compact=None).indexed == 1
    for number, paragraphs in enumerate(notes):
        write_note(fresh_root, number, paragraphs)
    with Store.open(tmp_path / "fresh.db") as fresh:
        run(fresh, single_thread_engine, fresh_root, auto_compact=None)
        fresh.maintenance.checkpoint()
        fresh_usage = fresh.maintenance.space_usage()
    store.maintenance.checkpoint()
    edited_usage = store.maintenance.space_usage()
    assert edited_usage.vectors == fresh_usage.vectors
    slack = VEC_CHUNK_SIZE  # the newest chunk of slots, partly filled
    assert edited_usage.vector_tables[0].slots <= fresh_usage.vector_tables[0].slots + 200 + slack
    assert edited_usage.database_bytes <= 1.15 * fresh_usage.database_bytes


def test_a_run_compacts_by_itself_only_when_its_policy_says_so(store, engine, tree):
    run(store, engine, tree)
    (tree / "b.txt").write_text("Bananas are green at first.\n")
    assert run(store, engine, tree).compacted is None  # a small index: under the 16 MB floor
    (tree / "b.txt").write_text("Bananas ripen in a paper bag.\n")
    summary = run(store, engine, tree, auto_compact=CompactPolicy(min_fraction=0.0, min_bytes=0))
    assert summary.compacted is not None
    assert summary.to_dict()["compacted"]["after"]["reclaimable_bytes"] == 0
    assert store.maintenance.space_usage().free_bytes == 0 and store.maintenance.integrity_check() == "ok"
    options = IndexOptions(chunk_tokens=128, overlap=8, auto_compact=CompactPolicy(0.0, 0))
    indexer = Indexer(store, ModelHandle.from_embedder(engine), options)
    indexer.stop.set()
    assert indexer.run([tree]).compacted is None  # an interrupted run never compacts


def test_each_run_of_one_indexer_reports_its_own_work(store, engine, tree):
    """The summary is built from what this run's stages returned: a second run of the same
    Indexer (a watcher's) once returned the first run's summary object, counts added."""
    indexer = Indexer(store, ModelHandle.from_embedder(engine), IndexOptions(chunk_tokens=128, overlap=8))
    first = indexer.run([tree])
    (tree / "b.txt").write_text("Bananas are green at first.\n")
    second = indexer.update(tree, ["b.txt"])
    third = indexer.run([tree])
    assert (first.indexed, first.unchanged) == (3, 0)
    assert (second.indexed, second.unchanged, second.files_seen) == (1, 0, 1)
    assert (third.indexed, third.unchanged, third.skipped) == (0, 3, {"binary": 1})


def test_deleted_file_disappears(store, engine, tree):
    run(store, engine, tree)
    (tree / "sub" / "c.py").unlink()
    summary = run(store, engine, tree)
    assert summary.removed == 1
    assert summary.chunks_removed >= 1
    assert {row[0] for row in index_state(store)} == {"a.md", "b.txt"}
    assert store.maintenance.integrity_check() == "ok"


def test_copy_in_another_folder_is_not_embedded_again(store, engine, tree):
    run(store, engine, tree)
    (tree / "vendor").mkdir()
    shutil.copy(tree / "a.md", tree / "vendor" / "a.md")
    summary = run(store, engine, tree)
    assert engine.calls == []
    assert summary.indexed == 1 and summary.chunks_reused == summary.chunks_added > 0


def test_identical_chunks_in_one_run_are_embedded_once(store, engine, tmp_path):
    root = tmp_path / "dups"
    for folder in ("x", "y", "z"):
        (root / folder).mkdir(parents=True)
        (root / folder / "same.md").write_text("# Same\n\nIdentical content in three places.\n")
    summary = run(store, engine, root)
    assert summary.indexed == 3
    assert len(engine.embedded) == len(set(engine.embedded)) == summary.chunks_added // 3


def test_file_turning_binary_loses_its_chunks(store, engine, tree):
    run(store, engine, tree)
    (tree / "b.txt").write_bytes(b"\x00\x00 now binary")
    summary = run(store, engine, tree)
    assert summary.skipped["binary"] == 2
    assert "b.txt" not in {row[0] for row in index_state(store)}


def test_several_roots_in_one_index(store, engine, tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.md").write_text("Oranges.\n")
    run(store, engine, tree, other)
    assert {root.path for root in store.files.roots()} == {str(tree.resolve()), str(other.resolve())}
    assert all(root.last_indexed_at for root in store.files.roots())


def test_stop_event_finishes_current_batch_and_keeps_it(store, engine, tree):
    indexer = Indexer(store, ModelHandle.from_embedder(engine), IndexOptions(chunk_tokens=128, overlap=8))
    indexer.stop.set()
    summary = indexer.run([tree])
    assert summary.interrupted
    assert store.maintenance.stats()["files"] == 0
    assert run(store, engine, tree).indexed == 3


def test_other_model_is_refused(store, engine, tree, tmp_path):
    run(store, engine, tree)
    other_model = write_tiny_qwen3(tmp_path / "other.gguf", seed=7)
    other = load(other_model.path)
    try:
        with pytest.raises(IndexMismatch, match="rebuild"):
            run(store, other, tree)
    finally:
        other.close()


def test_other_dimension_is_refused(store, engine, tree):
    run(store, engine, tree)
    with pytest.raises(IndexMismatch, match="dims"):
        run(store, engine, tree, dims=32)


def test_mrl_index_stores_truncated_vectors(store, engine, tree):
    run(store, engine, tree, dims=32)
    assert store.meta.settings().dims == 32
    assert store.maintenance.integrity_check() == "ok"


def test_chunk_budget_larger_than_context_is_refused(store, tiny_model, tree):
    info = read_model_info(tiny_model.path)
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(ctx=64), gpu=None, offload_supported=False)
    with pytest.raises(EdgeEmbedError, match="chunks of 128 tokens are larger than the model context in use") as refused:
        Indexer(store, ModelHandle(info, plan, label=str(tiny_model.path)), IndexOptions(chunk_tokens=128))
    assert refused.value.param == "chunk_tokens"  # the CLI's words name --chunk-tokens (test_cli_index)


def test_unchanged_rerun_does_not_load_the_model(store, engine, tree, tiny_model):
    run(store, engine, tree)
    info = read_model_info(tiny_model.path)
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(ctx=2048), gpu=None, offload_supported=False)
    handle = ModelHandle(info, plan, label=str(tiny_model.path))
    summary = Indexer(store, handle, IndexOptions(chunk_tokens=128, overlap=8)).run([tree])
    assert summary.unchanged == 3
    assert not handle.loaded


def test_missing_root_is_a_clear_error(store, engine, tmp_path):
    with pytest.raises(EdgeEmbedError, match="no such folder"):
        run(store, engine, tmp_path / "nope")
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(EdgeEmbedError, match="not a folder"):
        run(store, engine, tmp_path / "file.txt")


def test_index_from_other_chunking_rules_is_refused(store, engine, tree, monkeypatch):
    run(store, engine, tree)
    monkeypatch.setattr("edge_embed.indexer.options.CHUNKER_VERSION", 2)
    with pytest.raises(IndexMismatch, match="chunking rules"):
        run(store, engine, tree)


class RecordingProgress:
    def __init__(self):
        self.events = []

    def root_started(self, root, total_files, total_bytes):
        self.events.append(("root", total_files, total_bytes))

    def file_done(self, relpath, size):
        self.events.append(("file", relpath, size))

    def embedded(self, texts, tokens):
        self.events.append(("embedded", texts, tokens))

    def estimated(self, estimate, slow_note):
        self.events.append(("estimated", estimate.files, estimate.tokens, slow_note))

    def warning(self, message):
        self.events.append(("warning", str(message)))  # in neutral words (a Phrase each face words)

    def close(self):
        pass


def test_progress_events_cover_every_file_and_decode(store, engine, tree):
    (tree / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    progress = RecordingProgress()
    engine.calls = []
    summary = Indexer(store, ModelHandle.from_embedder(engine), IndexOptions(chunk_tokens=128, overlap=8), progress=progress).run([tree])
    text_files = ["a.md", "b.txt", "latin1.txt", "sub/c.py"]
    assert progress.events[0] == ("root", 5, sum((tree / name).stat().st_size for name in text_files + ["image.bin"]))
    assert progress.events[1][:2] == ("estimated", 5) and progress.events[1][3] is None, "before any file"
    assert sorted(e[1] for e in progress.events if e[0] == "file") == text_files
    embedded = [e for e in progress.events if e[0] == "embedded"]
    assert sum(e[1] for e in embedded) == summary.texts_embedded
    assert sum(e[2] for e in embedded) == summary.tokens_embedded
    warnings = [e[1] for e in progress.events if e[0] == "warning"]
    assert warnings == ["latin1.txt: not valid UTF-8 or UTF-16, indexed with replacement characters"]
    assert summary.lossy == 1 and summary.skipped == {"binary": 1}


def test_tty_progress_line(monkeypatch, capsys):
    from edge_embed.cli.index import TtyProgress

    clock = iter([0.0, 0.0, 0.0, 0.0, 10.0])
    monkeypatch.setattr("edge_embed.cli.index.time.monotonic", lambda: next(clock))
    progress = TtyProgress()
    progress.root_started(Path("/notes"), 4, 4000)
    progress.embedded(3, 500)
    progress.file_done("a.md", 1000)
    line = capsys.readouterr().err.split("\r")[-1]  # click drops the ANSI erase when not a terminal
    assert line == "/notes: files 1/4 · chunks embedded 3 · 50 tok/s · ETA 30s"


def test_stop_during_embedding_keeps_finished_files_only(store, engine, tmp_path, tiny_model):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(12):
        (root / f"f{i:02d}.md").write_text(f"# File {i}\n\n" + f"paragraph {i} " * 40 + "\n")
    reference_db = tmp_path / "reference.db"
    with Store.open(reference_db) as reference:
        run(reference, engine, root)
        expected = index_state(reference)

    class StopAfterFirstDecode(RecordingProgress):
        def embedded(self, texts, tokens):
            indexer.stop.set()

    indexer = Indexer(store, ModelHandle.from_embedder(engine), IndexOptions(chunk_tokens=128, overlap=8),
                      progress=StopAfterFirstDecode())
    summary = indexer.run([root])
    assert summary.interrupted
    partial = index_state(store)
    assert 0 < summary.indexed < 12 and partial < expected
    assert store.maintenance.integrity_check() == "ok"
    run(store, engine, root)
    assert index_state(store) == expected


def test_index_instruct_updates_an_existing_index(store, engine, tree):
    run(store, engine, tree)
    run(store, engine, tree, instruction="Find the note")
    assert store.meta.settings().instruction == "Find the note"


def test_options_left_unset_keep_the_index_own_settings(store, engine, tree):
    """A library caller's IndexOptions() must not reset the query task or the chunking."""
    run(store, engine, tree, dims=32, instruction="Find the note")
    (tree / "b.txt").write_text("Bananas are green at first.\n")
    summary = Indexer(store, ModelHandle.from_embedder(engine), IndexOptions()).run([tree])
    assert summary.indexed == 1
    settings = store.meta.settings()
    assert (settings.instruction, settings.chunk_tokens, settings.overlap, settings.dims) == ("Find the note", 128, 8, 32)


def test_file_unreadable_for_now_keeps_its_chunks(store, engine, tree, monkeypatch):
    from edge_embed.indexer import walk as walk_module
    from edge_embed.files import Skip as FileSkip

    run(store, engine, tree)
    real_discover = walk_module.discover

    def discover_with_b_unreadable(root, **kwargs):
        for item in real_discover(root, **kwargs):
            yield FileSkip("b.txt", "unreadable", "permission denied") if getattr(item, "relpath", "") == "b.txt" else item

    monkeypatch.setattr(walk_module, "discover", discover_with_b_unreadable)
    summary = run(store, engine, tree)
    assert summary.skipped["unreadable"] == 1 and summary.removed == 0
    assert "b.txt" in {row[0] for row in index_state(store)}


def test_folder_unreadable_for_now_keeps_the_files_under_it(store, engine, tree, monkeypatch):
    from edge_embed.indexer import walk as walk_module
    from edge_embed.files import Skip as FileSkip

    run(store, engine, tree)
    real_discover = walk_module.discover

    def discover_with_sub_unreadable(root, **kwargs):
        for item in real_discover(root, **kwargs):
            if getattr(item, "relpath", "").startswith("sub/"):
                continue
            yield item
        yield FileSkip("sub", "unreadable", "permission denied")

    monkeypatch.setattr(walk_module, "discover", discover_with_sub_unreadable)
    summary = run(store, engine, tree)
    assert summary.removed == 0
    assert "sub/c.py" in {row[0] for row in index_state(store)}


def test_narrowed_run_adds_without_deleting_the_rest(store, engine, tree):
    run(store, engine, tree)
    (tree / "new.md").write_text("# New\n\nA fresh note.\n")
    summary = run(store, engine, tree, include=["new.md"])
    assert summary.indexed == 1 and summary.removed == 0
    assert {row[0] for row in index_state(store)} == {"a.md", "b.txt", "sub/c.py", "new.md"}
    (tree / "a.md").unlink()
    assert run(store, engine, tree, include=["*.md"]).removed == 1, "files gone from disk still go"


@pytest.mark.parametrize("second", ["sub", "."])
def test_overlapping_roots_are_refused(store, engine, tree, second):
    run(store, engine, tree)
    inner = tree / "sub" if second == "sub" else tree.parent
    with pytest.raises(EdgeEmbedError, match="indexed twice"):
        run(store, engine, inner)
    with pytest.raises(EdgeEmbedError, match="indexed twice"):
        run(store, engine, tree, tree / "sub")


class RecordedWarnings(NoProgress):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message) -> None:
        self.warnings.append(cli_text(message))  # as the CLI's display says it (a Phrase each face words)


def run_recording(store: Store, engine: CountingEmbedder, *roots: Path, **options) -> tuple[object, list[str]]:
    progress = RecordedWarnings()
    indexer = Indexer(
        store, ModelHandle.from_embedder(engine), IndexOptions(chunk_tokens=128, overlap=8, **options), progress=progress
    )
    return indexer.run(list(roots)), progress.warnings


def test_a_root_that_came_up_empty_keeps_its_files(store, engine, tree, tmp_path):
    """An unmounted drive leaves its mount point: an empty folder, not a deleted one."""
    run(store, engine, tree)
    before = index_state(store)
    shutil.move(tree, tmp_path / "unplugged")
    tree.mkdir()
    summary, warnings = run_recording(store, engine, tree)
    assert summary.removed == 0 and index_state(store) == before
    assert summary.kept == [KeptFolder(str(tree.resolve()), "empty", 3)]
    assert any("is empty" in w and f"`edge-embed remove {tree.resolve()}`" in w for w in warnings), warnings
    tree.rmdir()
    shutil.move(tmp_path / "unplugged", tree)
    assert run(store, engine, tree).unchanged == 3


def test_a_root_that_vanished_keeps_its_files_and_the_others_are_indexed(store, engine, tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.md").write_text("# Other\n\nOranges.\n")
    target = tmp_path / "drive" / "notes"
    target.parent.mkdir()
    shutil.move(tree, target)
    link = tmp_path / "link-to-drive"
    link.symlink_to(target, target_is_directory=True)
    run(store, engine, link, other)
    before = index_state(store)
    shutil.move(target.parent, tmp_path / "unplugged")  # the link now dangles
    (other / "o2.md").write_text("# Other two\n\nOlives.\n")
    summary, warnings = run_recording(store, engine, link, other)
    assert summary.kept == [KeptFolder(str(target), "missing", 3)]
    assert summary.removed == 0 and summary.indexed == 1 and summary.roots == [str(other)]
    assert index_state(store) >= before
    assert any("does not exist" in w for w in warnings), warnings


def test_links_leading_outside_are_skipped_with_a_note_unless_followed(store, engine, tree, tmp_path):
    """The attack: links to files elsewhere (and to a hidden file beside them) were indexed."""
    (tmp_path / "elsewhere.txt").write_text("OUTSIDE_SECRET=1\n")
    (tree / ".env").write_text("HIDDEN_SECRET=2\n")
    (tree / "link_out.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tree / "config.md").symlink_to(".env")
    summary, warnings = run_recording(store, engine, tree)
    texts = " ".join(row[0] for row in store._conn.execute("SELECT text FROM chunks").fetchall())
    assert "SECRET" not in texts
    assert summary.skipped["link-outside"] == 1 and summary.skipped["link-to-excluded"] == 1
    assert any("link_out.txt: link-outside" in w and "--follow-links" in w for w in warnings), warnings
    run(store, engine, tree, follow_links=True)
    texts = " ".join(row[0] for row in store._conn.execute("SELECT text FROM chunks").fetchall())
    assert "OUTSIDE_SECRET" in texts and "HIDDEN_SECRET" not in texts


def test_a_dangling_link_to_a_folder_keeps_the_files_under_it(store, engine, tree, tmp_path):
    drive = tmp_path / "drive"
    drive.mkdir()
    (drive / "far.md").write_text("# Far\n\nFigs on the far drive.\n")
    (tree / "usb").symlink_to(drive, target_is_directory=True)
    run(store, engine, tree, follow_links=True)  # a drive outside the folder: followed when asked
    assert "usb/far.md" in {row[0] for row in index_state(store)}
    shutil.move(drive, tmp_path / "unplugged")
    summary, warnings = run_recording(store, engine, tree, follow_links=True)
    assert summary.removed == 0 and "usb/far.md" in {row[0] for row in index_state(store)}
    assert summary.kept == [KeptFolder(str(tree.resolve() / "usb"), "dangling-symlink", 1)]
    assert any("delete the link" in w for w in warnings), warnings
    (tree / "usb").unlink()  # what the warning says: now it is gone for good
    assert run(store, engine, tree).removed == 1


def test_html_chunks_report_the_lines_of_the_file(store, engine, tmp_path):
    """`path:line` must open the right line: the file's, not the extracted text's."""
    site = tmp_path / "site"
    site.mkdir()
    lines = ["<html><head>", "<style>p { color: red }</style></head><body>"] + ["<!-- -->"] * 12 + ["</body></html>"]
    words = {3: "alpha", 10: "beta", 14: "gamma"}
    for number, word in words.items():
        lines[number - 1] = f"<p>{' '.join([word] * 40)}</p>"
    (site / "page.html").write_text("\n".join(lines) + "\n")
    run(store, engine, site)
    rows = store._conn.execute("SELECT start_line, end_line, text FROM chunks").fetchall()
    assert {start for start, _, _ in rows} == set(words)
    for start, end, text in rows:
        assert start == end and text.split()[0] == words[start]


def test_only_the_storage_module_calls_the_store():
    """Every Store call of the indexer goes through indexer/storage.py, so a change of the
    store's interface (issue 16 splits it into parts) is one module's edit."""
    import ast

    package = Path(__file__).resolve().parent.parent / "edge_embed" / "indexer"
    calls = {}
    for path in sorted(package.glob("*.py")):
        if path.name == "storage.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        through_store = [
            f"{path.name}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and getattr(node.value, "attr", getattr(node.value, "id", None)) == "store"
        ]
        if through_store:
            calls[path.name] = through_store
    assert calls == {}
