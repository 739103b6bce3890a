"""The Ray Serve application: a query-encoder deployment, one scorer deployment per shard, and the ingress.

    HTTP -> Ingress (FastAPI: splade_ray.ingress) -> QueryEncoder (@serve.batch)    one deployment, R replicas
                                                  -> Shard0 .. ShardN-1             one deployment per shard

Every deployment takes a fraction of a CPU (`RayOptions`), so a small machine can hold them all; replicas are
per deployment. A replica that dies is replaced by Serve's controller (health checks every
`health_check_period_s`); the ingress retries a failed shard call within the request's deadline.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve

from service.settings import Settings


@dataclass(frozen=True)
class RayOptions:
    """How the application is laid out on the cluster (flags of `python -m splade_ray serve`)."""

    encoder_replicas: int = 1
    shard_replicas: int = 1
    encoder_cpus: float = 0.5          # Ray's CPU reservation of one encoder replica (a scheduling unit)
    shard_cpus: float = 0.25
    ingress_cpus: float = 0.25
    encoder_gpus: float = 0.0          # > 0: encoder replicas are placed on GPUs and ONNX Runtime uses CUDA
    health_check_period_s: float = 2.0
    health_check_timeout_s: float = 10.0


def _quiet_tokenizers() -> None:
    # The same reason as in service/app.py: the tokenizer's thread pool fights ONNX Runtime for the cores.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@serve.deployment(name="QueryEncoder")
class QueryEncoder:
    """The query encoder; texts from concurrent requests are encoded together (@serve.batch)."""

    def __init__(self, settings: Settings, max_batch_size: int, batch_wait_s: float) -> None:
        _quiet_tokenizers()
        from models.runtime import load_query_encoder
        from models.variants import served_graph
        from service.app import runtime_options
        from splade_ray.encoding import QueryEncoding

        self.settings = settings
        encoder = load_query_encoder(settings.model_dir, runtime_options(settings))
        self.encoding = QueryEncoding(encoder, settings.max_query_terms)
        self.graph = served_graph(encoder.manifest, getattr(encoder, "onnx_path", None))
        self.encode.set_max_batch_size(max_batch_size)
        self.encode.set_batch_wait_timeout_s(batch_wait_s)
        self.encoding.encode_texts(["warm up"])

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def encode(self, requests: list[tuple[str, ...]]) -> list[dict[str, Any]]:
        """One call per batch of requests, each a tuple of texts; each request gets its texts' queries back.
        The encoder runs on a thread so the next batch queues up meanwhile (as the single-process batcher)."""
        texts = [text for request in requests for text in request]
        encoded = await asyncio.to_thread(self.encoding.encode_texts, texts)
        rows = iter((q.term_ids, q.weights) for q in encoded.queries)
        return [{"queries": [next(rows) for _ in request], "tokenize_s": encoded.tokenize_s,
                 "encode_s": encoded.encode_s, "batch_size": len(texts)} for request in requests]

    def vector(self, vector: dict[str, float], max_terms: int | None) -> dict[str, Any]:
        """A {token: weight} query resolved against the vocabulary; errors come back as values (field, message,
        limit) so the ingress raises them as the engine's InvalidQueryError."""
        from engine import InvalidQueryError

        try:
            query = self.encoding.vector_query(vector, max_terms)
        except InvalidQueryError as exc:
            return {"error": (exc.field, exc.message, exc.limit)}
        return {"term_ids": query.term_ids, "weights": query.weights}

    def tokens(self, term_ids: list[int]) -> dict[int, str]:
        return {int(t): self.encoding.encoder.token(int(t)) for t in term_ids}

    def describe(self) -> dict[str, Any]:
        encoder = self.encoding.encoder
        return {"manifest": encoder.manifest, "provider": encoder.provider, "encoder": self.graph,
                "vocab_size": encoder.vocab_size, "tokenizer_sha256": encoder.tokenizer_sha256}

    def ping(self) -> bool:
        return True


@serve.deployment
class ScorerShard:
    """One document-range shard scored through the engine (splade_ray.shard_search)."""

    def __init__(self, shard_dir: str, scorer_override: str | None) -> None:
        from splade_ray.shard_search import ShardSearcher

        self.searcher = ShardSearcher.from_path(shard_dir, scorer_override)
        self.searcher.warm_up()

    async def search(self, term_ids, weights, k: int, scorer: str | None, scorer_options) -> dict[str, Any]:
        """{"top": ShardTop, "scorer": name}, or {"error": (field, message, limit)} for a query it cannot run.
        Scoring runs on a thread (the kernels release the GIL), so one replica scores queries concurrently."""
        from engine import InvalidQueryError

        try:
            top, served_by = await asyncio.to_thread(self.searcher.search, term_ids, weights, k, scorer,
                                                     scorer_options)
        except InvalidQueryError as exc:
            return {"error": (exc.field, exc.message, exc.limit)}
        return {"top": top, "scorer": served_by}

    async def details(self, local_docs: list[int], include_text: bool, explain: bool, term_ids, weights):
        return await asyncio.to_thread(self.searcher.details, local_docs, include_text, explain, term_ids, weights)

    def describe(self) -> dict[str, Any]:
        return self.searcher.describe()

    def ping(self) -> int:
        return os.getpid()


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """HTTP edge: the single-process service's contract (splade_ray.ingress)."""

    def __init__(self, settings: Settings, encoder, shards: list, layout: dict[str, Any]) -> None:
        self.settings, self.encoder, self.shards, self.layout = settings, encoder, shards, layout

    def __serve_build_asgi_app__(self):
        from splade_ray.ingress import build_ingress_app

        return build_ingress_app(self.settings, self.encoder, self.shards, self.layout)


def build_application(settings: Settings, shards_dir: str | Path, options: RayOptions = RayOptions()):
    """The bound application over the sharded index at `shards_dir` (index_builder.shard layout)."""
    from index_builder.shard import open_shards

    shards_dir = Path(shards_dir).absolute()
    layout = open_shards(shards_dir)
    health = {"health_check_period_s": options.health_check_period_s,
              "health_check_timeout_s": options.health_check_timeout_s}
    env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    encoder = QueryEncoder.options(
        num_replicas=options.encoder_replicas,
        ray_actor_options={"num_cpus": options.encoder_cpus, "num_gpus": options.encoder_gpus, "runtime_env": env},
        **health,
    ).bind(settings, settings.encoder_max_batch_size, settings.encoder_max_wait_ms / 1000.0)
    shards = [
        ScorerShard.options(name=f"Shard{entry['number']}", num_replicas=options.shard_replicas,
                            ray_actor_options={"num_cpus": options.shard_cpus}, **health
                            ).bind(str(shards_dir / entry["dir"]), settings.scorer)
        for entry in layout["shards"]
    ]
    return Ingress.options(ray_actor_options={"num_cpus": options.ingress_cpus}, **health).bind(
        settings, encoder, shards, layout)


def wait_until_ready(base_url: str, timeout_s: float) -> None:
    """Poll GET /readyz until 200 (TimeoutError naming the last answer otherwise)."""
    import httpx

    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{base_url}/readyz not ready within {timeout_s} s (last: {last})")
