"""Blending the reranker's verdict with the retrieval rank, and when reranking is on by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_embed.cli.wording import cli_text
from edge_embed.errors import ModelNotFound
from edge_embed.render import explain_line, format_hit, hit_from_record, hit_record
from edge_embed.rerank import RerankStep, blend, decide_rerank, rank_weight
from edge_embed.results import Hit, ListRank
from edge_embed.runtime import hardware
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.store import ChunkRecord
from edge_embed.testing.reranker import write_tiny_qwen3_reranker

RTX_3060 = "NVIDIA GeForce RTX 3060:12288:11200"


def hit(chunk_id: int, text: str, score: float = 0.03) -> Hit:
    chunk = ChunkRecord(chunk_id, "/r", f"/r/{chunk_id}.md", f"{chunk_id}.md", 1, 1, None, text)
    return Hit(chunk, score, ListRank(chunk_id, 0.5), None)


@pytest.mark.parametrize(("rank", "weight"), [(1, 0.75), (3, 0.75), (4, 0.60), (10, 0.60), (11, 0.40), (40, 0.40)])
def test_the_weight_on_the_rank_is_qmds(rank: int, weight: float) -> None:
    assert rank_weight(rank) == weight


def test_blend_is_weighted_inverse_rank_plus_reranker_score() -> None:
    info = blend(4, 0.9)
    assert info.blended == pytest.approx(0.60 * 0.25 + 0.40 * 0.9)
    assert (info.rank, info.weight, info.rerank_score, info.position_score) == (4, 0.60, 0.9, 0.25)


def test_the_step_reorders_by_the_blend_and_keeps_the_retrieval_order_on_ties() -> None:
    """#1 with a poor verdict stays above #2 with a poor one; #5 with a strong one climbs to #2."""
    verdicts = {"a": 0.1, "b": 0.1, "c": 0.0, "d": 0.0, "e": 0.99}
    hits = [hit(i, text) for i, text in enumerate("abcde", 1)]
    seen = []

    def score(query: str, texts):
        seen.append((query, list(texts)))
        return [verdicts[text] for text in texts]

    reranked = RerankStep(score, top=5)("q", hits)
    assert seen == [("q", list("abcde"))]
    assert [h.chunk.text for h in reranked] == ["a", "e", "b", "c", "d"]
    assert [h.rerank.rank for h in reranked] == [1, 5, 2, 3, 4]
    assert all(h.score == h.rerank.blended for h in reranked)


def test_explain_and_json_carry_the_blend() -> None:
    [reranked] = RerankStep(lambda q, texts: [0.912], top=1)("q", [hit(1, "a")])
    line = explain_line(reranked, "hybrid")
    assert line.endswith("; rerank 0.912 at #1 -> 0.75 x 1/1 + 0.25 x 0.912 = 0.97800")
    assert "blended 0.978" in format_hit(reranked, "hybrid", None, cwd=Path("/"))[0]
    record = json.loads(json.dumps(hit_record(reranked, 1)))
    assert (record["rerank_score"], record["rank_before_rerank"], record["score"]) == (0.912, 1, pytest.approx(0.978))
    assert hit_from_record(record).rerank == reranked.rerank, "a server's reranked hit renders like a local one"
    assert hit_record(hit(1, "a"), 1)["rerank_score"] is None


# --------------------------------------------------------------------------- the default
@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for name in ("EDGE_EMBED_FAKE_GPU", "EDGE_EMBED_CPU"):
        monkeypatch.delenv(name, raising=False)
    return cache


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", RTX_3060)
    monkeypatch.setattr(hardware, "build_supports_offload", lambda: True)


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_qwen3_reranker(tmp_path_factory.mktemp("models") / "tiny-reranker.gguf")


def test_default_is_on_when_the_reranker_fits_whole_on_the_gpu(hub, gpu, tiny_reranker) -> None:
    decision = decide_rerank(None, RuntimeSettings(), str(tiny_reranker.path))
    assert decision.on and decision.handle is not None
    assert cli_text(decision.reason).startswith("on: tiny-reranker.gguf fits whole on the GPU (NVIDIA GeForce RTX 3060)")


def test_default_is_off_on_the_cpu_and_says_how_to_turn_it_on(hub, tiny_reranker) -> None:
    decision = decide_rerank(None, RuntimeSettings(force_cpu=True), str(tiny_reranker.path))
    assert not decision.on
    assert cli_text(decision.reason) == (
        "off: tiny-reranker.gguf would run on the CPU (CPU forced (--cpu or EDGE_EMBED_CPU=1)); --rerank turns it on"
    )


def test_default_with_a_gpu_but_no_reranker_downloaded_names_the_pull(hub, gpu) -> None:
    decision = decide_rerank(None, RuntimeSettings())
    assert not decision.on
    assert "`edge-embed pull qwen3-reranker-0.6b` turns it on here" in cli_text(decision.reason)
    assert str(decision.reason) == "off: qwen3-reranker-0.6b is not downloaded; downloading qwen3-reranker-0.6b turns it on here"


def test_an_explicit_rerank_without_the_model_raises_with_the_pull_command(hub) -> None:
    with pytest.raises(ModelNotFound, match=r"download qwen3-reranker-0.6b"):
        decide_rerank(True, RuntimeSettings(force_cpu=True))
    off = decide_rerank(False, RuntimeSettings()).reason
    assert (cli_text(off), str(off)) == ("off (--no-rerank)", "off (rerank=False)")


def test_the_reranker_is_planned_in_the_memory_the_unloaded_embedder_leaves(hub, gpu, tiny_reranker, tiny_model, tmp_path) -> None:
    """Issue 16, defect 3: the reranker's plan was made from the same free-memory figure as
    the embedder's, before the embedder loaded: with 4-5 GiB free both planned "whole on
    the GPU" and together needed more. Now the embedder's expected VRAM is set aside."""
    import dataclasses

    from edge_embed.api import Index

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("rotate the keys\n")
    with Index.open(tmp_path / "x.db", RuntimeSettings(force_cpu=True)) as index:
        index.index([notes], model=str(tiny_model.path))
    with Index.open(tmp_path / "x.db", RuntimeSettings()) as index:
        handle = index.query_model().handle
        assert handle.plan.device == "cuda" and not handle.loaded
        alone = decide_rerank(None, RuntimeSettings(), str(tiny_reranker.path))
        assert alone.on, "the reranker alone fits"
        # The index's model will take all but 200 MiB of what is free (11200 MiB).
        handle.plan = dataclasses.replace(handle.plan, expected_vram=11000 << 20)
        decision = index.rerank_decision(None, str(tiny_reranker.path))
        assert not decision.on and "would run on the CPU" in str(decision.reason), decision.reason


def test_a_server_plans_its_reranker_around_the_engine_model_it_really_holds(hub, gpu, tiny_model, tmp_path) -> None:
    """The server's engine and its index share one model handle: its VRAM is set aside only
    while it is not loaded (loaded, the free memory already lacks it), never twice."""
    from edge_embed.api import Index
    from edge_embed.server.app import Service

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("rotate the keys\n")
    with Index.open(tmp_path / "x.db", RuntimeSettings(force_cpu=True)) as index:
        index.index([notes], model=str(tiny_model.path))
    service = Service.create(tmp_path / "x.db", None, RuntimeSettings(), None)
    try:
        assert service.index.query_model() is service.embedder
        planned = service.embedder.handle.plan.expected_vram
        assert service.index._embedder_vram_to_come() == planned > 0
        service.embedder.embed(["warm"])  # the engine loads the model
        assert service.index._embedder_vram_to_come() == 0
    finally:
        service.index.close()
