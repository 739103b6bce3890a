"""The Ray ingress's HTTP app: the single-process service's contract (service/schemas.py, service/errors.py,
the same routes, bodies and error shape) over a query-encoder deployment and N scorer-shard deployments.

A search: encode (the encoder deployment micro-batches texts with @serve.batch) -> fan out the query to every
shard -> merge the shards' top-k with the engine's tie rule on the global document number (splade_ray.merge)
-> fetch ids (and text, contributions) from the shards that hold the returned hits, for those hits only.

Failures: a shard call that fails because its replica died (or none is up) is retried until the request's
deadline (`SPLADE_REQUEST_TIMEOUT_S`) while Ray restarts the replica; past the deadline the answer is 503 with
`Retry-After` naming the missing shards. A request with `"allow_partial": true` is answered without the shards
that failed or did not answer within half its remaining time (the other half fetches its hits), and its body lists
them under `missing_shards`; no other request ever gets a partial answer.

What the Ray deployment does not serve (a 422 naming the field): `mode` other than `splade` (BM25 statistics are
per collection, not per shard), `two_phase_ratio`, and `filter` (shards carry no metadata part).
"""
# No `from __future__ import annotations`: FastAPI must see the request model classes built at runtime.
import asyncio
import logging
import time
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from pydantic import Field, create_model
from starlette.responses import Response

from engine import Hit, InvalidQueryError, SearchResult, SparseQuery, StageTimes
from engine import query_pruning
from engine import scorers as engine_scorers
from service.app import RequestMetricsMiddleware, _json, _server_timing, _timings_ms, render_result
from service.errors import ApiError, NotReadyError, install_error_handlers
from service.schemas import BatchSearchResponse, ErrorResponse, Health, SearchResponse, request_models
from service.security import ApiKeyAuth, install_edge
from service.settings import Settings
from splade_ray.merge import MergedHit, ShardTop, merge_top_k, merged_stats
from splade_ray.metrics import RayMetrics

logger = logging.getLogger("splade_ray.ingress")

# Pause between retries of a failed shard call while Ray restarts its replica.
RETRY_PAUSE_S = 0.1
# With allow_partial, the fan-out waits for a shard at most this share of the request's deadline, so that the
# time left can fetch the returned hits' ids and text from the shards that did answer.
PARTIAL_WAIT_FRACTION = 0.5
# /readyz waits this long for each shard to answer a ping.
READY_PING_TIMEOUT_S = 2.0


class ShardsUnavailableError(ApiError):
    """Some shards did not answer within the request's deadline (and the request did not allow partial results)."""

    status_code = 503
    error_type = "shards_unavailable"

    def __init__(self, missing: list[int], timeout_s: float) -> None:
        super().__init__(
            f"shards {missing} did not answer within the request's deadline of {timeout_s} s (their replicas are "
            "restarting or overloaded); retry shortly, or send \"allow_partial\": true to accept results without them",
            [{"field": "shards", "message": f"shard {m} unavailable", "limit": timeout_s} for m in missing],
            headers={"Retry-After": "1"},
        )


class EncoderUnavailableError(ApiError):
    """The query encoder did not answer within the request's deadline (its replicas are restarting or busy)."""

    status_code = 503
    error_type = "encoder_unavailable"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the query encoder did not answer within the request's deadline of {timeout_s} s; retry "
                         "shortly", [{"field": "encoder", "message": "unavailable", "limit": timeout_s}],
                         headers={"Retry-After": "1"})


class _ShardFailed(Exception):
    """A deployment call that failed or ran out of time; `shard` is the shard number (-1: the encoder)."""

    def __init__(self, shard: int) -> None:
        super().__init__(f"shard {shard} unavailable")
        self.shard = shard


ENCODER = -1


def _is_unavailable(exc: BaseException) -> bool:
    """A failure of the replica or of the routing to it (retry), not an error raised by our own code (a bug)."""
    import ray.exceptions

    if isinstance(exc, ray.exceptions.RayTaskError):
        return False
    return isinstance(exc, (ray.exceptions.RayError, ConnectionError))


async def _call(method: Any, deadline: float, shard: int, retry: bool, *args: Any) -> Any:
    """`await method.remote(*args)`, retried on replica failures until `deadline` (when `retry`)."""
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise _ShardFailed(shard)
        response = method.remote(*args)
        try:
            return await asyncio.wait_for(response, remaining)
        except (TimeoutError, asyncio.TimeoutError):
            response.cancel()
            raise _ShardFailed(shard) from None
        except Exception as exc:  # noqa: BLE001 - sorted just below
            if not _is_unavailable(exc):
                raise
            logger.warning("%s call failed (%s); %s", "encoder" if shard == ENCODER else f"shard {shard}",
                           type(exc).__name__,
                           "retrying within the deadline" if retry else "reported missing")
            if not retry:
                raise _ShardFailed(shard) from None
            await asyncio.sleep(min(RETRY_PAUSE_S, max(deadline - time.perf_counter(), 0)))


