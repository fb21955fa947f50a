"""The HTTP face of `edge-embed serve`: Starlette routes over the façade and one engine.

Why Starlette and not FastAPI: the request shapes are OpenAI's, with unions (a string, an
array of strings, token ids...) whose validation errors must come back in OpenAI's error
shape; hand-written validation (``protocol.py``) gives exactly that with two small
dependencies, where FastAPI would add pydantic models plus overriding its own 422
answers. The OpenAPI document is Starlette's SchemaGenerator over the route docstrings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from edge_embed import __version__
from edge_embed.api import Index, TextEmbedder, TextReranker, index_model_handle
from edge_embed.errors import EdgeEmbedError, say
from edge_embed.server.protocol import (
    MAX_BODY_BYTES,
    HTTP_WORDS,
    ApiError,
    SearchRequest,
    embeddings_response,
    library_error,
    parse_embedding_request,
    parse_search_request,
)
from edge_embed.server.limits import parse_json_body
from edge_embed.server.security import Guard, allowed_host_names
from edge_embed.server.worker import EmbedJob, EngineWorker
from edge_embed.watch import WatchSettings, read_watch_state

if TYPE_CHECKING:
    from edge_embed.runtime.plan import RuntimeSettings

log = logging.getLogger("edge_embed")


@dataclass
class Service:
    """What the routes share: the engine thread, its model's names, the index (if any)."""

    worker: EngineWorker
    index: Index | None = None
    reranker: str | None = None  # --reranker: the model of searches that rerank (None: the catalog's)
    strict_model: bool = False  # --strict-model: a request naming another model is a 404
    runtime: RuntimeSettings | None = None  # the device settings the reranker of /v1/rerank loads with
    started: float = field(default_factory=time.monotonic)
    _text_reranker: TextReranker | None = None  # /v1/rerank's, prepared on its first request
    watch: WatchSettings | None = None  # --watch: keep the index current while serving

    @classmethod
    def create(
        cls, db: str | Path | None, model: str | None, runtime, keep_alive_s: float | None, reranker: str | None = None,
        strict_model: bool = False,
    ) -> Service:
        """The model: ``model``, else the index's own, else the default one.

        ``db`` None means the default index file, used only when it exists: a server for
        embeddings alone needs no index.
        """
        index = Index.open(db, runtime)
        if not index.exists:
            if db is not None:
                raise EdgeEmbedError(f"no index at {index.path} yet", kind="not_found", hint="build one first: {index}")
            index = None
        settings = index.store_settings() if index is not None and model is None else None
        if settings is not None:
            embedder = TextEmbedder(index_model_handle(settings, runtime))
            index.share_query_model(embedder)
        else:
            embedder = TextEmbedder.open(model, runtime)
        service = cls(EngineWorker(embedder, keep_alive_s), index, reranker, strict_model, runtime)
        service.worker.on_unload = service.release_rerankers
        return service

    @property
    def embedder(self) -> TextEmbedder:
        return self.worker.embedder

    @property
    def model_id(self) -> str:
        """The catalog name, else the model file's name without .gguf."""
        label = self.embedder.name
        return Path(label).stem if label.endswith(".gguf") else label

    def model_names(self) -> set[str]:
        """Every name a client may use for this model in ``model``."""
        path = self.embedder.handle.info.path
        return {self.model_id, self.embedder.name, path.name, path.stem}

    def check_model(self, name: str | None) -> None:
        """Any name is answered with the served model (as llama-server does: clients send
        their own defaults such as text-embedding-3-small), unless --strict-model."""
        if self.strict_model and name is not None and name not in self.model_names():
            raise ApiError(
                404, f"The model '{name}' does not exist on this server; it serves '{self.model_id}' (see /v1/models)",
                param="model", code="model_not_found",
            )

    def text_reranker(self) -> TextReranker:
        """The reranker of /v1/rerank (--reranker, else the default), checked on first use;
        with an index, the very model its searches rerank with."""
        if self._text_reranker is None:
            if self.index is not None:
                self._text_reranker = self.index.text_reranker(self.reranker)
            else:
                self._text_reranker = TextReranker.open(self.reranker, self.runtime)
        return self._text_reranker

    def release_rerankers(self) -> None:
        """The keep-alive's unload: the rerankers go with the embedding model."""
        if self.index is not None:
            self.index.release_rerankers()
        if self._text_reranker is not None:
            self._text_reranker.close()

    def close(self, index_idle: bool = True) -> None:
        """The end of serving: the engine thread stops, then the index frees its read
        connections (SQLite then folds its -wal file back) and its query model. In that
        order, as ``Index.close`` must not run under a search or a decode: one the engine
        could not finish, or a watcher still at work (``index_idle`` False), keeps the
        index open until the process ends."""
        if self.worker.stop() and index_idle and self.index is not None:
            self.index.close()

    def model_entry(self) -> dict[str, Any]:
        """The served model in OpenAI's model shape."""
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "edge-embed"}

    def health(self) -> dict[str, Any]:
        plan = self.embedder.handle.plan
        return {
            "status": "ok",
            "version": __version__,
            "model": self.model_id,
            "device": plan.gpu.name if plan.gpu is not None and plan.n_gpu_layers > 0 else "cpu",
            "loaded": self.worker.loaded,
            "queue_depth": self.worker.queue_depth,
            "rounds": self.worker.rounds,
            "inputs_embedded": self.worker.inputs,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "index": str(self.index.path) if self.index is not None else None,
            "watch": read_watch_state(self.index.path) if self.index is not None else None,
        }

    def search(self, request: SearchRequest) -> dict[str, Any]:
        """Runs on a thread of the pool: the store is read here, the query embedded by the engine."""
        from edge_embed.render import search_document
        from edge_embed.search import DEFAULT_PER_FILE, SearchOptions

        if self.index is None:
            raise no_index()
        options = SearchOptions(
            mode=request.mode,
            k=request.k,
            in_paths=request.in_paths,
            globs=request.globs,
            min_score=request.min_score,
            per_file=DEFAULT_PER_FILE if request.per_file is None else request.per_file,
        )
        embed_query = self._query_embedder(request.instruct) if options.uses_vectors else None
        outcome = self.index.search_outcome(
            request.query, options, embed_query=embed_query, rerank=request.rerank, rerank_top=request.rerank_top,
            reranker=self.reranker,
        )
        document = search_document(request.query, request.mode, outcome.hits, outcome.index_age_s)
        reason = outcome.rerank_reason
        # the reason in this API's words, and as data for our CLI's --explain (client.rerank_reason)
        return {**document, "rerank": say(reason, HTTP_WORDS), "rerank_phrase": reason.to_dict()}

    def _query_embedder(self, instruct: str | None) -> Callable[[str], Any]:
        settings = self.index.settings()
        if settings.model_hash != self.embedder.handle.info.header_hash:
            raise ApiError(
                409, f"the index was built with {settings.model_label} but this server runs {self.model_id}: "
                "the server must be started without its --model option to search this index "
                "(or use mode 'keyword')", code="model_mismatch",
            )

        def embed_query(text: str):
            job = EmbedJob(texts=[text], dims=settings.dims, as_query=True, instruct=instruct, truncate=True)
            return self.worker.embed(job).vectors[0]

        return embed_query


