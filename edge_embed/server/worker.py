"""One engine thread that every request shares: rounds bounded by tokens, small first.

llama.cpp contexts are not thread-safe, and a decode of 16 short texts costs about what
a decode of one costs. So the server runs the model in ONE thread fed by a queue, and
embeds what queued up together, in shared decodes: sixteen clients sending one text each
cost about one batch, not sixteen.

The unit of waiting is the engine *round*: one call into llama.cpp that nothing can
interrupt. A round holds at most one decode's worth of tokens (``plan.n_batch``), so a
request never waits for more than the round in progress plus its own. Waiting requests
are two lines:

* *interactive*: search queries (``as_query``), small requests (at most a quarter of a
  round's tokens) and reranks: what a person or an agent is waiting for;
* *bulk*: everything else (indexing, a client embedding 64 chunks at once), cut into
  round-sized pieces, oldest request first.

When both lines wait, rounds alternate between them: a query arriving behind bulk work
waits at most the round in progress, and a stream of queries still leaves every other
round to the bulk work, so neither starves.

The models load on the first job (or at start with ``preload``) and are unloaded after
``keep_alive`` seconds without a job, so the VRAM goes back to other programs; the next
job loads them again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_embed.errors import EdgeEmbedError

if TYPE_CHECKING:
    import numpy as np

    from edge_embed.api import TextEmbedder
    from edge_embed.runtime.engine import Embedder

log = logging.getLogger("edge_embed")

STOP_WAIT_S = 30.0  # how long stop() waits for the engine thread to finish its round
SMALL_SHARE = 4  # a request of at most 1/SMALL_SHARE of a round's tokens is interactive


class InputRejected(EdgeEmbedError):
    """One request's input cannot be embedded (too long, token id out of range): a 400."""

    param = "input"


@dataclass
class EmbedResult:
    vectors: np.ndarray  # (n, dims), unit length
    prompt_tokens: int  # tokens the model read, special tokens included
    load_s: float = 0.0  # seconds spent loading the model for this request (0: it was warm)


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


@dataclass
class CallJob:
    """Other work for the engine thread (a rerank): ``run()`` there, its result or error
    into ``future``; it keeps the models warm like an embedding does."""

    run: Callable[[], Any]
    future: Future = field(default_factory=Future)


@dataclass
class _Pending:
    """An accepted EmbedJob: its model inputs, and its rows as rounds embed them."""

    job: EmbedJob
    inputs: list[list[int]]
    vectors: np.ndarray  # (n, native), filled piece by piece
    load_s: float
    scheduled: int = 0  # inputs handed to rounds so far
    embedded: int = 0  # inputs whose rows are in ``vectors``
    dropped: bool = False  # failed or cancelled: its inputs no longer count as waiting

    @property
    def settled(self) -> bool:
        """Answered, failed or cancelled by its client: nothing more to do for it."""
        return self.job.future.done()


Piece = tuple[_Pending, int, int]  # (request, first input, end) embedded in one round


def settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Answer a future unless its client cancelled it (it stays PENDING until now, so a
    client that went away stops costing rounds)."""
    if future.done() or not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class EngineWorker:
    """The single thread that owns the models; ``submit`` / ``call`` from any thread."""

    def __init__(
        self, embedder: TextEmbedder, keep_alive_s: float | None = 600.0, on_unload: Callable[[], None] | None = None
    ) -> None:
        self.embedder = embedder
        self.keep_alive_s = keep_alive_s  # None: never unload
        self.on_unload = on_unload  # what else to free when idle (the rerankers)
        self._queue: queue.Queue[EmbedJob | CallJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="edge-embed-engine", daemon=True)
        self._interactive: deque[_Pending | CallJob] = deque()
        self._bulk: deque[_Pending] = deque()
        self._last_was_interactive = False
        self._holding = False  # something ran since the last unload: unload after keep_alive idle
        self._waiting_inputs = 0
        self.loads = 0  # how often the model was loaded (tests and /health)
        self.rounds = 0  # engine rounds run and the inputs they embedded, for /health:
        self.inputs = 0  # inputs / rounds says how well concurrent requests are packed

    # ------------------------------------------------------------------ control
    def start(self, preload: bool = False) -> None:
        if preload:
            self._load()
            self._holding = True
        self._thread.start()

    def stop(self, timeout_s: float = STOP_WAIT_S) -> bool:
        """Finish what was submitted, then free the models; False when a decode still runs
        after ``timeout_s`` (a CPU round can take longer): it keeps its model, as freeing it
        under llama.cpp would crash the process, and the process is ending anyway."""
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.warning("the engine is still decoding after %.0f s: its model is left to the process's end", timeout_s)
            return False
        self.embedder.close()
        if self.on_unload is not None:
            self.on_unload()
        return True

    @property
    def queue_depth(self) -> int:
        """Inputs waiting or being embedded now."""
        return self._queue.qsize() + self._waiting_inputs

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

    def call(self, run: Callable[[], Any]) -> Future:
        """``run()`` on the engine thread, in the interactive line (a rerank)."""
        job = CallJob(run)
        self._queue.put(job)
        return job.future

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        stopping = False
        while True:
            if not (self._interactive or self._bulk):
                if stopping:
                    return
                try:
                    item = self._queue.get(timeout=self.keep_alive_s if self._holding else None)
                except queue.Empty:
                    self._unload()
                    continue
                stopping = self._accept(item) or stopping
            stopping = self._accept_queued() or stopping
            self._next_round()

    def _accept_queued(self) -> bool:
        """Take in everything queued meanwhile; True when a stop was among it."""
        stopping = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return stopping
            stopping = self._accept(item) or stopping

    def _accept(self, item: EmbedJob | CallJob | None) -> bool:
        """Put a job in its line (EmbedJobs tokenized and checked first); True for stop."""
        if item is None:
            return True
        if isinstance(item, CallJob):
            self._interactive.append(item)
            return False
        import numpy as np

        try:
            loaded_before = self.loaded
            started = time.perf_counter()
            engine = self._load()
            load_s = 0.0 if loaded_before else time.perf_counter() - started
            inputs = self._inputs(engine, item)
        except EdgeEmbedError as exc:
            settle(item.future, error=exc)
            return False
        except BaseException as exc:  # a load failure fails this job, not the thread
            log.warning("engine failed: %s", exc)
            settle(item.future, error=exc)
            return False
        pending = _Pending(item, inputs, np.empty((len(inputs), engine.native_dim), dtype=np.float32), load_s)
        tokens = sum(len(tokens) for tokens in inputs)
        small = tokens <= max(engine.plan.n_batch // SMALL_SHARE, 1)
        (self._interactive if item.as_query or small else self._bulk).append(pending)
        self._waiting_inputs += len(inputs)
        return False

    def _next_round(self) -> None:
        """One round: the interactive line's turn, unless it had the last one and bulk waits."""
        interactive_turn = bool(self._interactive) and not (self._bulk and self._last_was_interactive)
        self._last_was_interactive = interactive_turn
        line = self._interactive if interactive_turn else self._bulk
        if not line:  # the job just accepted failed (its model did not load): nothing to run
            return
        if isinstance(line[0], CallJob):
            self._call(line.popleft())
            return
        self._embed_pieces(self._take(line, self.embedder.engine().plan.n_batch))  # loaded when accepted

    def _take(self, line: deque, budget: int) -> list[Piece]:
        """Inputs from the head of ``line``, oldest request first, up to ``budget`` tokens
        (at least one input); a request that does not fit whole stays at the head."""
        pieces: list[Piece] = []
        used = 0
        while line and not isinstance(line[0], CallJob):
            pending = line[0]
            if pending.settled:
                line.popleft()
                self._drop(pending)
                continue
            start = end = pending.scheduled
            while end < len(pending.inputs) and (used == 0 or used + len(pending.inputs[end]) <= budget):
                used += len(pending.inputs[end])
                end += 1
            if end > start:
                pieces.append((pending, start, end))
                pending.scheduled = end
            if end < len(pending.inputs):
                break
            line.popleft()
        return pieces

    def _embed_pieces(self, pieces: list[Piece]) -> None:
        """One engine round over ``pieces``; each request is answered when its last row is in."""
        if not pieces:
            return
        from edge_embed.runtime.engine import truncate_and_normalize

        inputs = [tokens for pending, start, end in pieces for tokens in pending.inputs[start:end]]
        try:
            vectors = self.embedder.engine().embed_inputs_raw(inputs)  # each job cuts and normalises its own rows
        except BaseException as exc:  # a decode failure fails these requests, not the thread
            log.warning("engine round failed: %s", exc)
            for pending, _, _ in pieces:
                self._drop(pending)
                settle(pending.job.future, error=exc)
            return
        finally:
            self._holding = True
        self.rounds += 1
        self.inputs += len(inputs)
        row = 0
        for pending, start, end in pieces:
            pending.vectors[start:end] = vectors[row : row + end - start]
            row += end - start
            pending.embedded += end - start
            self._waiting_inputs -= end - start
            if pending.embedded == len(pending.inputs):
                tokens = sum(len(tokens) for tokens in pending.inputs)
                dims = pending.job.dims or pending.vectors.shape[1]
                result = EmbedResult(truncate_and_normalize(pending.vectors, dims), tokens, pending.load_s)
                settle(pending.job.future, result)

    def _drop(self, pending: _Pending) -> None:
        """A request that will not be finished (failed, or its client went away)."""
        if not pending.dropped:
            pending.dropped = True
            self._waiting_inputs -= len(pending.inputs) - pending.embedded

    def _call(self, job: CallJob) -> None:
        try:
            result = job.run()
        except BaseException as exc:
            settle(job.future, error=exc)
        else:
            settle(job.future, result)
        finally:
            self._holding = True

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
        """Client token ids: in the vocabulary; kept as they are when the client already
        put the model's special tokens around them, wrapped otherwise."""
        vocab = engine.vocab_size
        bad = next((token for token in ids if not 0 <= token < vocab), None)
        if bad is not None:
            raise InputRejected(f"input[{i}] has token id {bad}, outside this model's vocabulary (0..{vocab - 1})")
        if engine.is_wrapped(ids):
            return EngineWorker._checked_length(engine, ids, i, wrapped=True)
        return EngineWorker._checked_length(engine, ids, i)

    @staticmethod
    def _checked_length(engine: Embedder, body: list[int], i: int, *, wrapped: bool = False) -> list[int]:
        limit = engine.max_tokens - (0 if wrapped else engine.special_token_count)
        if len(body) > limit:
            raise InputRejected(
                f"input[{i}] is too large: {len(body)} tokens, more than the {limit} this server embeds at once "
                "(its context)", hint="split the text, or start the server with a larger {ctx}",
            )
        return list(body) if wrapped else engine.wrap_tokens(body)

    def _load(self) -> Embedder:
        if not self.loaded:
            started = time.perf_counter()
            engine = self.embedder.engine()
            self.loads += 1
            log.info("loaded %s in %.1fs", self.embedder.name, time.perf_counter() - started)
            return engine
        return self.embedder.engine()

    def _unload(self) -> None:
        self._holding = False
        if self.loaded:
            self.embedder.close()
            log.info("unloaded %s after %.0fs idle", self.embedder.name, self.keep_alive_s or 0)
        if self.on_unload is not None:
            self.on_unload()
