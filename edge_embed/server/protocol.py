"""The wire formats: OpenAI's /v1/embeddings request and answer, its error shape, and
the /v1/search request (the options of `edge-embed query` in JSON).

Pure functions from parsed JSON to validated requests: every way a body can be wrong is
an ``ApiError`` with its HTTP status, never an exception the server did not expect.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

from edge_embed.errors import EdgeEmbedError, Kind
from edge_embed.runtime.engine import MIN_MRL_DIMS

MAX_INPUTS = 2048  # inputs per request, as OpenAI
MAX_BODY_BYTES = 8 * 1024 * 1024  # 2048 inputs of ~4 KB each; larger bodies get a 413
ENCODINGS = ("float", "base64")
# What other servers call a query and a document (Nomic/Cohere search_*, E5 passage,
# Jina's `task` retrieval.*): clients configured for them work unchanged here.
QUERY_TYPES = ("query", "search_query", "retrieval.query")
DOCUMENT_TYPES = ("document", "search_document", "passage", "retrieval.passage")
INPUT_TYPES = DOCUMENT_TYPES + QUERY_TYPES
SEARCH_MODES = ("hybrid", "vector", "keyword")
MAX_SEARCH_K = 4096


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {message, type, param, code}}.

    ``headers`` go with the answer (Retry-After); ``detail`` is the library error's data
    (``library_error``), which our own client (`edge-embed query` through a server) reads
    to word the error as the CLI would have.
    """

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None, detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.detail = detail

    def body(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error"
        )
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        if self.detail is not None:
            error["edge_embed"] = self.detail
        return {"error": error}


# ---------------------------------------------------------------- library errors, HTTP's words
# The HTTP face of an EdgeEmbedError (errors.py): its kind as a status, its param as the
# request's JSON field, its hint in those fields' names. One mapping each; MCP and the CLI
# have their own (server/mcp_tools.py, cli/wording.py).
STATUS_OF_KIND: dict[Kind, int] = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "busy": 503,  # with Retry-After: the same request succeeds once the writer is done
    "unavailable": 503,
    "storage_full": 507,
    "damaged": 500,
}
RETRY_AFTER_S = 2  # a busy index: another process's write outlasted SQLite's busy timeout
REQUEST_FIELDS = {  # library param -> the JSON field of /v1/search, /v1/embeddings...
    "k": "k",
    "in_paths": "in",
    "per_file": "per_file",
    "min_score": "min_score",
    "mode": "mode",
    "rerank": "rerank",
    "rerank_top": "rerank_top",
    "dims": "dimensions",
    "input": "input",
}
# errors.TERMS an HTTP client words otherwise (the request's fields, as it sends them); the
# server's own settings stay neutral
HTTP_WORDS = {**REQUEST_FIELDS, "rerank_on": '"rerank": true', "no_rerank": '"rerank": false'}


def library_error(exc: EdgeEmbedError) -> ApiError:
    """``exc`` as an answer: status from its kind, ``param`` the request field at fault
    (None for the server's own settings), message and hint in HTTP_WORDS."""
    status = STATUS_OF_KIND[exc.kind]
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.kind == "busy" else None
    detail = {"kind": exc.kind, "param": exc.param, "message": exc.message, "hint": exc.hint, "values": exc.values}
    return ApiError(
        status, exc.render(HTTP_WORDS), param=REQUEST_FIELDS.get(exc.param or ""), code=exc.kind,
        headers=headers, detail=detail,
    )


@dataclass(frozen=True)
class EmbeddingRequest:
    texts: list[str] | None
    token_ids: list[list[int]] | None
    model: str | None
    encoding_format: str
    dims: int | None
    input_type: str
    instruct: str | None

    @property
    def as_query(self) -> bool:
        return self.input_type in QUERY_TYPES or bool(self.instruct)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_input(value: Any) -> tuple[list[str] | None, list[list[int]] | None]:
    """OpenAI's four input forms: a string, strings, token ids, arrays of token ids."""
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        texts = value
    elif isinstance(value, list) and value and all(is_int(item) for item in value):
        return None, [value]
    elif isinstance(value, list) and value and all(isinstance(item, list) for item in value):
        for i, ids in enumerate(value):
            if not ids or not all(is_int(token) for token in ids):
                raise ApiError(400, f"input[{i}] must be a non-empty array of integer token ids", param="input")
        return None, value
    elif isinstance(value, list) and not value:
        raise ApiError(400, "input is an empty array: give at least one text", param="input")
    else:
        raise ApiError(
            400,
            "input must be a string, an array of strings, an array of token ids or an array of such arrays",
            param="input",
        )
    for i, text in enumerate(texts):
        if not text.strip():
            raise ApiError(400, f"input[{i}] is empty: nothing to embed", param="input")
    return texts, None


def json_object(body: Any) -> dict[str, Any]:
    """The request body, which every API here wants as a JSON object."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def optional_model(body: dict[str, Any]) -> str | None:
    """``model``: any string or none (which name is answered is the server's business)."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "model must be a string", param="model")
    return model


def optional_dimensions(body: dict[str, Any], native_dim: int) -> int | None:
    """``dimensions`` (Matryoshka truncation): from MIN_MRL_DIMS to the model's native size."""
    dims = body.get("dimensions")
    if dims is not None and (not is_int(dims) or not MIN_MRL_DIMS <= dims <= native_dim):
        raise ApiError(
            400, f"dimensions must be an integer from {MIN_MRL_DIMS} to {native_dim} (this model's native size)",
            param="dimensions",
        )
    return dims


def parse_embedding_request(body: Any, native_dim: int) -> EmbeddingRequest:
    """A validated /v1/embeddings request; ``dimensions`` must be within 32..native."""
    body = json_object(body)
    if "input" not in body:
        raise ApiError(400, "missing required parameter 'input'", param="input")
    texts, token_ids = parse_input(body["input"])
    count = len(texts if texts is not None else token_ids)
    if count > MAX_INPUTS:
        raise ApiError(400, f"{count} inputs in one request; at most {MAX_INPUTS}", param="input", code="too_many_inputs")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise ApiError(400, f"encoding_format must be 'float' or 'base64', got {encoding!r}", param="encoding_format")
    dims = optional_dimensions(body, native_dim)
    input_type = parse_input_type(body)
    instruct = body.get("instruct")
    if instruct is not None and (not isinstance(instruct, str) or not instruct.strip()):
        raise ApiError(400, "instruct must be a non-empty string (the task sentence of a query)", param="instruct")
    if token_ids is not None and (input_type in QUERY_TYPES or instruct):
        raise ApiError(400, "input_type 'query' needs text input (the instruction is text)", param="input_type")
    return EmbeddingRequest(texts, token_ids, optional_model(body), encoding, dims, input_type, instruct)


def parse_input_type(body: dict[str, Any]) -> str:
    """``input_type`` (ours, Cohere's, Nomic's, E5's) or Jina's ``task``; default document."""
    key = "input_type" if body.get("input_type") is not None else "task"
    value = body.get(key) or "document"
    if value not in INPUT_TYPES:
        raise ApiError(
            400, f"{key} must be a document type ({', '.join(DOCUMENT_TYPES)}) or a query type "
            f"({', '.join(QUERY_TYPES)}), got {value!r}", param=key,
        )
    return value


def encode_vector(vector, encoding: str) -> list[float] | str:
    """float: a JSON array; base64: the little-endian float32 bytes (what the SDKs decode)."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def embeddings_response(vectors, model: str, encoding: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(vector, encoding)}
            for i, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


@dataclass(frozen=True)
class SearchRequest:
    """/v1/search: `edge-embed query`'s options as JSON keys (``in`` and ``glob`` are lists)."""

    query: str
    k: int = 10
    mode: str = "hybrid"
    in_paths: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()
    min_score: float | None = None
    per_file: int | None = None
    instruct: str | None = None
    rerank: bool | None = None  # None: on when the server's reranker fits whole on its GPU
    rerank_top: int | None = None


def _string_list(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, f"{key} must be a string or an array of strings", param=key)
    return tuple(value)


def parse_search_request(body: Any) -> SearchRequest:
    body = json_object(body)
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "query must be a non-empty string: the words to search for", param="query")
    k = body.get("k", 10)
    if not is_int(k) or not 1 <= k <= MAX_SEARCH_K:
        raise ApiError(400, f"k must be an integer from 1 to {MAX_SEARCH_K}", param="k")
    mode = body.get("mode", "hybrid")
    if mode not in SEARCH_MODES:
        raise ApiError(400, f"mode must be one of {', '.join(SEARCH_MODES)}", param="mode")
    min_score = body.get("min_score")
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not math.isfinite(min_score)):
        raise ApiError(400, "min_score must be a number", param="min_score")
    per_file = body.get("per_file")
    if per_file is not None and (not is_int(per_file) or per_file < 0):
        raise ApiError(400, "per_file must be an integer, 0 or more (0 = no limit)", param="per_file")
    instruct = body.get("instruct")
    if instruct is not None and (not isinstance(instruct, str) or not instruct.strip()):
        raise ApiError(400, "instruct must be a non-empty string", param="instruct")
    rerank = body.get("rerank")
    if rerank is not None and not isinstance(rerank, bool):
        raise ApiError(400, "rerank must be true, false or null (null: on when the reranker fits the GPU)", param="rerank")
    rerank_top = body.get("rerank_top")
    if rerank_top is not None and (not is_int(rerank_top) or not 1 <= rerank_top <= MAX_SEARCH_K):
        raise ApiError(400, f"rerank_top must be an integer from 1 to {MAX_SEARCH_K}", param="rerank_top")
    return SearchRequest(
        text, k, mode, _string_list(body, "in"), _string_list(body, "glob"), min_score, per_file, instruct,
        rerank, rerank_top,
    )
