"""A fake Hugging Face hub on 127.0.0.1, so download tests never need the network.

It answers what ``huggingface_hub`` asks when downloading one file: HEAD and GET on
``/{org}/{repo}/resolve/{revision}/{filename}`` with the headers the real hub sends
(``ETag``, ``X-Repo-Commit``, ``Content-Length``, ``Accept-Ranges``; ``Range`` -> 206) and
its error answers (``X-Error-Code`` RepoNotFound / GatedRepo / EntryNotFound). Tests can
cut the next download after N body bytes (the connection closes mid-body, like a dropped
network) and make the hub answer 503 afterwards, and every request is recorded so a test
can prove that a download *resumed* (asked for the remaining bytes) instead of restarting.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from huggingface_hub import constants

RESOLVE_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
BYTE_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
REQUEST_TIMEOUT_S = 10
# huggingface_hub writes downloads in 10 MB chunks and loses a half-received chunk when the
# connection drops; test files are a few hundred KB, so tests shrink the chunk to see resumption.
TEST_CHUNK_SIZE = 4096


@dataclass(frozen=True)
class Request:
    """One request as the hub saw it; ``sent`` is the number of body bytes it answered with."""

    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int
    sent: int


class FakeHub:
    """The hub's state: files per repo, fault injection, and the request log."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.gated: set[str] = set()
        self.token: str | None = None
        self.honour_range = True
        self.requests: list[Request] = []
        self._cut_after: int | None = None
        self._unavailable_after_cut = False
        self.unavailable = False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_file(self, repo: str, filename: str, data: bytes) -> None:
        self.files[(repo, filename)] = data

    def cut_next_download(self, after_bytes: int, *, then_unavailable: bool = False) -> None:
        """Close the next GET's connection after ``after_bytes`` body bytes; optionally 503 from then on."""
        with self._lock:
            self._cut_after = after_bytes
            self._unavailable_after_cut = then_unavailable

    def gets(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET"]

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=REQUEST_TIMEOUT_S)

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def take_cut(self) -> int | None:
        """The cut for this GET (one-shot); arms the 503s when the test asked for them."""
        with self._lock:
            cut, self._cut_after = self._cut_after, None
            if cut is not None and self._unavailable_after_cut:
                self.unavailable = True
            return cut


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        pass

    Handler.hub = hub
    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    hub: FakeHub
    timeout = REQUEST_TIMEOUT_S

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default per-request log on stderr."""

    def _answer(self, *, send_body: bool) -> None:
        match = RESOLVE_PATH.match(unquote(self.path))
        if match is None:
            return self._error(404, None)
        repo, filename = match["repo"], match["filename"]
        if self.hub.token is not None and self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            return self._error(401, "RepoNotFound")
        if not any(r == repo for r, _ in self.hub.files):
            return self._error(401, "RepoNotFound")
        if repo in self.hub.gated:
            return self._error(403, "GatedRepo")
        data = self.hub.files.get((repo, filename))
        if data is None:
            return self._error(404, "EntryNotFound", commit=_commit_of(repo))
        if send_body and self.hub.unavailable:
            return self._error(503, None)
        self._send_file(data, _commit_of(repo), send_body=send_body)

    def _send_file(self, data: bytes, commit: str, *, send_body: bool) -> None:
        start, end = self._requested_range(len(data))
        partial = (start, end) != (0, len(data))
        status = 206 if partial else 200
        body = data[start:end] if send_body else b""
        cut = self.hub.take_cut() if send_body else None
        if cut is not None:
            body = body[:cut]
        self._record_request(status, len(body))
        self.send_response(status)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def _requested_range(self, size: int) -> tuple[int, int]:
        """[start, end) of the body; the whole file unless a Range is honoured."""
        match = BYTE_RANGE.match(self.headers.get("Range") or "")
        if match is None or not self.hub.honour_range:
            return 0, size
        end = int(match["end"]) + 1 if match["end"] else size
        return int(match["start"]), min(end, size)

    def _error(self, status: int, error_code: str | None, *, commit: str | None = None) -> None:
        self._record_request(status, 0)
        self.send_response(status)
        if error_code is not None:
            self.send_header("X-Error-Code", error_code)
        if commit is not None:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _record_request(self, status: int, sent: int) -> None:
        """Record before answering, so a test that has seen the answer also sees the record."""
        self.hub.record(
            Request(
                method=self.command,
                path=unquote(self.path),
                range=self.headers.get("Range"),
                authorization=self.headers.get("Authorization"),
                status=status,
                sent=sent,
            )
        )


def _commit_of(repo: str) -> str:
    """A stable 40-hex commit id per repo, like the hub's X-Repo-Commit."""
    return hashlib.sha1(repo.encode()).hexdigest()


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake hub, with HF_ENDPOINT pointing at it and HF_HOME in tmp_path/hf-home.

    Variables that would leak the developer's own setup into the test (another cache, a
    token, offline mode, a model choice) are removed; huggingface_hub's import-time copies of
    the token path and offline flag are pointed away too.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("EDGE_EMBED_MODEL", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", TEST_CHUNK_SIZE)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub
