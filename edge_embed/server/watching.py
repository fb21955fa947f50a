"""`serve --watch`: the index's watcher inside the server, sharing the server's engine.

One model, one engine thread: the watcher does not load a model of its own. It counts
tokens with the engine's vocabulary (``TextEmbedder.pinned``: the engine thread cannot
unload the model meanwhile) and sends what it must embed to the engine thread as
ordinary bulk jobs, one decode's worth at a time (the indexer's groups), so searches
queue between them instead of behind a whole burst.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge_embed.errors import EdgeEmbedError
from edge_embed.runtime.engine import EmbedStats, OnDecode
from edge_embed.server.worker import EmbedJob, EngineWorker

if TYPE_CHECKING:
    import numpy as np

    from edge_embed.api import Index
    from edge_embed.watch import WatchSettings

log = logging.getLogger("edge_embed")
WATCHER_STOP_WAIT_S = 60.0  # how long the end of serving waits for the watcher to finish its file


@dataclass
class WorkerEmbedder:
    """Quacks like ``Embedder`` for the indexer; vectors come from the engine thread."""

    worker: EngineWorker
    stats: EmbedStats = field(default_factory=EmbedStats)

    def count_tokens(self, text: str) -> int:
        with self.worker.embedder.pinned() as engine:
            return engine.count_tokens(text)

    @property
    def special_token_count(self) -> int:
        with self.worker.embedder.pinned() as engine:
            return engine.special_token_count

    def embed_documents(self, texts: Sequence[str], dims: int | None = None, on_decode: OnDecode | None = None) -> np.ndarray:
        result = self.worker.embed(EmbedJob(texts=list(texts), dims=dims))
        self.stats.texts += len(texts)
        self.stats.tokens += result.prompt_tokens
        if on_decode is not None:
            on_decode(len(texts), result.prompt_tokens)
        return result.vectors


class WorkerHandle:
    """``ModelHandle``'s face over the server's engine, for the watcher's indexer.

    Loading and unloading stay the engine thread's (its keep-alive): ``close`` is a no-op.
    """

    def __init__(self, worker: EngineWorker) -> None:
        handle = worker.embedder.handle
        self.info, self.plan, self.label = handle.info, handle.plan, handle.label
        self._embedder = WorkerEmbedder(worker)
        self._model = handle

    @property
    def native_dim(self) -> int:
        return self._model.native_dim

    @property
    def max_tokens(self) -> int:
        return self._model.max_tokens

    def check_dims(self, dims: int | None) -> int:
        return self._model.check_dims(dims)

    def rate_key(self) -> str:
        return self._model.rate_key()

    def planned_tokens_per_s(self) -> float | None:
        return self._model.planned_tokens_per_s()

    def load(self) -> WorkerEmbedder:
        return self._embedder

    def close(self) -> None:
        pass


@dataclass
class ServerWatch:
    """The watcher thread of a running server."""

    thread: threading.Thread
    stop: threading.Event

    def close(self, timeout_s: float = WATCHER_STOP_WAIT_S) -> bool:
        """Stop the watcher; False when it is still at work after ``timeout_s`` (a long
        embed): it may still write to the index, which must then stay open."""
        self.stop.set()
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():
            log.warning("the watcher is still at work after %.0f s: the index stays open to the process's end", timeout_s)
            return False
        return True


def start_watching(index: Index, worker: EngineWorker, settings: WatchSettings) -> ServerWatch:
    """Watch every folder of ``index`` in a thread, embedding through ``worker``.

    The worker's model must be the index's (``serve`` checks): the watcher writes its vectors.
    """
    stop = threading.Event()

    def run() -> None:
        try:
            index.watch(settings=settings, stop=stop, handle=WorkerHandle(worker))
        except EdgeEmbedError as exc:  # another writer holds the index, no folders...
            log.error("not watching %s: %s", index.path, exc)
        except Exception:  # a bug: logged; the server goes on serving
            log.exception("the watcher of %s stopped", index.path)

    thread = threading.Thread(target=run, name="edge-embed-watcher", daemon=True)
    thread.start()
    return ServerWatch(thread, stop)
