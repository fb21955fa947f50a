"""A real `edge-embed serve` (uvicorn + the Starlette app) on 127.0.0.1, in a thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from edge_embed.api import TextEmbedder
from edge_embed.cli.serve import bind
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.server.app import Service, build_app
from edge_embed.server.discovery import ServerInfo, publish, withdraw
from edge_embed.watch import WatchSettings

CPU = RuntimeSettings(force_cpu=True, ctx=256)


@contextmanager
def running_server(
    db: Path | None,
    model: str | None,
    *,
    keep_alive_s: float | None = 600,
    api_key: str | None = None,
    cors: tuple[str, ...] = (),
    runtime: RuntimeSettings = CPU,
    discoverable: bool = False,
    strict_model: bool = False,
    reranker: str | None = None,
    watch: WatchSettings | None = None,
) -> Iterator[tuple[str, Service]]:
    """(base URL, service) of a server that stops when the block ends (``watch``: `serve --watch`)."""
    service = Service.create(db, model, runtime, keep_alive_s, reranker, strict_model)
    service.watch = watch
    app = build_app(service, api_key=api_key, cors=cors)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    info = ServerInfo("127.0.0.1", port, os.getpid(), str(service.index.path) if service.index else None, service.embedder.name)
    published = publish(info) if discoverable else None
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        if published is not None:
            withdraw(published, info.pid)
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def local(model_path) -> Iterator[TextEmbedder]:
    """The served model loaded in this process: what a server's answers must equal
    (``model_path``: the requesting test module's own fixture)."""
    embedder = TextEmbedder.open(str(model_path), CPU)
    yield embedder
    embedder.close()