def build_ingress_app(settings: Settings, encoder: Any, shards: list[Any], layout: dict[str, Any]) -> FastAPI:
    """The ASGI app of the ingress deployment; `encoder` and `shards` are Ray Serve deployment handles."""
    metrics = RayMetrics(len(shards))
    models = request_models(settings)
    allow_partial = (bool, Field(False, description="Answer without shards that are unavailable; the response "
                                                    "then lists them in `missing_shards`."))
    SearchRequest = create_model("SearchRequest", __base__=models.search, allow_partial=allow_partial)
    BatchSearchRequest = create_model("BatchSearchRequest", __base__=models.batch,
                                      queries=(list[SearchRequest], Field(..., min_length=1,
                                                                          max_length=settings.max_batch_queries)))
    auth = ApiKeyAuth(settings.api_key.get_secret_value() if settings.api_key else None)
    state: dict[str, Any] = {"described": None}
    first_documents = [entry["first_document"] for entry in layout["shards"]]

    async def described() -> dict[str, Any]:
        """The encoder's and shard 0's descriptions (fetched once: they do not change while serving)."""
        if state["described"] is None:
            model, shard0 = await asyncio.gather(encoder.describe.remote(), shards[0].describe.remote())
            state["described"] = {"model": model, "shard": shard0}
            metrics.describe_artifacts(
                model=str(settings.model_dir), kind=str(model["manifest"].get("kind", "")),
                provider=model["provider"], index=str(settings.index_dir),
                documents=layout["total_documents"], postings=layout["source"].get("postings", 0))
        return state["described"]

    def check_request(body: Any, prefix: str, choices: list[str]) -> None:
        mode = body.mode or settings.mode
        if mode != "splade":
            raise InvalidQueryError(prefix + "mode", f"mode {mode!r} is not served by the Ray deployment (BM25 "
                                    "statistics are per collection, not per shard)", "splade")
        if body.two_phase_ratio is not None:
            raise InvalidQueryError(prefix + "two_phase_ratio", "not served by the Ray deployment", None)
        if getattr(body, "filter", None) is not None:  # never silently unfiltered: shards carry no metadata
            raise InvalidQueryError(prefix + "filter", "metadata filters are not served by the Ray deployment "
                                    "(shards carry no metadata part; docs/ray.md)", None)
        query_pruning.check(body.query_weight_mass, body.query_weight_ratio, settings.min_query_weight_mass,
                            settings.max_query_weight_ratio, None, settings.max_two_phase_ratio)
        if body.scorer is not None and body.scorer not in choices:
            raise InvalidQueryError(prefix + "scorer", f"unknown or unservable scorer {body.scorer!r}", choices)

    async def encode(bodies: list[Any], deadline: float) -> list[dict[str, Any]]:
        """Each body's query: texts through the batched encoder deployment, vectors resolved there too."""
        texts = tuple(b.query for b in bodies if b.query is not None)
        outcomes: list[dict[str, Any] | None] = [None] * len(bodies)
        started = time.perf_counter()
        pending = []
        if texts:
            pending.append(("texts", _call(encoder.encode, deadline, ENCODER, True, texts)))
        for i, body in enumerate(bodies):
            if body.vector is not None:
                pending.append((i, _call(encoder.vector, deadline, ENCODER, True, dict(body.vector),
                                         body.query_max_terms)))
        try:
            answers = await asyncio.gather(*(call for _, call in pending))
        except _ShardFailed:
            metrics.rejected.labels(reason="timeout").inc()
            raise EncoderUnavailableError(settings.request_timeout_s) from None
        round_trip = time.perf_counter() - started
        for (key, _), answer in zip(pending, answers):
            if key == "texts":
                text_rows = iter(answer["queries"])
                for i, body in enumerate(bodies):
                    if body.query is not None:
                        term_ids, weights = next(text_rows)
                        outcomes[i] = {"term_ids": term_ids, "weights": weights, "tokenize_s": answer["tokenize_s"],
                                       "encode_s": answer["encode_s"],
                                       "queue_s": max(round_trip - answer["tokenize_s"] - answer["encode_s"], 0.0)}
            else:
                if "error" in answer:
                    field, message, limit = answer["error"]
                    prefix = f"queries[{key}]." if len(bodies) > 1 else ""
                    raise InvalidQueryError(prefix + field, message, limit)
                outcomes[key] = {"term_ids": answer["term_ids"], "weights": answer["weights"],
                                 "tokenize_s": 0.0, "queue_s": 0.0, "encode_s": round_trip}
        return outcomes

    async def fan_out(body: Any, query: SparseQuery, deadline: float, prefix: str
                      ) -> tuple[list[ShardTop], list[int], str]:
        """Every shard's top-k (retrying within the deadline); (answers, missing shards, scorer name)."""
        retry = not body.allow_partial
        if body.allow_partial:
            now = time.perf_counter()
            deadline = now + (deadline - now) * PARTIAL_WAIT_FRACTION

        async def one(number: int) -> tuple[ShardTop, str] | None:
            started = time.perf_counter()
            try:
                answer = await _call(shards[number].search, deadline, number, retry, query.term_ids, query.weights,
                                     body.k, body.scorer, body.scorer_options)
            except _ShardFailed:
                metrics.shard_failures.labels(shard=str(number)).inc()
                return None
            metrics.shard_call.labels(shard=str(number)).observe(time.perf_counter() - started)
            if "error" in answer:
                field, message, limit = answer["error"]
                raise InvalidQueryError(prefix + field, message, limit)
            top = answer["top"]
            metrics.shard_score.labels(shard=str(number)).observe(top.score_s)
            return top, answer["scorer"]

        answers = await asyncio.gather(*(one(n) for n in range(len(shards))))
        missing = [n for n, a in enumerate(answers) if a is None]
        served = [a for a in answers if a is not None]
        scorer = served[0][1] if served else (body.scorer or "")
        return [top for top, _ in served], missing, scorer

    async def hit_details(body: Any, query: SparseQuery, merged: list[MergedHit], deadline: float,
                          tokens: dict[int, str]) -> tuple[list[Hit], list[int]]:
        """Hits with ids (and text, contributions) fetched from the shards holding them; (hits, failed shards)."""
        by_shard: dict[int, list[int]] = {}
        for hit in merged:
            by_shard.setdefault(hit.shard, []).append(hit.local_doc)
        retry = not body.allow_partial

        async def one(number: int) -> tuple[int, list[dict] | None]:
            try:
                return number, await _call(shards[number].details, deadline, number, retry, by_shard[number],
                                           body.include_text, body.explain, query.term_ids, query.weights)
            except _ShardFailed:
                metrics.shard_failures.labels(shard=str(number)).inc()
                return number, None

        fetched = dict(await asyncio.gather(*(one(n) for n in by_shard)))
        failed = sorted(n for n, items in fetched.items() if items is None)
        positions = {n: iter(items) for n, items in fetched.items() if items is not None}
        hits = []
        for hit in merged:
            if hit.shard in failed:
                continue
            item = next(positions[hit.shard])
            out = Hit(hit.global_doc, item["id"], hit.score, item.get("title"), item.get("text"))
            if body.explain:
                out.contributions = {tokens[t]: v for t, v in item.get("contributions", {}).items()}
            hits.append(out)
        return hits, failed

    async def search_one(body: Any, encoded: dict[str, Any], deadline: float, started: float, prefix: str
                         ) -> tuple[SearchResult, list[int]]:
        query = SparseQuery(np.asarray(encoded["term_ids"], np.int32), np.asarray(encoded["weights"], np.float32))
        if body.query is not None:  # encoded with the server's limit; the request keeps its own prefix
            query = query.keep_heaviest(body.query_max_terms or settings.max_query_terms)
        query = query_pruning.prune(query, body.query_weight_mass, body.query_weight_ratio)
        times = StageTimes(tokenize=encoded["tokenize_s"], queue=encoded["queue_s"], encode=encoded["encode_s"])
        score_started = time.perf_counter()
        tops, missing, scorer = await fan_out(body, query, deadline, prefix)
        if missing and not body.allow_partial:
            metrics.rejected.labels(reason="shard_unavailable").inc()
            raise ShardsUnavailableError(missing, settings.request_timeout_s)
        merge_started = time.perf_counter()
        merged = merge_top_k(tops, body.k)
        metrics.merge.observe(time.perf_counter() - merge_started)
        tokens = encoded.get("tokens", {})
        hits, failed = await hit_details(body, query, merged, deadline, tokens)
        if failed and not body.allow_partial:
            metrics.rejected.labels(reason="shard_unavailable").inc()
            raise ShardsUnavailableError(failed, settings.request_timeout_s)
        missing = sorted(set(missing) | set(failed))
        if missing:
            metrics.partial_responses.inc()
        times.score = time.perf_counter() - score_started
        times.total = time.perf_counter() - started
        metrics.observe_stages(times)
        metrics.query_terms.observe(len(query))
        stats = merged_stats(tops)
        metrics.postings_traversed.observe(stats.get("postings_traversed", 0))
        terms = [(tokens[t], float(w)) for t, w in zip(query.term_ids.tolist(), query.weights.tolist())] \
            if body.explain else None
        return SearchResult(query, hits, scorer, stats, times, terms, "splade"), missing

    async def run(bodies: list[Any], started: float) -> list[tuple[SearchResult, list[int]]]:
        info = await described()
        prefixes = [f"queries[{i}]." if len(bodies) > 1 else "" for i in range(len(bodies))]
        for body, prefix in zip(bodies, prefixes):
            check_request(body, prefix, info["shard"]["choices"])
        deadline = started + settings.request_timeout_s
        encoded = await encode(bodies, deadline)
        if any(b.explain for b in bodies):
            need = sorted({int(t) for e in encoded for t in np.asarray(e["term_ids"]).tolist()})
            names = await encoder.tokens.remote(need)
            for e in encoded:
                e["tokens"] = names
        return list(await asyncio.gather(*(search_one(b, e, deadline, started, p)
                                           for b, e, p in zip(bodies, encoded, prefixes))))

    def render(result: SearchResult, missing: list[int], body: Any) -> dict:
        payload = render_result(result, body.include_text, body.explain)
        if body.allow_partial:
            payload["missing_shards"] = missing
        return payload

    app = FastAPI(title="splade-serve (Ray)", version="0.1.0",
                  description="Learned sparse retrieval on Ray Serve: the single-process service's HTTP contract.")
    install_error_handlers(app)
    install_edge(app, max_body_bytes=settings.max_body_bytes, cors=settings.cors_origins)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    errors = {422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}, 504: {"model": ErrorResponse}}
    protected = [Depends(auth)]

    @app.post("/search", response_model=SearchResponse, responses=errors, dependencies=protected)
    async def search(body: SearchRequest, request: Request) -> Response:
        started = getattr(request.state, "splade_started", time.perf_counter())
        [(result, missing)] = await run([body], started)
        payload = render(result, missing, body)
        return _json(payload, {"Server-Timing": _server_timing(payload["timings_ms"])})

    @app.post("/search/batch", response_model=BatchSearchResponse, responses=errors, dependencies=protected)
    async def search_batch(body: BatchSearchRequest, request: Request) -> Response:
        started = getattr(request.state, "splade_started", time.perf_counter())
        results = await run(list(body.queries), started)
        per_query = [r.timings for r, _ in results]
        overall = StageTimes(tokenize=max(t.tokenize for t in per_query), queue=max(t.queue for t in per_query),
                             encode=max(t.encode for t in per_query), score=sum(t.score for t in per_query),
                             total=time.perf_counter() - started)
        payload = {"results": [render(r, m, q) for (r, m), q in zip(results, body.queries)],
                   "timings_ms": _timings_ms(overall)}
        return _json(payload, {"Server-Timing": _server_timing(payload["timings_ms"])})

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=Health, responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """Ready when the encoder and every shard answer a ping."""
        deadline = time.perf_counter() + READY_PING_TIMEOUT_S
        pings = [_call(shard.ping, deadline, n, False) for n, shard in enumerate(shards)]
        outcomes = await asyncio.gather(*pings, encoder.ping.remote(), return_exceptions=True)
        down = [n for n, outcome in enumerate(outcomes[:-1]) if isinstance(outcome, BaseException)]
        if down or isinstance(outcomes[-1], BaseException):
            what = f"shards {down}" if down else "the query encoder"
            raise NotReadyError(f"{what} not answering (starting or restarting)", headers={"Retry-After": "1"})
        return _json({"status": "ready"})

    @app.get("/info", responses={503: {"model": ErrorResponse}}, dependencies=protected)
    async def info() -> Response:
        """Model manifest, the shard layout with each shard's manifest, scorers, modes and settings."""
        described_now = await described()
        model, shard0 = described_now["model"], described_now["shard"]
        manifests = await asyncio.gather(*(s.describe.remote() for s in shards))
        return _json({
            "model": model["manifest"],
            "index": {**layout, "manifests": [m["manifest"] for m in manifests]},
            "provider": model["provider"],
            "encoder": model["encoder"],
            "scorers": {"default": shard0["default_scorer"], "available": shard0["choices"],
                        "details": {n: engine_scorers.registered()[n].describe() for n in shard0["available"]},
                        "configs": {}},
            "modes": ["splade"],
            "fusion": {},
            "settings": settings.public_dict(),
            "deployment": {"kind": "ray", "shards": len(shards), "first_documents": first_documents},
        })

    @app.get("/metrics", include_in_schema=False)
    async def metrics_route() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app
