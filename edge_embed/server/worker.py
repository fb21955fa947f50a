"""One engine thread that every request shares, packing concurrent requests together.

llama.cpp contexts are not thread-safe, and a decode of 16 short texts costs about what
a decode of one costs. So the server runs the model in ONE thread fed by a queue: while a
decode runs, new requests wait in the queue; the next round takes *all* of them and
embeds them in the same decodes (``Embedder.embed_inputs`` packs by tokens). Sixteen
clients sending one text each then cost about one batch, not sixteen.

The model loads on the first job (or at start with ``preload``) and is unloaded after
``keep_alive`` seconds without a job, so the VRAM goes back to other programs; the next
job loads it again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge_embed.errors import EdgeEmbedError

if TYPE_CHECKING:
    import numpy as np

    from edge_embed.api import TextEmbedder
    from edge_embed.runtime.engine import Embedder

log = logging.getLogger("edge_embed")

MAX_ROUND_INPUTS = 4096  # inputs gathered into one round: bounds the memory of one round


class InputRejected(EdgeEmbedError):
    """One request's input cannot be embedded (too long, token id out of range): a 400."""

    def __init__(self, message: str, param: str = "input") -> None:
        super().__init__(message)
        self.param = param


@dataclass
class EmbedResult:
    vectors: np.ndarray  # (n, dims), unit length
    prompt_tokens: int  # tokens the model read, special tokens included


@dataclass
class EmbedJob:
    """One request's inputs: texts (already query-formatted if wanted) or token ids."""

    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    dims: int | None = None
    as_query: bool = False
    instruct: str | None = None
    truncate: bool = False  # cut long inputs (search queries) instead of refusing them
    future: Future = field(default_factory=Future)

    @property
    def size(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or ())


class EngineWorker:
    """The single thread that owns the model; ``submit`` from any thread."""

    def __init__(
        self, embedder: TextEmbedder, keep_alive_s: float | None = 600.0, on_unload: Callable[[], None] | None = None
    ) -> None:
        self.embedder = embedder
        self.keep_alive_s = keep_alive_s  # None: never unload
        self.on_unload = on_unload  # what else to free when idle (the rerankers)
        self._queue: queue.Queue[EmbedJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="edge-embed-engine", daemon=True)
        self._busy = 0
        self.loads = 0  # how often the model was loaded (tests and /health)
        self.rounds = 0  # engine rounds run and the inputs they embedded, for /health:
        self.inputs = 0  # inputs / rounds says how well concurrent requests are packed

    # ------------------------------------------------------------------ control
    def start(self, preload: bool = False) -> None:
        if preload:
            self._load()
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.embedder.close()

    @property
    def queue_depth(self) -> int:
        """Inputs waiting or being embedded now."""
        return self._queue.qsize() + self._busy

    @property
    def loaded(self) -> bool:
        return self.embedder.loaded

    # ------------------------------------------------------------------ use
    def submit(self, job: EmbedJob) -> Future:
        self._queue.put(job)
        return job.future

    def embed(self, job: EmbedJob, timeout: float | None = None) -> EmbedResult:
        """submit + wait: for callers on a thread of their own (search)."""
        return self.submit(job).result(timeout)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            timeout = self.keep_alive_s if self.loaded and self.keep_alive_s is not None else None
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._unload()
                continue
            jobs, stopping = self._gather(first)
            self._round([job for job in jobs if job.future.set_running_or_notify_cancel()])
            if stopping:
                return

    def _gather(self, first: EmbedJob | None) -> tuple[list[EmbedJob], bool]:
        """The first job and every job that queued up meanwhile (None = stop)."""
        jobs: list[EmbedJob] = []
        item = first
        count = 0
        while True:
            if item is None:
                return jobs, True
            jobs.append(item)
            count += item.size
            if count >= MAX_ROUND_INPUTS:
                return jobs, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return jobs, False

    def _round(self, jobs: list[EmbedJob]) -> None:
        """Tokenize every job, embed all inputs in shared decodes, hand each its rows."""
        if not jobs:
            return
        self._busy = sum(job.size for job in jobs)
        try:
            engine = self._load()
            inputs: list[list[int]] = []
            spans: list[tuple[EmbedJob, int, int]] = []
            for job in jobs:
                try:
                    job_inputs = self._inputs(engine, job)
                except EdgeEmbedError as exc:
                    job.future.set_exception(exc)
                    continue
                spans.append((job, len(inputs), len(inputs) + len(job_inputs)))
                inputs.extend(job_inputs)
            if spans:
                self._embed_spans(engine, inputs, spans)
        except BaseException as exc:  # a load or decode failure fails this round, not the thread
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            log.warning("engine round failed: %s", exc)
        finally:
            self._busy = 0

    def _embed_spans(self, engine: Embedder, inputs: list[list[int]], spans: list[tuple[EmbedJob, int, int]]) -> None:
        from edge_embed.runtime.engine import truncate_and_normalize

        vectors = engine.embed_inputs_raw(inputs)  # each job cuts and normalises its own rows
        self.rounds += 1
        self.inputs += len(inputs)
        for job, start, end in spans:
            tokens = sum(len(tokens) for tokens in inputs[start:end])
            rows = truncate_and_normalize(vectors[start:end], job.dims or engine.native_dim)
            job.future.set_result(EmbedResult(rows, tokens))

    def _inputs(self, engine: Embedder, job: EmbedJob) -> list[list[int]]:
        """The model inputs of one job; refuses what is too long or out of the vocabulary."""
        if job.token_ids is not None:
            return [self._checked_ids(engine, ids, i) for i, ids in enumerate(job.token_ids)]
        texts = job.texts or []
        if job.as_query:
            texts = [engine.format_query(text, job.instruct) for text in texts]
        if job.truncate:
            return [engine.input_tokens(text) for text in texts]
        return [self._checked_length(engine, engine.tokenize(text), i) for i, text in enumerate(texts)]

    @staticmethod
    def _checked_ids(engine: Embedder, ids: list[int], i: int) -> list[int]:
        vocab = engine.vocab_size
        bad = next((token for token in ids if not 0 <= token < vocab), None)
        if bad is not None:
            raise InputRejected(f"input[{i}] has token id {bad}, outside this model's vocabulary (0..{vocab - 1})")
        return EngineWorker._checked_length(engine, ids, i)

    @staticmethod
    def _checked_length(engine: Embedder, body: list[int], i: int) -> list[int]:
        limit = engine.max_tokens - engine.special_token_count
        if len(body) > limit:
            raise InputRejected(
                f"input[{i}] has {len(body)} tokens, more than the {limit} this server embeds at once "
                "(its context); split the text or start the server with a larger --ctx"
            )
        return engine.wrap_tokens(body)

    def _load(self) -> Embedder:
        if not self.loaded:
            started = time.perf_counter()
            engine = self.embedder.engine()
            self.loads += 1
            log.info("loaded %s in %.1fs", self.embedder.name, time.perf_counter() - started)
            return engine
        return self.embedder.engine()

    def _unload(self) -> None:
        if self.loaded:
            self.embedder.close()
            if self.on_unload is not None:
                self.on_unload()
            log.info("unloaded %s after %.0fs idle", self.embedder.name, self.keep_alive_s or 0)
