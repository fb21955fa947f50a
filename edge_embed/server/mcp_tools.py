"""MCP tools for agents: search the index, read indexed files, describe the index.

The same three tools run over stdio (`edge-embed mcp`, one process per agent session) and
over streamable HTTP at ``/mcp`` on `edge-embed serve` (one warm model for every agent),
both on the official ``mcp`` SDK and both through the same ``Service`` as the HTTP API.

``get`` reads only indexed files, at most ``reader.MAX_READ_BYTES`` per answer: see
``edge_embed.reader`` for how a path is resolved once, checked, and read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from edge_embed.errors import EdgeEmbedError
from edge_embed.server.app import no_index
from edge_embed.server.protocol import ApiError, parse_search_request

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from edge_embed.api import Index
    from edge_embed.server.app import Service

INSTRUCTIONS = (
    "Semantic + keyword search over the user's indexed folders (edge-embed). Use `search` "
    "to find passages, `get` to read a file or a line range around a result, `status` to see "
    "which folders are indexed."
)


Tool = TypeVar("Tool", bound=Callable[..., Any])


# errors.TERMS as an agent reads them: search's arguments (in_paths, k, mode...) are the
# library's own names, so only what the agent does through another tool needs words
MCP_WORDS = {"status": "call the status tool"}


def agent_errors(tool: Tool) -> Tool:
    """Our one-line errors as the SDK's ToolError: the agent reads the message and the hint
    in the tools' terms (any other exception reaches it only as "Error executing tool
    NAME") and the server logs one line, not a traceback."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(tool)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return tool(*args, **kwargs)
        except EdgeEmbedError as exc:
            raise ToolError(exc.render(MCP_WORDS)) from None
        except ApiError as exc:
            raise ToolError(str(exc)) from None

    return wrapped  # type: ignore[return-value]


def build_mcp(service: Service) -> MCPServer:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name="edge-embed", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    @agent_errors
    def search(
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        in_paths: list[str] | None = None,
        glob: list[str] | None = None,
        rerank: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Search the indexed files by meaning and exact words (hybrid), or mode 'vector' /
        'keyword'. in_paths: only files under these absolute paths; glob: e.g. '*.md';
        rerank: rescore the best candidates with the reranker (default: when it fits the GPU).
        Each result: path, lines (first-last), heading, score, text."""
        request = parse_search_request(
            {"query": query, "k": k, "mode": mode, "in": in_paths or [], "glob": glob or [], "rerank": rerank}
        )
        document = service.search(request)
        return [
            {
                "path": result["path"],
                "lines": f"{result['start_line']}-{result['end_line']}",
                "heading": result["heading"],
                "score": result["score"],
                "text": result["text"],
            }
            for result in document["results"]
        ]

    @server.tool()
    @agent_errors
    def get(path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Read an indexed file, or lines start_line..end_line of it (1-based, inclusive).
        Only indexed files can be read; an answer stops at 2 MiB (it then says where, to
        read on from there). PDF and Word files give their text, '[page N]' before each page."""
        return served_index(service).read_file(path, start_line, end_line)

    @server.tool()
    @agent_errors
    def status() -> dict[str, Any]:
        """The index: folders, file and chunk counts, model, settings, size, wasted space."""
        return served_index(service).status().to_dict()

    return server


def served_index(service: Service) -> Index:
    """The index this server answers for; a server of embeddings alone says so."""
    if service.index is None:
        raise no_index()
    return service.index


def mcp_http_app(service: Service):
    """The /mcp route and the lifespan its session manager needs, for `serve`'s app.

    The SDK's own Host/Origin checks are off here: `serve`'s Guard applies the same
    rules (and the API key) to every route, /mcp included.
    """
    from mcp.server.transport_security import TransportSecuritySettings

    server = build_mcp(service)
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    route = next(route for route in app.routes if getattr(route, "path", None) == "/mcp")

    @asynccontextmanager
    async def lifespan(_app):
        async with server.session_manager.run():
            yield

    return route, lifespan
