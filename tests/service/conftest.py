"""Fixtures of the HTTP-layer tests: one real Searcher (small SciFact index + default model) shared by
in-process apps, and a helper that serves an app through httpx's ASGI transport with its lifespan."""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def searcher(small_index_dir, default_model_dir):
    from models.runtime import RuntimeOptions
    from engine import Searcher

    loaded = Searcher.from_paths(
        small_index_dir, default_model_dir, RuntimeOptions(device="cpu", intra_op_threads=1), max_query_terms=64
    )
    loaded.warm_up()
    return loaded


@pytest.fixture(scope="session")
def scifact_queries(scifact_dir) -> list[str]:
    """Real SciFact query texts (the first 20)."""
    texts = []
    with open(Path(scifact_dir) / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == 20:
                break
    return texts


@pytest.fixture
def service_settings(small_index_dir, default_model_dir):
    """Settings for an in-process app over the small index; keyword overrides win."""

    def make(**overrides) -> Settings:
        values = dict(index_dir=small_index_dir, model_dir=default_model_dir, device="cpu", max_query_terms=64)
        values.update(overrides)
        return Settings(**values)

    return make


@contextlib.asynccontextmanager
async def serve_in_process(app, wait_ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test", timeout=60) as client:
            if wait_ready:
                for _ in range(600):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise TimeoutError("in-process app did not become ready")
            yield client


@pytest.fixture
def in_process(searcher, service_settings):
    """`async with in_process(**settings) as client`: an app over the shared Searcher."""

    def open_client(wait_ready: bool = True, **overrides):
        app = create_app(service_settings(**overrides), searcher=searcher)
        return serve_in_process(app, wait_ready=wait_ready)

    return open_client


@pytest.fixture
def metric_value():
    """`metric_value(exposition_text, name, labels)`: a sum of Prometheus samples (see `sum_metric`)."""
    return sum_metric


@pytest.fixture
def serve_app():
    """`async with serve_app(app, wait_ready=True) as client`: any app, in-process, lifespan running."""
    return serve_in_process


def sum_metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0.0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total
