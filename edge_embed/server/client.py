"""The CLI's way to a running server: ask it instead of loading the model.

`edge-embed query` and `embed` call these first (unless --no-server). They use only the
standard library (http.client, array, base64), so a query through a warm server starts
in a few tens of milliseconds: no numpy, no llama.cpp, no HTTP library import.

A server that is gone, unreachable or failing (5xx) is treated as absent: the caller
falls back to the in-process path, so a stale discovery file never breaks a command.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
from array import array
from typing import Any
from urllib.parse import urlsplit

from edge_embed.errors import EdgeEmbedError
from edge_embed.server.discovery import ServerInfo, find_server

CONNECT_TIMEOUT_S = 0.5  # a live server on this machine answers a connect at once
ANSWER_TIMEOUT_S = 600.0  # the first request may load a multi-GB model


class ServerUnavailable(Exception):
    """No usable answer: the caller does the work itself."""


class ServerRefused(EdgeEmbedError):
    """The server answered with a 4xx: the request itself is wrong (its message says why)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def post(info: ServerInfo, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST JSON to the server; ServerRefused on a 4xx, ServerUnavailable otherwise."""
    url = urlsplit(info.base_url)
    headers = {"Content-Type": "application/json"}
    api_key = os.environ.get("EDGE_EMBED_API_KEY")
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=CONNECT_TIMEOUT_S)
    try:
        connection.connect()
        connection.sock.settimeout(ANSWER_TIMEOUT_S)
        connection.request("POST", path, body=json.dumps(body).encode("utf-8"), headers=headers)
        response = connection.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ServerUnavailable(str(exc)) from None
    finally:
        connection.close()
    try:
        answer = json.loads(payload)
    except ValueError:
        raise ServerUnavailable(f"not JSON from {info.base_url}{path}") from None
    if 400 <= response.status < 500 and response.status not in (401, 403, 409):  # 409: another model
        raise ServerRefused(str(answer.get("error", {}).get("message", answer)), response.status)
    if response.status != 200:
        raise ServerUnavailable(f"{response.status} from {info.base_url}{path}")
    return answer


def search(db: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The /v1/search answer from a server of ``db``; None when there is none to ask."""
    info = find_server(db=db)
    if info is None:
        return None
    try:
        return post(info, "/v1/search", body)
    except ServerUnavailable:
        return None


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
