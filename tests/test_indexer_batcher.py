"""The embed batcher with a fake model and a fake store: dedup, decode groups, writes, stop.

The batcher decides what is embedded and when a file is written; a fake embedder that
counts one token per word and records each decode shows those decisions exactly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from edge_embed.chunking import Chunk
from edge_embed.indexer.batcher import BATCH_CHUNKS, EmbedBatcher
from edge_embed.indexer.preparer import Prepared, text_hash
from edge_embed.progress import NoProgress
from edge_embed.store import ChunkChanges, FileRecord


class WordEmbedder:
    """One token per word (+1 special); each decode is recorded."""

    special_token_count = 1

    def __init__(self, on_decode_hook=None) -> None:
        self.decodes: list[list[str]] = []
        self.stats = SimpleNamespace(tokens=0)
        self.on_decode_hook = on_decode_hook

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed_documents(self, texts, dims=None, on_decode=None):
        self.decodes.append(list(texts))
        tokens = sum(self.count_tokens(text) + 1 for text in texts)
        self.stats.tokens += tokens
        on_decode(len(texts), tokens)
        if self.on_decode_hook:
            self.on_decode_hook()
        return np.ones((len(texts), dims), dtype=np.float32)


@dataclass
class FakeModel:
    embedder: WordEmbedder
    plan: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(n_batch=8))

    def load(self) -> WordEmbedder:
        return self.embedder


@dataclass
class FakeStorage:
    stored: dict[str, np.ndarray] = field(default_factory=dict)
    written: list[tuple[str, list[str]]] = field(default_factory=list)

    def vectors_for(self, hashes):
        return {digest: self.stored[digest] for digest in hashes if digest in self.stored}

    def write(self, record, chunks):
        self.written.append((record.relpath, [chunk.text for chunk in chunks]))
        return ChunkChanges(inserted=len(chunks))


def prepared(relpath: str, *texts: str) -> Prepared:
    chunks = tuple(Chunk(text, 1, 1, "", text) for text in texts)
    return Prepared(FileRecord(1, relpath, f"/r/{relpath}", 10, 1, f"h-{relpath}"), chunks, tuple(text_hash(t) for t in texts), False)


def batcher(storage: FakeStorage, embedder: WordEmbedder, stop: threading.Event | None = None) -> EmbedBatcher:
    return EmbedBatcher(FakeModel(embedder), 4, storage, NoProgress(), stop or threading.Event())


def test_a_text_in_the_index_or_twice_in_the_batch_is_embedded_once_or_not_at_all():
    storage = FakeStorage(stored={text_hash("known text"): np.zeros(4, dtype=np.float32)})
    embedder = WordEmbedder()
    queue = batcher(storage, embedder)
    queue.add(prepared("a.md", "known text", "new words"))
    queue.add(prepared("b.md", "new words"))
    tally = queue.flush()
    assert [text for decode in embedder.decodes for text in decode] == ["new words"]
    assert (tally.chunks_reused, tally.texts_embedded, tally.indexed, tally.chunks_added) == (2, 1, 2, 3)
    assert storage.written == [("a.md", ["known text", "new words"]), ("b.md", ["new words"])]


def test_decodes_are_filled_up_to_the_plans_budget_in_file_order():
    embedder = WordEmbedder()
    queue = batcher(FakeStorage(), embedder)
    queue.add(prepared("a.md", "one two three", "four five six", "seven"))  # 4 + 4 + 2 tokens, budget 8
    queue.flush()
    assert embedder.decodes == [["one two three", "four five six"], ["seven"]]


def test_a_file_is_written_once_all_its_vectors_exist_and_a_stop_keeps_those_written():
    stop = threading.Event()
    embedder = WordEmbedder(on_decode_hook=stop.set)
    storage = FakeStorage()
    queue = batcher(storage, embedder, stop)
    queue.add(prepared("first.md", "alpha beta gamma"))
    queue.add(prepared("second.md", "delta epsilon zeta", "eta theta iota"))
    tally = queue.flush()
    assert len(embedder.decodes) == 1, "the stop is honoured between decodes"
    assert storage.written == [("first.md", ["alpha beta gamma"])] and tally.indexed == 1


def test_the_queue_flushes_by_itself_once_full():
    embedder = WordEmbedder()
    storage = FakeStorage()
    queue = batcher(storage, embedder)
    assert queue.add(prepared("a.md", *[f"text {i}" for i in range(BATCH_CHUNKS - 1)])).indexed == 0
    assert storage.written == []
    assert queue.add(prepared("b.md", "the last one")).indexed == 2
    assert queue.flush().indexed == 0, "nothing left"
