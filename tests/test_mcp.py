"""The MCP tools through the official `mcp` SDK's client: over stdio and over HTTP (/mcp)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from serving import CPU, running_server

from edge_embed.api import Index
from edge_embed.api import IndexRequest

NOTES = {"keys.md": "# Keys\nRotate the API keys every ninety days.\nline three\nline four", "pets.txt": "The cat sat."}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model) -> Path:
    base = tmp_path_factory.mktemp("mcp")
    shutil.copy(tiny_model.path, base / "model.gguf")
    notes = base / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text, encoding="utf-8")
    (base / "secret.txt").write_text("outside", encoding="utf-8")
    with Index.open(base / "index.db", CPU) as index:
        index.index([notes], IndexRequest(chunk_tokens=128, overlap=0), model=str(base / "model.gguf"))
    (notes / "escape.txt").symlink_to(base / "secret.txt")  # after indexing: a link planted later
    (notes / ".env").write_text("TOKEN=outside", encoding="utf-8")  # inside the folder, never indexed (hidden)
    return base


def text_of(result) -> str:
    assert not result.is_error, result
    return "".join(block.text for block in result.content if getattr(block, "text", None))


async def exercise(client: Client, base: Path) -> None:
    """What an agent does: list tools, search, read a hit, try to read outside."""
    tools = {tool.name for tool in (await client.list_tools()).tools}
    assert tools == {"search", "get", "status"}
    found = await client.call_tool("search", {"query": "rotate keys", "k": 5, "mode": "keyword"})
    hits = found.structured_content["result"] if found.structured_content else json.loads(text_of(found))
    assert hits[0]["path"] == str(base / "notes" / "keys.md") and hits[0]["lines"] == "1-4"
    assert {"path", "lines", "heading", "score", "text"} <= set(hits[0])
    not_pulled = await client.call_tool("search", {"query": "rotate keys", "mode": "keyword", "rerank": True})
    assert not_pulled.is_error, "rerank=True reaches the search: the reranker is not downloaded here"
    glob = await client.call_tool("search", {"query": "cat", "mode": "hybrid", "glob": ["*.txt"]})
    assert "pets.txt" in text_of(glob) and "keys.md" not in text_of(glob)
    lines = await client.call_tool("get", {"path": hits[0]["path"], "start_line": 2, "end_line": 3})
    assert text_of(lines) == "Rotate the API keys every ninety days.\nline three"
    status = await client.call_tool("status", {})
    assert str(base / "notes") in text_of(status)
    answer = status.structured_content or json.loads(text_of(status))
    assert set(answer) == set(cli_status(base)) and "space" in answer  # the same fields as `status --json`
    for outside in (
        str(base / "secret.txt"),
        str(base / "notes" / ".." / "secret.txt"),
        str(base / "notes" / "escape.txt"),
        str(base / "notes" / ".env"),
        "/etc/passwd",
        "notes/keys.md",
    ):
        refused = await client.call_tool("get", {"path": outside})
        assert refused.is_error, outside
        assert "outside" not in text_of_error(refused)


def cli_status(base: Path) -> dict:
    """`edge-embed status --json` of the index."""
    from click.testing import CliRunner

    from edge_embed.cli import cli

    result = CliRunner().invoke(cli, ["status", "--db", str(base / "index.db"), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def text_of_error(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def test_mcp_over_stdio(indexed, tmp_path):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "edge_embed", "mcp", "--db", str(indexed / "index.db")],
        env={**os.environ, "PYTHONPATH": str(ROOT), "EDGE_EMBED_CPU": "1", "HF_HUB_CACHE": str(tmp_path / "hub")},
    )

    async def main() -> None:
        async with Client(params) as client:
            await exercise(client, indexed)

    asyncio.run(asyncio.wait_for(main(), 120))


def test_mcp_over_http_on_serve(indexed, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with running_server(indexed / "index.db", None) as (url, _):

        async def main() -> None:
            async with Client(url + "/mcp") as client:
                await exercise(client, indexed)

        asyncio.run(asyncio.wait_for(main(), 120))


def test_agents_read_our_error_and_the_server_logs_one_line(indexed, tmp_path, monkeypatch, caplog):
    """A refused `get` or a bad `search` reaches the agent as our one-line message (not the
    SDK's bare "Error executing tool get"), and is logged without a traceback."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    caplog.set_level(logging.INFO)
    with running_server(indexed / "index.db", None) as (url, _):

        async def main() -> dict[str, str]:
            async with Client(url + "/mcp") as client:
                calls = {
                    "outside": ("get", {"path": "/etc/passwd"}),
                    "relative": ("get", {"path": "notes/keys.md"}),
                    "bad mode": ("search", {"query": "keys", "mode": "fuzzy"}),
                    "no lines": ("get", {"path": str(indexed / "notes" / "pets.txt"), "start_line": 50}),
                    "unknown in": ("search", {"query": "keys", "mode": "keyword", "in_paths": [str(indexed / "secret.txt")]}),
                    "in not a list": ("search", {"query": "keys", "mode": "keyword", "in_paths": str(indexed)}),
                    "bad k": ("search", {"query": "keys", "mode": "keyword", "k": 0, "in_paths": [str(indexed)]}),
                }
                answers = {}
                for name, (tool, arguments) in calls.items():
                    result = await client.call_tool(tool, arguments)
                    assert result.is_error, name
                    answers[name] = text_of_error(result)
                return answers

        answers = asyncio.run(asyncio.wait_for(main(), 120))
    assert "is not inside an indexed folder" in answers["outside"]
    assert "give an absolute path" in answers["relative"]
    assert "mode must be one of hybrid, vector, keyword" in answers["bad mode"]
    assert "no lines 50" in answers["no lines"]
    # the tool's own argument and tool, not the CLI's --in and `edge-embed status` (errors.py: hints are data)
    assert "in_paths takes files or folders of the index; call the status tool to list them" in answers["unknown in"]
    assert "--" not in answers["unknown in"] and "edge-embed" not in answers["unknown in"]
    # the search tool's argument names, not /v1/search's JSON field `in` whose parser it shares
    assert "in_paths" in answers["in not a list"] and "in must be" not in answers["in not a list"]
    assert "k must be an integer from 1 to 4096" in answers["bad k"]
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]
