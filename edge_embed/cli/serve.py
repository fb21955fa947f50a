"""``edge-embed serve``: one warm engine for the CLI, Open WebUI, scripts and agents."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from typing import TYPE_CHECKING

import click

from edge_embed.cli.common import db_option, plain_logging, reranker_option, warnings_to_stderr
from edge_embed.cli.options import runtime_options, settings_from_options
from edge_embed.errors import EdgeEmbedError

if TYPE_CHECKING:
    from edge_embed.watch import WatchSettings

DEFAULT_PORT = 8377
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float | None:
    """'10m', '90s', '1h', '0' (unload at once); 'never' or '-1' keep the model forever."""
    if text.strip().lower() in ("never", "-1", "forever"):
        return None
    match = DURATION.match(text)
    if match is None:
        raise EdgeEmbedError(f"--keep-alive {text!r} is not a duration: use e.g. 30s, 10m, 1h, 0 or never")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback requires --api-key.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port (0 = any free port; the discovery file tells the CLI which).")
@db_option
@click.option("--api-key", envvar="EDGE_EMBED_API_KEY", show_envvar=True, default=None, metavar="KEY",
              help="Require 'Authorization: Bearer KEY' on every request.")
@click.option("--keep-alive", default="10m", show_default=True, metavar="DURATION",
              help="Unload the model (and the reranker) after this long without requests (30s, 10m, 1h, "
                   "0, never); the next request loads it again.")
@click.option("--preload", is_flag=True, help="Load the model at start instead of on the first request.")
@reranker_option
@click.option("--watch", "watch", is_flag=True,
              help="Keep the index current while serving, like `edge-embed watch` (sharing this "
                   "server's model: searches are answered first).")
@click.option("--strict-model", is_flag=True,
              help="Refuse (404) a request naming another model. By default any name is answered by the "
                   "served model, as llama-server does: clients send their own defaults "
                   "(text-embedding-3-small).")
@click.option("--cors", multiple=True, metavar="ORIGIN",
              help="Allow browser requests from ORIGIN, e.g. http://localhost:3000 (repeatable). "
                   "Other browser origins are refused.")
@runtime_options
def serve(host, port, db, api_key, keep_alive, preload, reranker, watch, strict_model, cors, **runtime) -> None:
    """Serve embeddings and search over HTTP from one warm model.

    \b
    Endpoints (OpenAPI document at /openapi.json):
      POST /v1/embeddings   OpenAI-compatible (Open WebUI, LangChain, the openai SDK)
      POST /v1/rerank       llama-server/Jina/Cohere reranking (Open WebUI's external reranker)
      POST /api/embed       Ollama's API too (/api/embeddings, /api/tags, /api/version)
      POST /v1/search       `edge-embed query` as JSON (answer: docs/query-json.md)
      GET  /v1/models, /v1/models/{id}, /health
      /mcp                  the MCP tools (search, get, status) over streamable HTTP

    \b
    Examples:
      edge-embed serve                                  index + default model on 127.0.0.1:8377
      edge-embed serve --model qwen3-embedding-0.6b     embeddings only, no index needed
      edge-embed serve --host 0.0.0.0 --api-key "$KEY"  for other machines (key required)
      edge-embed serve --watch                          and index what changes in its folders
      curl -s localhost:8377/v1/embeddings -d '{"input": ["hello"], "model": "qwen3-embedding-0.6b"}'
      curl -s localhost:8377/v1/rerank -d '{"query": "rotate keys", "documents": ["cats", "key rotation"]}'
      OLLAMA_HOST=127.0.0.1:8377 and any model name for Ollama clients (Open WebUI, AnythingLLM)

    While it runs, `edge-embed query` and `embed` on this machine use it (same output,
    no model loading); --no-server makes them work alone.
    """
    import uvicorn

    from edge_embed.server.app import Service, build_app
    from edge_embed.server.discovery import ServerInfo, publish, withdraw
    from edge_embed.server.limits import accept_backlog, connection_cap, guarded_protocol, raise_open_file_limit
    from edge_embed.server.security import is_loopback

    warnings_to_stderr()
    plain_logging()
    if not is_loopback(host) and not api_key:
        raise EdgeEmbedError(
            f"listening on {host} makes the server reachable from other machines: give --api-key KEY "
            "(or EDGE_EMBED_API_KEY)"
        )
    service = Service.create(
        db, runtime.pop("model"), settings_from_options(**runtime), parse_duration(keep_alive), reranker, strict_model
    )
    if watch:
        service.watch = watch_settings_for(service)
    app = build_app(service, bind_host=host, api_key=api_key, cors=tuple(cors), preload=preload)
    sock = bind(host, port)
    actual_port = sock.getsockname()[1]
    index_path = str(service.index.path) if service.index is not None else None
    info = ServerInfo(host, actual_port, os.getpid(), index_path, service.embedder.name)
    discovery = publish(info)
    click.echo(f"edge-embed serve: {info.base_url} (model {service.model_id}"
               + (f", index {index_path})" if index_path else ", no index)"), err=True)
    click.echo(f"  OpenAI base URL: {info.base_url}/v1   MCP: {info.base_url}/mcp", err=True)
    open_files = raise_open_file_limit()
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", http=guarded_protocol(connection_cap(open_files)),
        backlog=accept_backlog(open_files),
    )
    exit_on_sigterm()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        withdraw(discovery, info.pid)


def exit_on_sigterm() -> None:
    """uvicorn stops gracefully on SIGTERM, then raises the signal again with the handler it
    found; the default one would kill us before ``withdraw``: make it an exit instead."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def watch_settings_for(service) -> WatchSettings:
    """``--watch`` needs an index, served by the model it was built with (its vectors are written)."""
    from edge_embed.watch import WatchSettings

    if service.index is None:
        raise EdgeEmbedError("--watch needs an index: build one with `edge-embed index FOLDER` or give --db FILE")
    settings = service.index.store_settings()
    if settings is not None and settings.model_hash != service.embedder.handle.info.header_hash:
        raise EdgeEmbedError(
            f"--watch writes vectors of the index's model ({settings.model_label}), but this server runs "
            f"{service.model_id}: start it without --model"
        )
    return WatchSettings(keep_alive_s=None)  # the engine thread's --keep-alive unloads the model


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one); a port in use is a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EdgeEmbedError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port") from None
    sock.listen(128)
    return sock


