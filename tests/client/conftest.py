"""Fixtures of the client tests: real `python -m service` processes on 127.0.0.1 over the small SciFact index
(tests/conftest.py builds it), one with the default settings and one whose queue holds a single text."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import running_service

QUIET_CPU = {"SPLADE_DEVICE": "cpu", "SPLADE_INTRA_OP_THREADS": "1", "SPLADE_LOG_LEVEL": "warning"}
# How long a lone text waits in the one-slot queue for company: every other text meanwhile gets 503 +
# Retry-After: 1. Two seconds leave a wide margin around the client's retry at ~1.0-1.1 s.
HOLD_S = 2.0


@pytest.fixture(scope="module")
def service_url(default_model_dir, small_index_dir) -> str:
    with running_service(default_model_dir, small_index_dir, QUIET_CPU) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def busy_service_url(default_model_dir, small_index_dir) -> str:
    env = dict(
        QUIET_CPU,
        SPLADE_QUEUE_LIMIT="1",
        SPLADE_MAX_BATCH_QUERIES="1",
        SPLADE_ENCODER_MAX_BATCH_SIZE="64",
        SPLADE_ENCODER_MAX_WAIT_MS=str(int(HOLD_S * 1000)),
        SPLADE_REQUEST_TIMEOUT_S="30",
    )
    with running_service(default_model_dir, small_index_dir, env) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def queries(scifact_dir) -> list[str]:
    """Real SciFact query texts (the first 8)."""
    texts = []
    with open(Path(scifact_dir) / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if len(texts) == 8:
                break
    return texts


def metric(base_url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the service's samples called `name` whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total


def wait_for_in_flight(base_url: str, count: int, timeout_s: float = 30) -> None:
    """Until `count` requests are in flight besides the /metrics request that asks (no sleeps guessed)."""
    deadline = time.monotonic() + timeout_s
    while metric(base_url, "splade_requests_in_flight") - 1 < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} requests never in flight at {base_url}")
        time.sleep(0.01)
