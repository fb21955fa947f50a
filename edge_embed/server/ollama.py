"""Ollama's embedding API on `serve`'s port, so `OLLAMA_HOST=127.0.0.1:8377` clients work.

Open WebUI's Ollama engine, AnythingLLM, Continue and LangChain's ``OllamaEmbeddings``
speak Ollama, not OpenAI: ``POST /api/embed`` (batched ``input``, ``truncate``,
``dimensions``), the legacy ``POST /api/embeddings`` (one ``prompt``), ``GET /api/tags``
(the models) and ``GET /api/version``. Requests go through the same engine thread as
/v1/embeddings; inputs are embedded as documents (Ollama adds no instruction either).
``options`` and ``keep_alive`` are accepted and ignored: the server's own settings apply.
Errors are Ollama's shape, ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge_embed import __version__
from edge_embed.server.protocol import MAX_INPUTS, ApiError, json_object, optional_dimensions, optional_model, parse_input
from edge_embed.server.worker import EmbedJob

if TYPE_CHECKING:
    from edge_embed.server.app import Service
    from edge_embed.server.worker import EmbedResult

OLLAMA_API_VERSION = "0.12.0"  # the Ollama release whose API this follows (clients check versions)
DEFAULT_TAG = ":latest"  # Ollama's clients add it to a name without a tag


@dataclass(frozen=True)
class OllamaEmbedRequest:
    texts: list[str]
    model: str | None
    truncate: bool
    dims: int | None


def parse_ollama_embed(body: Any, native_dim: int, *, legacy: bool = False) -> OllamaEmbedRequest:
    """/api/embed (``input``: a string or strings) or, ``legacy``, /api/embeddings (``prompt``)."""
    body = json_object(body)
    key = "prompt" if legacy else "input"
    value = body.get(key)
    if legacy and not isinstance(value, str):
        raise ApiError(400, "prompt must be a string", param=key)
    if not isinstance(value, (str, list)):
        raise ApiError(400, "input must be a string or an array of strings", param=key)
    texts, token_ids = parse_input(value)
    if texts is None:
        raise ApiError(400, "input must be a string or an array of strings, not token ids", param=key)
    if len(texts) > MAX_INPUTS:
        raise ApiError(400, f"{len(texts)} inputs in one request; at most {MAX_INPUTS}", param=key)
    truncate = True if body.get("truncate") is None else body["truncate"]
    if not isinstance(truncate, bool):
        raise ApiError(400, "truncate must be true or false", param="truncate")
    dims = optional_dimensions(body, native_dim)
    return OllamaEmbedRequest(texts, optional_model(body), truncate, dims)


def ollama_error(error: ApiError) -> dict[str, str]:
    return {"error": error.message}


def nanoseconds(seconds: float) -> int:
    return int(seconds * 1e9)


def model_tag(service: Service) -> dict[str, Any]:
    """The served model as one entry of /api/tags."""
    info = service.embedder.handle.info
    modified = datetime.fromtimestamp(info.path.stat().st_mtime, timezone.utc).isoformat()
    return {
        "name": service.model_id,
        "model": service.model_id,
        "modified_at": modified,
        "size": info.file_size,
        "digest": info.header_hash,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": info.architecture,
            "families": [info.architecture],
            "parameter_size": "",
            "quantization_level": "",
        },
    }


def ollama_routes(service: Service) -> list[Route]:
    from edge_embed.server.app import answers_errors, read_json

    def answers(handler):
        return answers_errors(handler, body=ollama_error)

    async def embed_texts(body: Any, legacy: bool) -> tuple[EmbedResult, float]:
        started = time.perf_counter()
        parsed = parse_ollama_embed(body, service.embedder.native_dim, legacy=legacy)
        if parsed.model is not None:
            service.check_model(parsed.model.removesuffix(DEFAULT_TAG))
        job = EmbedJob(texts=parsed.texts, dims=parsed.dims, truncate=parsed.truncate)
        result = await asyncio.wrap_future(service.worker.submit(job))
        return result, time.perf_counter() - started

    @answers
    async def embed(request: Request) -> Response:
        """Ollama's embeddings: one vector per input, unit length.
        ---
        summary: Embed texts (Ollama /api/embed)
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [input]
                properties:
                  model: {type: string, description: any name (the served model answers), unless --strict-model}
                  input: {oneOf: [{type: string}, {type: array, items: {type: string}}]}
                  truncate: {type: boolean, default: true, description: "cut inputs longer than the context (false: a 400)"}
                  dimensions: {type: integer, minimum: 32}
                  options: {type: object, description: ignored}
                  keep_alive: {description: "ignored: serve's --keep-alive applies"}
        responses:
          200: {description: "{model, embeddings, total_duration, load_duration, prompt_eval_count} (durations in ns)"}
          400: {description: "invalid input: {error}"}
        """
        result, elapsed = await embed_texts(await read_json(request), legacy=False)
        return JSONResponse({
            "model": service.model_id,
            "embeddings": result.vectors.tolist(),
            "total_duration": nanoseconds(elapsed),
            "load_duration": nanoseconds(result.load_s),
            "prompt_eval_count": result.prompt_tokens,
        })

    @answers
    async def embeddings(request: Request) -> Response:
        """Ollama's legacy single-text embedding.
        ---
        summary: Embed one text (Ollama /api/embeddings, legacy)
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [prompt]
                properties:
                  model: {type: string}
                  prompt: {type: string}
        responses:
          200: {description: "{embedding}"}
          400: {description: "invalid input: {error}"}
        """
        result, _ = await embed_texts(await read_json(request), legacy=True)
        return JSONResponse({"embedding": result.vectors[0].tolist()})

    @answers
    async def tags(request: Request) -> Response:
        """The served model, in Ollama's list shape.
        ---
        summary: List models (Ollama /api/tags)
        responses:
          200: {description: "{models: [{name, model, modified_at, size, digest, details}]}"}
        """
        return JSONResponse({"models": [model_tag(service)]})

    @answers
    async def version(request: Request) -> Response:
        """The Ollama API version this server follows, and edge-embed's own.
        ---
        summary: Version (Ollama /api/version)
        responses:
          200: {description: "{version, edge_embed}"}
        """
        return JSONResponse({"version": OLLAMA_API_VERSION, "edge_embed": __version__})

    return [
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings, methods=["POST"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/version", version, methods=["GET"]),
    ]