def no_index() -> EdgeEmbedError:
    """What a search, `get` or `status` of a server started without an index answers."""
    return EdgeEmbedError("this server has no index", kind="not_found", param="db", hint="start the server with {db}")


# ------------------------------------------------------------------------ plumbing
Handler = Callable[[Request], Awaitable[Response]]


def answers_errors(handler: Handler, body: Callable[[ApiError], Any] = ApiError.body) -> Handler:
    """Every failure becomes an answer, in OpenAI's error shape unless ``body`` renders
    another API's (Ollama's); the server keeps serving."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as error:
            return JSONResponse(body(error), status_code=error.status, headers=error.headers)
        except EdgeEmbedError as exc:
            error = library_error(exc)
            if error.status >= 500:  # the server's own state (its build, disk, index), not the request: said to both
                log.error("%s", exc)
            return JSONResponse(body(error), status_code=error.status, headers=error.headers)
        except ClientDisconnect:  # common and harmless: one line, not a traceback per client
            log.warning("a client of %s went away before sending its whole request", request.url.path)
            return Response(status_code=400)
        except Exception as exc:  # a bug or llama.cpp failure: logged, answered, not fatal
            log.exception("request failed")
            return JSONResponse(body(ApiError(500, f"internal error: {exc}")), status_code=500)

    wrapped.__doc__ = handler.__doc__
    wrapped.__name__ = handler.__name__
    return wrapped


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them all, and
    too deep or out-of-range JSON before parsing it (``limits.parse_json_body``)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, f"the request body is larger than {limit} bytes", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes", code="body_too_large")
    return parse_json_body(bytes(body))


def server_timing(name: str, started: float) -> dict[str, str]:
    """A W3C Server-Timing header: the server's own time (embedding + search), so a
    client can tell it from its own start-up and transfer time (scripts/bench_serve.py)."""
    return {"Server-Timing": f"{name};dur={(time.perf_counter() - started) * 1e3:.1f}"}


# ------------------------------------------------------------------------ routes
def routes(service: Service) -> list[Route]:
    @answers_errors
    async def embeddings(request: Request) -> Response:
        """OpenAI-compatible embeddings, plus input_type (document|query) and instruct.
        ---
        summary: Embed texts or token ids (OpenAI /v1/embeddings)
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [input]
                properties:
                  input:
                    description: a string, an array of strings (at most 2048), an array of token ids, or an array of such arrays
                    oneOf:
                      - {type: string}
                      - {type: array, items: {type: string}}
                      - {type: array, items: {type: integer}}
                      - {type: array, items: {type: array, items: {type: integer}}}
                  model: {type: string, description: "any name: the served model answers (the answer's model says which); with --strict-model only its own names (see /v1/models)"}
                  encoding_format: {type: string, enum: [float, base64], default: float}
                  dimensions: {type: integer, minimum: 32, description: Matryoshka size (at most the native one)}
                  input_type: {type: string, enum: [document, search_document, passage, retrieval.passage, query, search_query, retrieval.query], default: document}
                  task: {type: string, enum: [retrieval.passage, retrieval.query], description: "Jina's name for input_type"}
                  instruct: {type: string, description: the task sentence of a query (implies input_type query)}
        responses:
          200: {description: "{object: list, data: [{object: embedding, index, embedding}], model, usage}"}
          400: {description: invalid input, too many inputs, too long an input, dimensions out of range}
          401: {description: missing or wrong API key}
          404: {description: another model's name, with --strict-model}
          413: {description: body larger than 8 MiB}
        """
        body = await read_json(request)
        parsed = parse_embedding_request(body, service.embedder.native_dim)
        service.check_model(parsed.model)
        job = EmbedJob(
            texts=parsed.texts, token_ids=parsed.token_ids, dims=parsed.dims,
            as_query=parsed.as_query, instruct=parsed.instruct,
        )
        result = await asyncio.wrap_future(service.worker.submit(job))
        return JSONResponse(
            embeddings_response(result.vectors, service.model_id, parsed.encoding_format, result.prompt_tokens)
        )

    @answers_errors
    async def search(request: Request) -> Response:
        """Search the index: `edge-embed query`'s options, `query --json`'s answer.
        ---
        summary: Search the index (answer schema docs/query-json.md)
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [query]
                properties:
                  query: {type: string}
                  k: {type: integer, default: 10}
                  mode: {type: string, enum: [hybrid, vector, keyword], default: hybrid}
                  in: {type: array, items: {type: string}, description: only files under these absolute paths}
                  glob: {type: array, items: {type: string}}
                  min_score: {type: number}
                  per_file: {type: integer, default: 2}
                  instruct: {type: string}
        responses:
          200: {description: "{schema_version, query, mode, results: [...]}"}
          400: {description: "invalid options, or an unknown path in `in` (param: the field)"}
          404: {description: the server has no index, or the reranker is not downloaded}
          409: {description: the server runs another model than the index's, or the index was built differently}
          503: {description: "the index is busy (another process writes it; Retry-After), or the server cannot run its model"}
          507: {description: the disk holding the index is full}
        """
        parsed = parse_search_request(await read_json(request))
        started = time.perf_counter()
        document = await run_in_threadpool(service.search, parsed)
        return JSONResponse(document, headers=server_timing("search", started))

    @answers_errors
    async def models(request: Request) -> Response:
        """The served model, in OpenAI's list shape.
        ---
        summary: List models (OpenAI /v1/models)
        responses:
          200: {description: "{object: list, data: [{id, object: model, created, owned_by}]}"}
        """
        return JSONResponse({"object": "list", "data": [service.model_entry()]})

    @answers_errors
    async def model(request: Request) -> Response:
        """The served model under any name (a 404 for another name with --strict-model).
        ---
        summary: Retrieve a model (OpenAI /v1/models/{model})
        responses:
          200: {description: "{id, object: model, created, owned_by}: id is the served model's name"}
          404: {description: another model's name, with --strict-model}
        """
        service.check_model(request.path_params["model"])
        return JSONResponse(service.model_entry())

    @answers_errors
    async def health(request: Request) -> Response:
        """Model, device, loaded or not, queue depth, engine rounds and inputs, uptime.
        ---
        summary: Server health
        responses:
          200: {description: "{status, model, device, loaded, queue_depth, rounds, inputs_embedded, uptime_s, index, watch}"}
        """
        return JSONResponse(service.health())

    return [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/search", search, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]


def openapi_route(app_routes: list[Route]) -> Route:
    schemas = SchemaGenerator(
        {"openapi": "3.0.0", "info": {"title": "edge-embed", "version": __version__}}
    )
    document = schemas.get_schema(app_routes)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)


def build_app(
    service: Service,
    *,
    bind_host: str = "127.0.0.1",
    api_key: str | None = None,
    cors: tuple[str, ...] = (),
    preload: bool = False,
) -> Starlette:
    """`serve`'s ASGI app, the one the tests run too: the HTTP APIs and the MCP tools at
    /mcp behind one guard; the engine thread starts with it, and stops with it before the
    index closes."""
    from edge_embed.server.mcp_tools import mcp_http_app
    from edge_embed.server.ollama import ollama_routes
    from edge_embed.server.rerank_api import rerank_routes

    mcp_route, mcp_lifespan = mcp_http_app(service)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        from edge_embed.server.watching import start_watching

        service.worker.start(preload=preload)
        watching = start_watching(service.index, service.worker, service.watch) if service.watch else None
        try:
            async with mcp_lifespan(app):
                yield
        finally:
            watcher_stopped = True if watching is None else await run_in_threadpool(watching.close)
            # after the last request (uvicorn waits for them) and the watcher
            await run_in_threadpool(service.close, watcher_stopped)

    api_routes = [*routes(service), *rerank_routes(service), *ollama_routes(service)]
    middleware = [Middleware(Guard, hosts=allowed_host_names(bind_host), api_key=api_key, cors=cors)]
    if cors:  # outermost, so allowed preflights are answered before the guard
        middleware.insert(
            0, Middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["*"], allow_headers=["*"])
        )
    return Starlette(
        routes=[*api_routes, openapi_route(api_routes), mcp_route], middleware=middleware, lifespan=lifespan
    )
