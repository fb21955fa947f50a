"""The CLI's way to a running server: ask it instead of loading the model.

`edge-embed query` and `embed` call these first (unless --no-server). They use only the
standard library (socket, json, array, base64), so a query through a warm server starts
fast: no numpy, no llama.cpp, no HTTP library import. Not even http.client: it imports
ssl and the email package, about a tenth of this command's start-up, for features a
plain POST to a server on this machine does not use.

A server that is gone, unreachable or failing (5xx) is treated as absent: the caller
falls back to the in-process path, so a stale discovery file never breaks a command.
"""

from __future__ import annotations

import base64
import json
import socket
from array import array
from typing import Any
from urllib.parse import urlsplit

from edge_embed.config import current
from edge_embed.errors import KINDS, TERMS, EdgeEmbedError, Phrase
from edge_embed.server.discovery import ServerInfo, find_server

CONNECT_TIMEOUT_S = 0.5  # a live server on this machine answers a connect at once
ANSWER_TIMEOUT_S = 600.0  # the first request may load a multi-GB model


class ServerUnavailable(Exception):
    """No usable answer: the caller does the work itself."""


class ServerRefused(EdgeEmbedError):
    """The server answered with a 4xx: the request itself is wrong (its message says why).

    An error of the library comes with its data (``protocol.library_error``'s ``edge_embed``
    field): it is raised again as that data, so the CLI words it as it would have had it
    searched itself (``--in``, not the JSON field ``in``)."""

    def __init__(self, message: str, status: int, **data: Any) -> None:
        super().__init__(message, **data)
        self.status = status


def refused(error: Any, status: int) -> ServerRefused:
    """The error object of a 4xx answer as an exception; its library data when it has some."""
    if not isinstance(error, dict):
        return ServerRefused(str(error), status)
    detail = error.get("edge_embed")
    if not (isinstance(detail, dict) and isinstance(detail.get("message"), str) and detail.get("kind") in KINDS):
        return ServerRefused(str(error.get("message", error)), status)
    values = detail.get("values") if isinstance(detail.get("values"), dict) else {}
    param, hint = detail.get("param"), detail.get("hint")
    return ServerRefused(
        detail["message"], status, kind=detail["kind"], param=param if isinstance(param, str) else None,
        hint=hint if isinstance(hint, str) else None,
        **{str(name): str(value) for name, value in values.items() if name not in RESERVED},
    )


# ServerRefused's own arguments, and the terms a value may not be named like (errors.TERMS):
# an answer from another version or service must not crash the client that reads it
RESERVED = frozenset({"message", "status", "kind", "param", "hint", *TERMS})


def post(info: ServerInfo, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST JSON to the server; ServerRefused on a 4xx, ServerUnavailable otherwise."""
    url = urlsplit(info.base_url)
    status, payload = exchange(url.hostname or "", url.port or 80, request_bytes(url.netloc, path, body))
    try:
        answer = json.loads(payload)
    except ValueError:
        raise ServerUnavailable(f"not JSON from {info.base_url}{path}") from None
    if 400 <= status < 500 and status not in (401, 403, 409):  # 409: another model
        raise refused(answer.get("error", answer) if isinstance(answer, dict) else answer, status)
    if status != 200:
        raise ServerUnavailable(f"{status} from {info.base_url}{path}")
    return answer


def request_bytes(host: str, path: str, body: dict[str, Any]) -> bytes:
    """An HTTP/1.0 POST: the server closes the connection after its answer, so the answer
    is everything read until then (no keep-alive, no chunked transfer to decode)."""
    payload = json.dumps(body).encode("utf-8")
    lines = [f"POST {path} HTTP/1.0", f"Host: {host}", "Content-Type: application/json", f"Content-Length: {len(payload)}"]
    api_key = current().api_key
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def exchange(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request``, read until the server closes: (status, body)."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as sock:
            sock.settimeout(ANSWER_TIMEOUT_S)
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
    except OSError as exc:
        raise ServerUnavailable(str(exc)) from None
    head, separator, payload = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not separator or len(status_line) < 2 or not status_line[1].isdigit():
        raise ServerUnavailable(f"no HTTP answer from {host}:{port}")
    return int(status_line[1]), payload


def search(db: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The /v1/search answer from a server of ``db``; None when there is none to ask."""
    info = find_server(db=db)
    if info is None:
        return None
    try:
        return post(info, "/v1/search", body)
    except ServerUnavailable:
        return None


def rerank_reason(answer: dict[str, Any]) -> Phrase | str:
    """Why a /v1/search answer was (not) reranked: its data, for the CLI to word as it would
    have (``--no-rerank``), else the server's words."""
    return Phrase.from_dict(answer.get("rerank_phrase")) or str(answer.get("rerank", "off"))


def embed(model: str, body: dict[str, Any]) -> list[list[float]] | None:
    """Vectors from a server running ``model`` (label), in input order; None if none answers.

    Asks for base64 and decodes float32 with ``array``: the same Python floats numpy's
    ``tolist()`` gives in-process, so the printed JSON is identical.
    """
    info = find_server(model=model)
    if info is None:
        return None
    try:
        answer = post(info, "/v1/embeddings", {**body, "encoding_format": "base64"})
    except (ServerUnavailable, ServerRefused):  # a refusal is worded by the in-process path instead
        return None
    rows = sorted(answer["data"], key=lambda item: item["index"])
    return [array("f", base64.b64decode(row["embedding"])).tolist() for row in rows]
