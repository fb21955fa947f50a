"""What one client may cost the server: bounded JSON, bounded time to send a request,
bounded connections, and enough file descriptors to honour those bounds.

* **JSON**: nesting past the parser's recursion limit (10^5 nested brackets) is caught as
  the parser refuses it, and what it accepts is checked before any route sees it: at most
  ``MAX_JSON_DEPTH`` deep, integers within 64 bits, floats finite (``1e400`` parses as
  infinity). All are 400 answers, never a 500.
* **Slowloris**: a connection must deliver a whole request (headers and body) within
  ``REQUEST_READ_TIMEOUT_S`` of the moment the server waits for one, or it is closed. When
  ``max_connections`` are open, the connection that has waited longest for its request is
  closed to make room: a flood of half-sent requests evicts itself, while a real client,
  which sends its request at once, is answered.
* **File descriptors**: the soft ``RLIMIT_NOFILE`` is raised to the hard limit at start,
  and the connection cap stays below it, so ``accept`` never fails with EMFILE (which
  asyncio logs once per attempt: hundreds of megabytes under an attack).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from edge_embed.server.protocol import ApiError

MAX_JSON_DEPTH = 32
"""The deepest request edge-embed reads is 3 levels (arrays of token-id arrays in an object)."""

MAX_INTEGER_DIGITS = 19
"""A 64-bit integer; longer ones are no count, size or token id a request can mean."""

REQUEST_READ_TIMEOUT_S = 30.0
"""Headers and body of one request must arrive within this: 8 MiB takes under a second on a LAN."""

DEFAULT_MAX_CONNECTIONS = 1024
FD_RESERVE = 64
"""File descriptors kept for the model, the index and its WAL, worker pipes and logs."""

_INTEGER_BOUND = 2**64  # a 64-bit integer, signed or not; larger is no count, size or token id


def parse_json_body(body: bytes) -> Any:
    """The body as JSON, or an ``ApiError`` 400 for malformed, too deep or out-of-range input.

    Python's JSON parser refuses nesting past the recursion limit with a RecursionError
    (a clean exception, not a crash); what it accepts is then walked once, without
    recursion, for depth and numbers: cheaper than a callback per number in the parser
    (130k token ids: 1.3x the parse instead of 5x).
    """
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    check_json_limits(value)
    return value


def check_json_limits(value: Any) -> None:
    """Nesting at most ``MAX_JSON_DEPTH`` deep, integers within 64 bits, floats finite."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, list) and _flat_list_checked(node):
            continue
        for item in node.values() if isinstance(node, dict) else node if isinstance(node, list) else (node,):
            _check_number(item)
            if type(item) is list or type(item) is dict:
                stack.append((item, depth + 1))


def _flat_list_checked(items: list) -> bool:
    """A list of numbers only (token ids) or strings only, checked at C speed: min and max
    succeed on such lists alone, and bound all their numbers. False: check item by item."""
    if not items:
        return True
    if type(items[0]) is list or type(items[0]) is dict:  # min/max would compare whole sublists
        return False
    try:
        low, high = min(items), max(items)
    except TypeError:  # mixed kinds
        return False
    if type(low) is str:
        return True
    if type(low) in (int, float, bool):
        _check_number(low)
        _check_number(high)
        return True
    return False


def _check_number(item: Any) -> None:
    kind = type(item)
    if kind is int and not -_INTEGER_BOUND < item < _INTEGER_BOUND:
        raise ApiError(400, f"a number in the body has more than {MAX_INTEGER_DIGITS} digits")
    if kind is float and not math.isfinite(item):
        raise ApiError(400, "a number in the body is out of range (over 1.8e308)")


def _no_constant(text: str) -> float:
    raise ApiError(400, f"{text} is not a JSON number")


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; returns the limit now in force
    (a large number where the platform has no such limit)."""
    try:
        import resource
    except ImportError:  # Windows
        return DEFAULT_MAX_CONNECTIONS + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # macOS caps the soft limit below an "unlimited" hard one
            pass
    return soft


def accept_backlog(open_file_limit: int) -> int:
    """The listen backlog, which asyncio also takes as how many connections it accepts in
    one go, before any other callback (an eviction's close) runs: it must fit the limit too."""
    return max(8, min(128, open_file_limit // 8))


def connection_cap(open_file_limit: int) -> int:
    """How many client connections fit beside what the server itself keeps open and one
    batch of accepts."""
    return max(8, min(DEFAULT_MAX_CONNECTIONS, open_file_limit - FD_RESERVE - accept_backlog(open_file_limit)))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the read deadline and the connection cap of this module.

    Set ``max_connections`` on the class before serving (``guarded_protocol`` does).
    """

    max_connections = DEFAULT_MAX_CONNECTIONS
    read_timeout_s = REQUEST_READ_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0
        self._await_request()
        if len(self.connections) > self.max_connections:
            self._evict_slowest()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_in():
            self._stop_waiting()  # the whole request is in: the app's turn

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may already have read a pipelined request whole
        if not self.transport.is_closing() and not self._request_in():
            self._await_request()

    def _request_in(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.more_body and not cycle.response_complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_request(self) -> None:
        self._stop_waiting()
        self._waiting_since = self.loop.time()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def _stop_waiting(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    @property
    def waiting(self) -> bool:
        return self._read_deadline is not None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _evict_slowest(self) -> None:
        """Close the connection that has waited longest for its request (maybe this one)."""
        waiting = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c.waiting]
        if waiting:
            min(waiting, key=lambda c: c._waiting_since)._too_slow()


def guarded_protocol(max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, capped at ``max_connections``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"max_connections": max_connections})
