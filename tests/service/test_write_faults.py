"""The service killed in the middle of online writes (SIGKILL: at the writer's fault points, and at random
times under a stream of writes): afterwards the index opens, the service serves, every acknowledged write is
there, and every unacknowledged batch is either wholly there or wholly absent (never half-visible)."""
from __future__ import annotations

import random
import signal
import threading
import time

import httpx
import pytest

from engine.segments import open_searchable
from tests.support.generations import Collection
from tests.support.server import running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KEY = "fault-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ENV = {"SPLADE_API_KEY": KEY, "SPLADE_WRITES": "true", "SPLADE_RELOAD_POLL_S": "0"}
# engine.lifecycle.FAULT_POINTS met by a write request (the merge point is the background merge's).
POINTS = ("after-segment-write", "before-commit-rename", "after-commit")
BATCH = 20


def batch(collection: Collection, name: str) -> list[dict]:
    return [{"id": f"{name}-{i}", "vector": collection.tokens(collection.random_document(matching=True))}
            for i in range(BATCH)]


def live_ids(index_dir) -> set[str]:
    generation = open_searchable(index_dir)
    try:
        seen = set()
        for segment in getattr(generation, "segments", []):
            live = segment.live_mask()
            ids = segment.index.external_ids(range(segment.num_slots))
            seen.update(i for n, i in enumerate(ids) if live is None or live[n])
        return seen
    finally:
        generation.close()


def check_batches(index_dir, acknowledged: list[str], unacknowledged: list[str]) -> dict[str, bool]:
    """Every acknowledged batch wholly present; every other batch wholly present or wholly absent."""
    ids = live_ids(index_dir)
    outcome = {}
    for name in acknowledged + unacknowledged:
        present = sum(f"{name}-{i}" in ids for i in range(BATCH))
        assert present in (0, BATCH), f"batch {name}: {present} of {BATCH} documents visible (half a write)"
        if name in acknowledged:
            assert present == BATCH, f"acknowledged batch {name} lost"
        outcome[name] = present == BATCH
    return outcome


def test_kill_at_each_fault_point_then_random_kills_lose_no_acknowledged_write(default_model_dir, tmp_path):
    collection = Collection(default_model_dir, seed=9, base_documents=300)
    index_dir = tmp_path / "index"
    collection.build(index_dir)
    acknowledged: list[str] = []
    unacknowledged: list[str] = []

    # 1. One fault point per process: the write dies there; the next process checks and goes on.
    for point in POINTS:
        with running_service(default_model_dir, index_dir, extra_env={**ENV, "SPLADE_FAULT_POINT": point}) as url:
            name = f"fault-{point}"
            with pytest.raises(httpx.HTTPError):  # the process dies before it answers
                httpx.put(f"{url}/documents", json={"documents": batch(collection, name)}, headers=AUTH, timeout=60)
            unacknowledged.append(name)
        outcome = check_batches(index_dir, acknowledged, unacknowledged)
        assert outcome[name] is (point == "after-commit"), (point, outcome[name])

    # 2. Real SIGKILLs at random times under a stream of writes.
    rng = random.Random(4)
    for round_number in range(2):
        with running_service(default_model_dir, index_dir, extra_env=ENV, keep_process=True) as (url, process):
            in_flight: list[str] = []
            stop = threading.Event()

            def writer():
                n = 0
                while not stop.is_set():
                    name = f"r{round_number}-{n}"
                    in_flight.append(name)
                    try:
                        reply = httpx.put(f"{url}/documents", json={"documents": batch(collection, name)},
                                          headers=AUTH, timeout=60)
                    except httpx.HTTPError:
                        return
                    if reply.status_code == 200:
                        acknowledged.append(name)
                        in_flight.remove(name)
                    n += 1

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(rng.uniform(1.0, 4.0))
            process.send_signal(signal.SIGKILL)
            process.wait()
            stop.set()
            thread.join(timeout=60)
            unacknowledged += in_flight
        assert any(name.startswith(f"r{round_number}-") for name in acknowledged), "no write was acknowledged"
        check_batches(index_dir, acknowledged, unacknowledged)

    # 3. Afterwards the service opens the index and serves, with every acknowledged write searchable.
    with running_service(default_model_dir, index_dir, extra_env=ENV) as url:
        info = httpx.get(f"{url}/info", headers=AUTH, timeout=10).json()
        document = acknowledged[-1] + "-0"
        reply = httpx.request("DELETE", f"{url}/documents", json={"ids": [document]}, headers=AUTH, timeout=60)
    assert info["lifecycle"]["documents"] >= 300 + BATCH * len(acknowledged)
    assert reply.status_code == 200  # an acknowledged document is there to delete, and the writer works
