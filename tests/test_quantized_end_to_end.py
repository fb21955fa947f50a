"""A quantized model end to end, in child processes: a crash in llama.cpp fails a test.

Quantized weights are what reach llama.cpp's repacked and AMX kernels, which crash some
VMs (SIGSEGV/SIGILL in the first decode). In-process, such a crash kills pytest itself;
here the commands a user runs first (embed, index, query) each run in a child, so a
signal shows as a failed test naming it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_embed.testing import TinyModel, write_tiny_qwen3_quantized

TIMEOUT_S = 180


@pytest.fixture(scope="module")
def tiny_q8(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_qwen3_quantized(tmp_path_factory.mktemp("models") / "tiny-q8_0.gguf")


def edge_embed(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "edge_embed", *args], capture_output=True, text=True, timeout=TIMEOUT_S, env=env
    )
    if done.returncode < 0:
        pytest.fail(f"edge-embed {args[0]} died of {signal.Signals(-done.returncode).name}: {done.stderr[-2000:]}")
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = dict(os.environ, EDGE_EMBED_DB=str(tmp_path / "index.db"), HF_HUB_OFFLINE="1", EDGE_EMBED_CPU="1")
    environment.pop("EDGE_EMBED_MODEL", None)
    return environment


def test_embed_with_a_quantized_model(tiny_q8: TinyModel, env: dict[str, str]) -> None:
    [vector] = json.loads(edge_embed("embed", "--model", str(tiny_q8.path), "--threads", "1", "hi", env=env).stdout)
    assert len(vector) == tiny_q8.config.n_embd
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-4


def test_index_and_query_with_a_quantized_model(tiny_q8: TinyModel, env: dict[str, str], tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keys.md").write_text("# Keys\n\nRotate the API keys every month with the vault tool.\n")
    (notes / "garden.md").write_text("# Garden\n\nWater the tomatoes in the morning.\n")
    summary = json.loads(
        edge_embed("index", str(notes), "--model", str(tiny_q8.path), "--threads", "1", "--json", env=env).stdout
    )
    assert summary["indexed"] == 2 and summary["texts_embedded"] >= 2
    answer = json.loads(edge_embed("query", "rotate the API keys", "--json", "--no-server", env=env).stdout)
    assert answer["results"][0]["path"].endswith("keys.md")
