"""Embeddings from any OpenAI-compatible server instead of the local model (``--embed-url``).

vLLM, SGLang, TEI, llama-server or another `edge-embed serve` on a GPU box: a team can
index a large corpus there and search on laptops. What stays local and why:

* the Qwen3 query instruction is applied here (``Instruct: {task}\\nQuery:{text}``), since
  a generic server does not know ``input_type``; documents are sent as they are;
* Matryoshka truncation and re-normalisation happen here, so servers that ignore
  ``dimensions`` (llama-server) still give the index's dimension;
* chunking needs token counts, so indexing reads the vocabulary of the local GGUF
  (``--model``) alone: its weights are neither loaded nor run, so a GPU's memory stays
  free and a CPU that llama.cpp's kernels cannot run on (``runtime/amx.py``) still indexes.

Network failures and 5xx answers are retried with exponential backoff; what still fails
raises EdgeEmbedError, and an interrupted `index` resumes like any other run.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from edge_embed.config import current
from edge_embed.errors import EdgeEmbedError
from edge_embed.runtime.engine import DEFAULT_INSTRUCTION, EmbedStats, OnDecode, check_dims, truncate_and_normalize

if TYPE_CHECKING:
    from edge_embed.runtime.loader import ModelHandle

RETRIES = 5
BACKOFF_S = 0.5  # 0.5, 1, 2, 4, 8 s: rides out a server restart
TIMEOUT_S = 600.0
REMOTE_BATCH = 64  # texts per request: well under every server's input limit


@dataclass
class RemoteEmbedder:
    """Quacks like ``Embedder`` for the indexer and search; vectors come from ``url``."""

    url: str
    model: str | None = None  # the server's name for it; None: the first of /v1/models
    tokenizer: ModelHandle | None = None  # a local GGUF for token counts (indexing only)
    instruction: str = DEFAULT_INSTRUCTION
    qwen3_format: bool = True
    # EDGE_EMBED_URL_KEY, never EDGE_EMBED_API_KEY (`serve`'s own key must not reach another host)
    api_key: str | None = field(default_factory=lambda: current().url_key)
    stats: EmbedStats = field(default_factory=EmbedStats)
    native_dim: int = 0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        if self.model is None:
            self.model = self._request("GET", "/models")["data"][0]["id"]
        if not self.native_dim:
            self.native_dim = len(self._embed_raw(["dimension probe"])[0])

    # ------------------------------------------------------------- tokens (local)
    def _local(self):
        if self.tokenizer is None:
            raise EdgeEmbedError(
                "indexing through an embedding server needs the model's tokenizer", param="model",
                hint="give {model} (a catalog name or a GGUF file) with {embed_url}",
            )
        return self.tokenizer.load_vocabulary()

    def count_tokens(self, text: str) -> int:
        return self._local().count_tokens(text)

    @property
    def special_token_count(self) -> int:
        return self._local().special_token_count

    @property
    def max_tokens(self) -> int:
        return self.tokenizer.max_tokens if self.tokenizer is not None else 8192

    def format_query(self, query: str, instruct: str | None = None) -> str:
        return f"Instruct: {instruct or self.instruction}\nQuery:{query}" if self.qwen3_format else query

    # ------------------------------------------------------------- vectors (remote)
    def embed_documents(self, texts: Sequence[str], dims: int | None = None, on_decode: OnDecode | None = None) -> np.ndarray:
        dims = check_dims(dims, self.native_dim)
        rows = []
        for start in range(0, len(texts), REMOTE_BATCH):
            batch = list(texts[start:start + REMOTE_BATCH])
            rows.append(self._embed_raw(batch))
            if on_decode is not None:
                on_decode(len(batch), self._last_tokens)
        self.stats.texts += len(texts)
        return truncate_and_normalize(np.concatenate(rows), dims)

    def embed_queries(self, queries: Sequence[str], instruct: str | None = None, dims: int | None = None) -> np.ndarray:
        return self.embed_documents([self.format_query(query, instruct) for query in queries], dims)

    def check_dims(self, dims: int | None) -> int:
        return check_dims(dims, self.native_dim)

    def close(self) -> None:
        if self.tokenizer is not None:
            self.tokenizer.close()

    def _embed_raw(self, texts: list[str]) -> np.ndarray:
        answer = self._request("POST", "/embeddings", {"input": texts, "model": self.model, "encoding_format": "base64"})
        data = sorted(answer["data"], key=lambda item: item["index"])
        self._last_tokens = int(answer.get("usage", {}).get("prompt_tokens", 0))
        self.stats.tokens += self._last_tokens
        self.stats.decodes += 1
        return np.stack([decode_embedding(item["embedding"]) for item in data])

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON request with retries on network errors and 5xx; 4xx fail at once."""
        for attempt in range(RETRIES + 1):
            try:
                status, payload = self._send(method, path, body)
            except (OSError, http.client.HTTPException) as exc:
                status, payload = None, str(exc)
            if status is not None and status < 500:
                break
            if attempt == RETRIES:
                raise EdgeEmbedError(f"the embedding server {self.url} failed {RETRIES + 1} times ({status or payload}); "
                                     "run the same command again when it is back")
            time.sleep(BACKOFF_S * 2**attempt)
        try:
            answer = json.loads(payload)
        except ValueError:
            raise EdgeEmbedError(f"{self.url}{path} did not answer JSON (is it an OpenAI-compatible server?)") from None
        if status != 200:
            message = answer.get("error", {}).get("message", answer) if isinstance(answer, dict) else answer
            raise EdgeEmbedError(f"the embedding server {self.url} refused the request ({status}): {message}")
        return answer

    def _send(self, method: str, path: str, body: dict | None) -> tuple[int, str]:
        url = urlsplit(self.url + path)
        connection_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = connection_type(url.hostname, url.port, timeout=TIMEOUT_S)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            connection.request(method, url.path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", errors="replace")
        finally:
            connection.close()


def decode_embedding(value) -> np.ndarray:
    """A float list or base64 float32 (servers that ignore encoding_format send floats)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


@dataclass(frozen=True)
class RemoteModelInfo:
    """What an index records of a remote model: the URL stands where a file path would."""

    path: str
    file_size: int = 0
    header_hash: str = ""  # none: the index compares the model by name (and dims)
    architecture: str = ""  # a server does not say: a new index gets the general chunking defaults


@dataclass(frozen=True)
class RemotePlan:
    n_batch: int  # texts grouped per flush by the indexer, as for one local decode


class RemoteHandle:
    """``ModelHandle``'s face over a RemoteEmbedder, for the indexer and the façade."""

    def __init__(self, embedder: RemoteEmbedder) -> None:
        self.embedder = embedder
        self.label = embedder.model or ""
        self.info = RemoteModelInfo(embedder.url)
        self.plan = RemotePlan(embedder.tokenizer.plan.n_batch if embedder.tokenizer is not None else 2048)
        self.loaded = True

    @property
    def native_dim(self) -> int:
        return self.embedder.native_dim

    @property
    def max_tokens(self) -> int:
        return self.embedder.max_tokens

    def check_dims(self, dims: int | None) -> int:
        return self.embedder.check_dims(dims)

    def rate_key(self) -> str:
        return f"remote:{self.info.path}:{self.label}"

    def planned_tokens_per_s(self) -> None:
        return None  # a server's speed is known only once measured

    def load(self) -> RemoteEmbedder:
        return self.embedder

    def close(self) -> None:
        self.embedder.close()
