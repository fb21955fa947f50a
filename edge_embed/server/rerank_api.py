"""``POST /v1/rerank`` (and ``/rerank``): documents ordered by relevance to a query.

The request and answer are the shape llama-server, Jina and Cohere share, which Open
WebUI's external reranker and LangChain's rerankers post: ``{model, query, documents,
top_n, return_documents}`` in, ``{model, results: [{index, relevance_score, document?}]}``
out, best first. Scores come from our Qwen3-Reranker path (``TextReranker``: the model
card's prompt, P(yes)), which llama-server gets wrong for this model (its issue 16407).

The reranker runs on the engine thread, in the interactive line: it loads on the first
rerank and is unloaded with the embedding model after ``--keep-alive`` without requests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge_embed.server.protocol import ApiError, is_int, json_object, optional_model

if TYPE_CHECKING:
    from edge_embed.api import Ranked, TextReranker
    from edge_embed.server.app import Service

MAX_DOCUMENTS = 1000  # per request, as Cohere


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: list[str]
    model: str | None
    top_n: int | None
    return_documents: bool


def document_text(value: Any, i: int) -> str:
    """A document: a string, or Jina's/Cohere's ``{"text": ...}`` object."""
    if isinstance(value, dict):
        value = value.get("text")
    if not isinstance(value, str):
        raise ApiError(400, f"documents[{i}] must be a string or an object with a 'text' string", param="documents")
    return value


def parse_rerank_request(body: Any) -> RerankRequest:
    """A validated rerank request; ``texts`` (TEI's name) is taken for ``documents``."""
    body = json_object(body)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ApiError(400, "query must be a non-empty string", param="query")
    documents = body.get("documents", body.get("texts"))
    if not isinstance(documents, list) or not documents:
        raise ApiError(400, "documents must be a non-empty array of strings", param="documents")
    if len(documents) > MAX_DOCUMENTS:
        raise ApiError(400, f"{len(documents)} documents in one request; at most {MAX_DOCUMENTS}", param="documents")
    top_n = body.get("top_n")
    if top_n is not None and (not is_int(top_n) or top_n < 1):
        raise ApiError(400, "top_n must be a positive integer", param="top_n")
    return_documents = body.get("return_documents") or False
    if not isinstance(return_documents, bool):
        raise ApiError(400, "return_documents must be true or false", param="return_documents")
    model = optional_model(body)
    texts = [document_text(value, i) for i, value in enumerate(documents)]
    return RerankRequest(query, texts, model, top_n, return_documents)


def rerank_response(request: RerankRequest, ranked: list[Ranked], model: str) -> dict[str, Any]:
    def result(hit: Ranked) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": hit.index, "relevance_score": hit.score}
        if request.return_documents:
            entry["document"] = {"text": request.documents[hit.index]}
        return entry

    return {"object": "list", "model": model, "results": [result(hit) for hit in ranked]}


def reranker_id(reranker: TextReranker) -> str:
    """The catalog name, else the model file's name without .gguf."""
    return Path(reranker.name).stem if reranker.name.endswith(".gguf") else reranker.name


def check_reranker_name(service: Service, reranker: TextReranker, name: str | None) -> None:
    """Any name is answered by the server's reranker, unless --strict-model."""
    path = reranker.handle.info.path
    if service.strict_model and name is not None and name not in {reranker.name, reranker_id(reranker), path.name, path.stem}:
        raise ApiError(
            404, f"The model '{name}' does not exist on this server; it reranks with '{reranker_id(reranker)}'",
            param="model", code="model_not_found",
        )


def rerank_routes(service: Service) -> list[Route]:
    from edge_embed.server.app import answers_errors, read_json

    @answers_errors
    async def rerank(request: Request) -> Response:
        """Documents ordered by relevance to a query (llama-server / Jina / Cohere shape).
        ---
        summary: Rerank documents (POST /v1/rerank, /rerank)
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [query, documents]
                properties:
                  query: {type: string}
                  documents: {type: array, items: {oneOf: [{type: string}, {type: object, properties: {text: {type: string}}}]}, description: at most 1000}
                  model: {type: string, description: any name (the server's reranker answers), unless --strict-model}
                  top_n: {type: integer, minimum: 1, description: "only the best n (default: all)"}
                  return_documents: {type: boolean, default: false}
        responses:
          200: {description: "{object: list, model, results: [{index, relevance_score, document?: {text}}]}, best first"}
          400: {description: invalid request, or the reranker is not downloaded (the message says which pull to run)}
          404: {description: another model's name, with --strict-model}
        """
        parsed = parse_rerank_request(await read_json(request))

        def run() -> dict[str, Any]:
            reranker = service.text_reranker()
            check_reranker_name(service, reranker, parsed.model)
            ranked = reranker.rank(parsed.query, parsed.documents, parsed.top_n)
            return rerank_response(parsed, ranked, reranker_id(reranker))

        return JSONResponse(await asyncio.wrap_future(service.worker.call(run)))

    return [Route("/v1/rerank", rerank, methods=["POST"]), Route("/rerank", rerank, methods=["POST"])]
