"""The FastAPI app: routes, start-up and the request-metrics middleware; the work is in `QueryPipeline`.

This is the HTTP edge: it validates requests (schemas.py), hands them to the pipeline, renders the engine's
typed results as JSON, and (errors.py) maps the engine's domain errors to status codes.
Start-up runs in the background so `/healthz` answers while the model and index load; `/readyz` (and the
search routes) answer 503 until the `Searcher` is loaded and warm. A load failure (e.g. the index and the
encoder disagree on the tokenizer) is logged with its reason and, under `python -m service`, stops the
process with a non-zero exit.
"""
# No `from __future__ import annotations` here: FastAPI must see the request model classes built at runtime.
import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path

# Short query batches gain nothing from the tokenizer's Rayon pool, whose spinning threads then compete with
# ONNX Runtime for the cores: measured 61 -> 210 queries/s with micro-batching on 2 cores. Set before the
# tokenizer is first used; an explicit TOKENIZERS_PARALLELISM in the environment wins.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from collections.abc import Callable

import orjson
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from engine import STAGES, InvalidQueryError, SearchResult, Searcher, StageTimes
from engine import scorers as engine_scorers
from engine.scorers import intra_query
from models.variants import served_graph
from service.errors import NotReadyError, install_error_handlers
from service.hybrid_options import fusion_from_settings, fusion_info, modes_first_default
from service.filter_options import filter_limits_from_settings, metadata_info
from service.metrics import ServiceMetrics
from service.pipeline import QueryPipeline
from service.batch_policy import warm_up_batch_shapes
from service.reloader import IndexReloader
from service.write_schemas import WriteResponse, write_models
from service.writes import DocumentWrites, writes_disabled
from service.security import AdminAuth, ApiKeyAuth, install_edge
from service.schemas import (BatchSearchResponse, ErrorResponse, Health, Info, ReloadResponse, SearchResponse,
                             request_models)
from service.settings import Settings, load_settings
from service.workbench import install_workbench

logger = logging.getLogger("service")

ROUTES = ("/search", "/search/batch", "/healthz", "/readyz", "/info", "/metrics", "/admin/reload", "/documents",
          "/openapi.json", "/docs")
_STARTED_KEY = "splade_started"