@click.command()
@db_option
@click.option("--keep-alive", default="10m", show_default=True, metavar="DURATION",
              help="Unload the model after this long without a search (it reloads on the next).")
@reranker_option
@runtime_options
def mcp(db, keep_alive, reranker, **runtime) -> None:
    """Serve the index to an agent over MCP on stdin/stdout.

    Tools: search (query, k, mode, in_paths, glob), get (a file or line range, only inside
    the indexed folders), status.

    \b
    Register it, e.g. with Claude Code or Codex:
      claude mcp add edge-embed -- edge-embed mcp --db ~/notes.db
      codex mcp add edge-embed -- edge-embed mcp --db ~/notes.db
    Or, with `edge-embed serve` running, point an MCP client at http://127.0.0.1:8377/mcp.
    """
    from edge_embed.cli.query import refuse_model_option
    from edge_embed.server.app import Service
    from edge_embed.server.mcp_tools import build_mcp

    refuse_model_option(click.get_current_context())
    plain_logging()
    runtime.pop("model")  # the index's own model, always
    service = Service.create(db, None, settings_from_options(**runtime), parse_duration(keep_alive), reranker)
    if service.index is None:
        raise EdgeEmbedError("no index to serve: build one with `edge-embed index FOLDER` or give --db FILE")
    server = build_mcp(service)
    service.worker.start()
    try:
        server.run("stdio")
    finally:
        service.close()
