"""Who may talk to the server: the right Host, no foreign browser Origin, the API key.

A server on 127.0.0.1 is still reachable from every web page the user opens: a page can
POST to http://127.0.0.1:PORT directly (Origin check), or make its own domain resolve to
127.0.0.1 and read the answers as same-origin (DNS rebinding; Host check). So:

* the Host header must name the server itself (loopback names on a loopback bind, the
  bound address otherwise; any name on a wildcard bind, where the API key is mandatory);
* a request carrying a browser ``Origin`` is refused unless that origin was allowed with
  ``--cors`` (non-browser clients such as the OpenAI SDK send no Origin);
* with an API key, every request needs ``Authorization: Bearer KEY`` (CORS preflights
  excepted: browsers never send credentials on them).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from edge_embed.server.protocol import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_host_names(bind_host: str) -> frozenset[str] | None:
    """The names a Host header may carry for a server bound to ``bind_host`` (None: any)."""
    if bind_host in WILDCARDS:
        return None
    if is_loopback(bind_host):
        return LOOPBACK_NAMES | {bind_host.lower()}
    return frozenset({bind_host.lower()})


def host_name(header: str) -> str | None:
    """'localhost:8080' -> 'localhost', '[::1]:80' -> '::1'; None when malformed."""
    try:
        parsed = urlsplit(f"//{header}")
        parsed.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return None
    return parsed.hostname


class Guard:
    """ASGI middleware applying the three checks to every HTTP request (MCP included)."""

    def __init__(
        self, app: ASGIApp, *, hosts: frozenset[str] | None, api_key: str | None, cors: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.api_key = api_key
        self.cors = frozenset(origin.rstrip("/") for origin in cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            self.check(Headers(scope=scope), scope.get("method", "GET"))
        except ApiError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
            await JSONResponse(error.body(), status_code=error.status, headers=headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, headers: Headers, method: str) -> None:
        name = host_name(headers.get("host", ""))
        if name is None or (self.hosts is not None and name not in self.hosts):
            raise ApiError(
                403, f"Host {headers.get('host', '')!r} is not this server's name (DNS-rebinding protection)",
                code="forbidden_host",
            )
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.cors:
            raise ApiError(
                403, f"requests from the web page origin {origin} are refused; start the server with "
                f"--cors {origin} to allow it", code="forbidden_origin",
            )
        if self.api_key is None or method == "OPTIONS":
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise ApiError(401, "a valid API key is required: send 'Authorization: Bearer KEY'", code="invalid_api_key")
