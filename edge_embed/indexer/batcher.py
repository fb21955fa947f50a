"""Prepared files to stored vectors: dedup against the index, decode-sized groups, writes.

Chunks are collected up to ``BATCH_CHUNKS`` before a flush. A flush looks the chunks'
embed-text hashes up in the index (dedup across the whole index and within the batch),
embeds the missing texts one decode's worth at a time, and writes each file in its own
transaction as soon as all its vectors exist.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Iterator

from edge_embed.indexer.preparer import Prepared
from edge_embed.indexer.storage import IndexStorage
from edge_embed.indexer.summary import Tally
from edge_embed.progress import Progress
from edge_embed.store import NewChunk

if TYPE_CHECKING:
    import numpy as np

    from edge_embed.runtime.loader import ModelHandle

# Chunks embedded per flush: big enough to fill the engine's batches (a few decodes), small
# enough that files complete (and the ETA appears) soon, an interrupt loses little work and
# memory stays flat.
BATCH_CHUNKS = 32


class EmbedBatcher:
    """Collects prepared files and embeds and writes them a batch at a time.

    ``add`` and ``flush`` return the ``Tally`` of what they wrote and embedded (empty when
    nothing was due). A stop is honoured between decodes: the files whose vectors all
    exist are written, the others are simply done again by the next run.
    """

    def __init__(self, model: ModelHandle, dims: int, storage: IndexStorage, progress: Progress, stop: threading.Event) -> None:
        self.model = model
        self.dims = dims
        self.storage = storage
        self.progress = progress
        self.stop = stop
        self._pending: list[Prepared] = []
        self._pending_chunks = 0

    def add(self, prepared: Prepared) -> Tally:
        """Queue a file; flush once the queue holds ``BATCH_CHUNKS`` chunks."""
        self._pending.append(prepared)
        self._pending_chunks += len(prepared.chunks)
        return self.flush() if self._pending_chunks >= BATCH_CHUNKS else Tally()

    def flush(self) -> Tally:
        """Embed what the queued files miss and write each file once its vectors exist.

        Embedding goes one decode's worth of texts at a time, in file order, writing the
        files that became complete after each: a Ctrl-C waits for one decode, not for the
        whole batch, and every finished file is kept.
        """
        waiting, self._pending, self._pending_chunks = self._pending, [], 0
        if not waiting:
            return Tally()
        wanted = embed_texts(waiting)
        vectors = self.storage.vectors_for(list(wanted))
        missing = [digest for digest in wanted if digest not in vectors]
        tally = Tally(chunks_reused=sum(len(item.hashes) for item in waiting) - len(missing))
        waiting, written = self._write_complete(waiting, vectors)
        tally += written
        for group in self._decode_groups(missing, wanted):
            if self.stop.is_set():
                break
            embedded, tally_of_decode = self._embed([wanted[digest] for digest in group])
            vectors.update(zip(group, embedded))
            waiting, written = self._write_complete(waiting, vectors)
            tally += tally_of_decode + written
        return tally

    def _decode_groups(self, digests: list[str], texts: dict[str, str]) -> Iterator[list[str]]:
        """Consecutive runs of texts that fill about one decode (the plan's packing budget)."""
        if not digests:
            return
        embedder = self.model.load()
        budget = self.model.plan.n_batch
        group: list[str] = []
        used = 0
        for digest in digests:
            tokens = embedder.count_tokens(texts[digest]) + embedder.special_token_count
            if group and used + tokens > budget:
                yield group
                group, used = [], 0
            group.append(digest)
            used += tokens
        if group:
            yield group

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, Tally]:
        """The texts' vectors (the index's dims), and what embedding them cost."""
        embedder = self.model.load()
        before = embedder.stats.tokens
        started = time.perf_counter()
        vectors = embedder.embed_documents(texts, dims=self.dims, on_decode=self.progress.embedded)
        cost = Tally(
            texts_embedded=len(texts),
            tokens_embedded=embedder.stats.tokens - before,
            embed_s=time.perf_counter() - started,
        )
        return vectors, cost

    def _write_complete(self, waiting: list[Prepared], vectors: dict[str, np.ndarray]) -> tuple[list[Prepared], Tally]:
        """Write the files whose every chunk has a vector; return the others, in order."""
        still_waiting = []
        tally = Tally()
        for prepared in waiting:
            if all(digest in vectors for digest in prepared.hashes):
                tally += self._write(prepared, vectors)
            else:
                still_waiting.append(prepared)
        return still_waiting, tally

    def _write(self, prepared: Prepared, vectors: dict[str, np.ndarray]) -> Tally:
        changes = self.storage.write(prepared.record, new_chunks(prepared, vectors))
        self.progress.file_done(prepared.record.relpath, prepared.record.size)
        return Tally(indexed=1, chunks_added=changes.inserted, chunks_kept=changes.kept)


def embed_texts(files: list[Prepared]) -> dict[str, str]:
    """Each distinct dedup key of the files' chunks and the text it stands for, in file order."""
    wanted: dict[str, str] = {}
    for item in files:
        for chunk, digest in zip(item.chunks, item.hashes):
            wanted.setdefault(digest, chunk.embed_text)
    return wanted


def new_chunks(prepared: Prepared, vectors: dict[str, np.ndarray]) -> list[NewChunk]:
    """The file's chunks as the store writes them, each with its vector."""
    return [
        NewChunk(
            seq=seq,
            start_line=chunk.start_line,
            end_line=chunk.end_line,
            heading=chunk.heading,
            text=chunk.text,
            text_hash=digest,
            vector=vectors[digest],
            page_start=chunk.page_start,
            page_end=chunk.page_end,
        )
        for seq, (chunk, digest) in enumerate(zip(prepared.chunks, prepared.hashes))
    ]