_ERRORS = {
    400: {"model": ErrorResponse, "description": "Malformed JSON."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (only when SPLADE_API_KEY is set)."},
    413: {"model": ErrorResponse, "description": "The body is over SPLADE_MAX_BODY_BYTES (the limit is in details)."},
    422: {"model": ErrorResponse, "description": "Invalid request: the details name the field and the limit."},
    503: {"model": ErrorResponse, "description": "Not ready yet, or the queue is full (see Retry-After)."},
    504: {"model": ErrorResponse, "description": "The search did not finish within the request timeout."},
}


def open_searcher(settings: Settings) -> Searcher:
    """The production loader: encoder + index from the configured directories."""
    try:
        return Searcher.from_paths(
            settings.index_dir, settings.model_dir, runtime_options(settings),
            max_query_terms=settings.max_query_terms, scorer=settings.scorer,
            mode=settings.mode, fusion=fusion_from_settings(settings),
            filter_limits=filter_limits_from_settings(settings),
        )
    except InvalidQueryError as exc:  # the query-like inputs here are the SPLADE_SCORER and SPLADE_MODE settings
        name = "SPLADE_MODE" if exc.field == "mode" else "SPLADE_SCORER"
        raise InvalidQueryError(name, exc.message, exc.limit) from None


def runtime_options(settings: Settings):
    """The query encoder's ONNX Runtime options, from the SPLADE_* settings."""
    from models.runtime import RuntimeOptions

    return RuntimeOptions(device=settings.device, intra_op_threads=settings.intra_op_threads,
                          graph_optimization=settings.graph_optimization, use_int8=settings.use_int8,
                          use_fp16=settings.use_fp16,
                          allow_spinning=settings.allow_spinning)


class ServiceState:
    """What the routes share: settings, metrics and, once loaded, the pipeline."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.pipeline: QueryPipeline | None = None
        self.failure: str | None = None
        # Later routes that need the key (writes, reload) depend on this same object.
        self.auth = ApiKeyAuth(settings.api_key.get_secret_value() if settings.api_key else None)
        self.admin_auth = AdminAuth(self.auth)
        self.reloader: IndexReloader | None = None  # hot swap, once loaded (service/reloader.py)
        self.writes: DocumentWrites | None = None  # SPLADE_WRITES=true, once loaded (service/writes.py)
        self.draining = False  # set on SIGTERM (service/shutdown.py): readiness fails while requests finish

    def start_draining(self) -> None:
        self.draining = True

    def require_pipeline(self) -> QueryPipeline:
        if self.pipeline is not None:
            return self.pipeline
        if self.failure is not None:
            raise NotReadyError(f"the service failed to start: {self.failure}")
        raise NotReadyError("the model and index are still loading", headers={"Retry-After": "1"})


class RequestMetricsMiddleware:
    """Pure ASGI (no per-request task): duration by endpoint and status, in-flight gauge, start stamp."""

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        scope.setdefault("state", {})[_STARTED_KEY] = started
        path = scope.get("path", "")
        endpoint = path if path in ROUTES else "other"
        status = {"code": 500}

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.request_duration.labels(endpoint=endpoint, status=str(status["code"])).observe(
                time.perf_counter() - started
            )


def _timings_ms(times: StageTimes) -> dict:
    return {stage: round(getattr(times, stage) * 1000.0, 4) for stage in STAGES}


def _server_timing(timings_ms: dict) -> str:
    return ", ".join(f"{stage};dur={timings_ms[stage]}" for stage in STAGES)


def _json(payload: dict, headers: dict | None = None, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json", headers=headers)


def render_result(result: SearchResult, include_text: bool, explain: bool) -> dict:
    """One search's JSON body (the HTTP contract in docs/design.md)."""
    hits = []
    for hit in result.hits:
        item = {"id": hit.id, "score": float(hit.score)}
        if hit.passage is not None:  # a passage index: which passage matched (docs/hybrid.md, "Long documents")
            item["passage"] = hit.passage
        if include_text:
            item["title"] = hit.title
            item["text"] = hit.text
        if explain:
            item["contributions"] = hit.contributions or {}
            if hit.subqueries is not None:
                item["subqueries"] = hit.subqueries
        hits.append(item)
    body: dict = {"hits": hits}
    if explain:
        body["query_terms"] = result.query_terms
    body["postings_traversed"] = result.postings_traversed
    body["scorer"] = result.scorer
    body["mode"] = result.mode
    body["generation"] = result.generation
    body["timings_ms"] = _timings_ms(result.timings)
    return body


def create_app(
    settings: Settings | None = None,
    *,
    searcher: Searcher | None = None,
    searcher_factory: Callable[[Settings], Searcher] = open_searcher,
    on_startup_failure: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the app. `searcher` skips loading (tests, benchmarks share one); otherwise `searcher_factory`."""
    settings = settings or load_settings()
    state = ServiceState(settings)
    models = request_models(settings)
    SearchRequest, BatchSearchRequest = models.search, models.batch
    writes = write_models(settings)
    PutDocumentsRequest, DeleteDocumentsRequest = writes.put, writes.delete

    async def load() -> None:
        loop = asyncio.get_running_loop()
        try:
            intra_query.configure(settings.search_threads)  # process-wide, like the cores it shares out
            loaded = searcher or await loop.run_in_executor(None, searcher_factory, settings)
            started = time.perf_counter()
            await loop.run_in_executor(None, loaded.warm_up)
            await loop.run_in_executor(None, warm_up_batch_shapes, loaded.encoder,
                                       settings.encoder_max_batch_tokens, settings.encoder_max_batch_size)
            pipeline = QueryPipeline(loaded, settings, state.metrics)
            pipeline.start()
            encoder, index = loaded.encoder, loaded.index
            state.metrics.describe_artifacts(
                model=str(settings.model_dir), kind=str(encoder.manifest.get("kind", "")),
                provider=encoder.provider, index=str(settings.index_dir),
                documents=index.num_documents, postings=index.num_postings,
            )
            watched = settings.index_dir if searcher is None else Path(index.path)
            state.reloader = IndexReloader(loaded, watched, state.metrics, poll_seconds=settings.reload_poll_s,
                                           verify_checksums=settings.reload_verify_checksums)
            state.reloader.start()
            if settings.writes:
                state.writes = await loop.run_in_executor(None, DocumentWrites, settings, loaded, state.reloader)
            state.pipeline = pipeline
            logger.info(
                "ready: %d documents, %d postings, provider %s, warm-up %.2f s",
                index.num_documents, index.num_postings, encoder.provider, time.perf_counter() - started,
            )
        except Exception as exc:  # noqa: BLE001 - reported, then the process is told to stop
            state.failure = f"{type(exc).__name__}: {exc}"
            logger.error("cannot serve: %s", state.failure)
            if on_startup_failure is not None:
                on_startup_failure(exc)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        logger.info("settings: %s", json.dumps(settings.public_dict(), sort_keys=True))
        loader = asyncio.get_running_loop().create_task(load(), name="splade-load")
        try:
            yield
        finally:
            loader.cancel()
            try:
                await loader
            except asyncio.CancelledError:
                pass
            if state.writes is not None:
                await asyncio.get_running_loop().run_in_executor(None, state.writes.close)
            if state.reloader is not None:
                await asyncio.get_running_loop().run_in_executor(None, state.reloader.stop)
            if state.pipeline is not None:
                await state.pipeline.stop()
                state.pipeline = None

    app = FastAPI(
        title="splade-serve",
        version="0.1.0",
        description="Learned sparse retrieval (SPLADE): ONNX query encoder + Numba-scored inverted index.",
        lifespan=lifespan,
    )
    app.state.service = state
    install_error_handlers(app)
    install_edge(app, max_body_bytes=settings.max_body_bytes, cors=settings.cors_origins)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)  # outermost: it also counts 413s
    protected = [Depends(state.auth)]

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, dependencies=protected)
    async def search(body: SearchRequest, request: Request) -> Response:
        """Search with a query text or a raw sparse vector; stage timings also in `Server-Timing`."""
        started = request.state.splade_started
        pipeline = state.require_pipeline()
        [result] = await pipeline.run([pipeline.prepare(body)], started)
        payload = render_result(result, body.include_text, body.explain)
        return _json(payload, {"Server-Timing": _server_timing(payload["timings_ms"])})

    @app.post("/search/batch", response_model=BatchSearchResponse, responses=_ERRORS, dependencies=protected)
    async def search_batch(body: BatchSearchRequest, request: Request) -> Response:
        """Many searches in one call; their texts are encoded together."""
        started = request.state.splade_started
        pipeline = state.require_pipeline()
        prepared = [pipeline.prepare(q, field_prefix=f"queries[{i}].") for i, q in enumerate(body.queries)]
        results = await pipeline.run(prepared, started)
        per_query = [r.timings for r in results]
        overall = StageTimes(
            # Texts share encoder batches, so their tokenize/queue/encode overlap: report the longest.
            tokenize=max(t.tokenize for t in per_query), queue=max(t.queue for t in per_query),
            encode=max(t.encode for t in per_query), score=sum(t.score for t in per_query),
            total=time.perf_counter() - started,
        )
        rendered = [render_result(r, q.include_text, q.explain)
                    for r, q in zip(results, body.queries)]
        payload = {"results": rendered, "timings_ms": _timings_ms(overall)}
        return _json(payload, {"Server-Timing": _server_timing(payload["timings_ms"])})

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Response:
        """The process is alive (it may still be loading)."""
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=Health, responses={503: _ERRORS[503]})
    async def readyz() -> Response:
        """The model and index are loaded and warm, and the service is not shutting down."""
        if state.draining:
            raise NotReadyError("the service is shutting down", headers={"Retry-After": "1"})
        state.require_pipeline()
        return _json({"status": "ready"})

    @app.get("/info", response_model=Info, responses={503: _ERRORS[503]}, dependencies=protected)
    async def info() -> Response:
        """Model and index manifests, execution provider, the scorers the index serves, and settings."""
        pipeline = state.require_pipeline()
        encoder = pipeline.searcher.encoder
        with pipeline.searcher.acquire() as snapshot:
            servable = snapshot.available_scorers
            return _json(
                {
                    "model": encoder.manifest,
                    "index": snapshot.index.manifest,
                    "provider": encoder.provider,
                    "encoder": served_graph(encoder.manifest, getattr(encoder, "onnx_path", None)),
                    "scorers": {
                        "default": snapshot.default_scorer,
                        "available": snapshot.choices,
                        "details": {name: engine_scorers.registered()[name].describe() for name in servable},
                        "configs": {name: config.model_dump(mode="json")
                                    for name, config in snapshot.index.typed_manifest.configs.items()},
                    },
                    "modes": modes_first_default(snapshot.index, pipeline.searcher.mode),
                    "fusion": fusion_info(pipeline.searcher.fusion),
                    "lifecycle": state.reloader.status() if state.reloader else None,
                    "metadata": metadata_info(snapshot.index, pipeline.searcher.filter_limits),
                    "settings": settings.public_dict(),
                }
            )

    @app.post("/admin/reload", response_model=ReloadResponse, dependencies=[Depends(state.admin_auth)],
              responses={401: _ERRORS[401], 503: _ERRORS[503],
                         403: {"model": ErrorResponse, "description": "No API key is configured: admin is off."},
                         409: {"model": ErrorResponse, "description": "The new index was refused; the old one serves."}})
    async def admin_reload() -> Response:
        """Swap in what the index directory holds now (opened, verified, warmed first); 409 if it is refused."""
        state.require_pipeline()
        status = await asyncio.get_running_loop().run_in_executor(None, state.reloader.reload, "admin")
        return _json(ReloadResponse(**{k: status[k] for k in ReloadResponse.model_fields}).model_dump())

    write_errors = {401: _ERRORS[401], 413: _ERRORS[413], 422: _ERRORS[422], 503: _ERRORS[503],
                    403: {"model": ErrorResponse, "description": "Writes are off (SPLADE_WRITES=false)."},
                    409: {"model": ErrorResponse, "description": "Another writer holds the index's write lock."}}

    def document_writes():
        state.require_pipeline()
        if state.writes is None:
            raise writes_disabled()
        return state.writes

    @app.put("/documents", response_model=WriteResponse, responses=write_errors, dependencies=protected)
    async def put_documents(body: PutDocumentsRequest) -> Response:
        """Add documents (an existing id is replaced); 200 means durable and visible to the next search."""
        target = document_writes()
        done = await asyncio.get_running_loop().run_in_executor(None, target.put, list(body.documents))
        return _json(WriteResponse(**done).model_dump())

    @app.delete("/documents", response_model=WriteResponse, responses=write_errors, dependencies=protected)
    async def delete_documents(body: DeleteDocumentsRequest) -> Response:
        """Delete documents by id (every id must exist); 200 means durable and visible to the next search."""
        target = document_writes()
        done = await asyncio.get_running_loop().run_in_executor(None, target.delete, list(body.ids))
        return _json(WriteResponse(**done).model_dump())

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)

    if settings.ui:
        install_workbench(app)

    return app


def create_app_from_env() -> FastAPI:
    """For `uvicorn --factory service.app:create_app_from_env`."""
    return create_app(load_settings())
