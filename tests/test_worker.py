"""The engine thread's scheduling: rounds bounded by tokens, small and query requests
first, bulk requests never starved, cancelled requests dropped (the real engine, tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
from serving import CPU

from edge_embed.api import TextEmbedder
from edge_embed.server.worker import EmbedJob, EngineWorker

MIN_COSINE = 0.9999
BULK = [f"bulk text number {i} about rotating the API keys of a service" for i in range(64)]


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def worker(tiny_model):
    """A worker whose jobs are all queued before its thread starts: the order they are
    answered in is the scheduler's alone, not the timing of the test."""
    worker = EngineWorker(TextEmbedder.open(str(tiny_model.path), CPU), keep_alive_s=None)
    yield worker
    worker.stop()


def track(order: list[str], name: str, job: EmbedJob) -> EmbedJob:
    job.future.add_done_callback(lambda _: order.append(name))
    return job


def test_a_query_behind_bulk_work_is_answered_first_and_rounds_are_one_decode(worker, tiny_model):
    order: list[str] = []
    bulk = [worker.submit(track(order, f"bulk{i}", EmbedJob(texts=BULK))) for i in range(4)]
    query = worker.submit(track(order, "query", EmbedJob(texts=["rotate keys"], as_query=True)))
    small = worker.submit(track(order, "small", EmbedJob(texts=["one short text"])))
    worker.start()
    for future in (*bulk, query, small):
        future.result(timeout=120)
    assert order[:2] == ["query", "small"] and order[2:] == ["bulk0", "bulk1", "bulk2", "bulk3"]
    engine = worker.embedder.engine()
    budget = engine.plan.n_batch
    assert engine.stats.decodes == worker.rounds  # every round is one llama.cpp decode
    assert worker.rounds >= 4 * sum(len(engine.input_tokens(t)) for t in BULK) / budget  # bulk cut to the budget
    local = TextEmbedder.open(str(tiny_model.path), CPU)
    try:
        expected = local.embed(BULK)
        assert min(cosine(a, b) for a, b in zip(bulk[3].result().vectors, expected)) >= MIN_COSINE
        assert cosine(query.result().vectors[0], local.embed(["rotate keys"], input_type="query")[0]) >= MIN_COSINE
    finally:
        local.close()
    assert worker.queue_depth == 0


def test_a_stream_of_small_requests_does_not_starve_bulk_work(worker):
    order: list[str] = []
    bulk = worker.submit(track(order, "bulk", EmbedJob(texts=BULK[:16])))  # ~4 rounds
    smalls = [  # ~8 rounds of small requests, all waiting at once
        worker.submit(track(order, f"small{i}", EmbedJob(texts=[f"small request {i} word word"])))
        for i in range(100)
    ]
    worker.start()
    for future in (bulk, *smalls):
        future.result(timeout=120)
    assert order[0].startswith("small")  # the small ones go first...
    assert order.index("bulk") < len(order) - 1  # ...but the bulk job is done before the last of them
    assert worker.rounds > 2


def test_a_cancelled_request_costs_no_rounds(worker):
    gone = worker.submit(EmbedJob(texts=BULK))
    assert gone.cancel()  # its client went away before the engine reached it
    kept = worker.submit(EmbedJob(texts=["still wanted"]))
    worker.start()
    assert kept.result(timeout=120).vectors.shape[0] == 1
    assert worker.inputs == 1 and worker.queue_depth == 0


def test_stop_never_frees_a_model_a_decode_still_uses(tiny_model, monkeypatch):
    """Issue 16, defect 4: stop() freed the model after 30 s even while a decode ran (a CPU
    round of 4,096 inputs can take longer): llama.cpp then reads freed memory."""
    import threading
    import time

    embedder = TextEmbedder.open(str(tiny_model.path), CPU)
    engine = embedder.handle.load()
    decoding, release = threading.Event(), threading.Event()
    real = engine.embed_inputs_raw

    def slow_round(*args, **kwargs):
        decoding.set()
        release.wait(10)  # a long decode, as on a slow CPU
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "embed_inputs_raw", slow_round)
    worker = EngineWorker(embedder, keep_alive_s=None)
    worker.start()
    job = EmbedJob(texts=["a round that outlives stop()'s wait"])
    worker.submit(job)
    assert decoding.wait(10)
    worker.stop(timeout_s=0.2)
    assert embedder.loaded, "the model a decode still uses was freed"
    release.set()
    assert len(job.future.result(timeout=10).vectors) == 1
    time.sleep(0.1)
    embedder.close()
