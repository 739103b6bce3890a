"""Hot swap of the served index (service/reloader.py) through a real uvicorn process on 127.0.0.1.

- Under load: 16 locust users search for 30 s while the index changes 12 times (documents added and deleted
  between swaps: two of three generations as commits of new segments and delete bitmaps, every third as a whole
  rebuild; half the swaps found by the watcher, half asked for with POST /admin/reload).
  Zero failed requests, and every response equals, ids and scores, the exact answer of the one generation it
  names (no response mixes two generations).
- Refusals: a new generation with a corrupted or a truncated file is refused with a clear error; the old one
  keeps serving, and /info and the reload counter say so.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from engine.query import SparseQuery
from engine.segments import open_searchable
from engine.snapshot import Snapshot
from tests.support.generations import Collection
from tests.support.server import REPO_ROOT, running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "hot-swap-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SWAPS = 12
USERS = 16
RUN_SECONDS = 30


def expected_answer(index_dir: Path, collection: Collection, k: int) -> tuple[list[str], list[float]]:
    """The exact answer of one generation's copy (plain or segmented)."""
    index = open_searchable(index_dir)
    order = np.argsort(-collection.query_weights, kind="stable")
    query = SparseQuery(collection.query_ids[order].astype(np.int32), collection.query_weights[order])
    top, _ = Snapshot(index, "exact").search(query, k, "exact")
    return index.external_ids(top.doc_numbers), top.scores.tolist()


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def lifecycle(base_url: str) -> dict:
    return httpx.get(f"{base_url}/info", headers=AUTH, timeout=10).json()["lifecycle"]


def test_swaps_under_load_fail_no_request_and_never_mix_generations(default_model_dir, tmp_path):
    collection = Collection(default_model_dir)
    served = tmp_path / "index"
    collection.build(served)
    copies = {0: tmp_path / "generations" / "0"}
    shutil.copytree(served, copies[0])
    k = 10
    body = {"vector": collection.query_vector, "k": k}
    log = tmp_path / "responses.jsonl"
    env = {"SPLADE_API_KEY": KEY, "SPLADE_RELOAD_POLL_S": "0.2", "SPLADE_SCORE_THREADS": "2"}
    with running_service(default_model_dir, served, extra_env=env) as base_url:
        locust_env = dict(os.environ, HOT_SWAP_BODY=json.dumps(body), HOT_SWAP_LOG=str(log), HOT_SWAP_KEY=KEY)
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "tests/support/hot_swap_locustfile.py"),
             "--headless", "-u", str(USERS), "-r", str(USERS), "-t", f"{RUN_SECONDS}s", "--host", base_url,
             "--csv", str(tmp_path / "locust"), "--only-summary"],
            cwd=REPO_ROOT, env=locust_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(2)  # load first, then swap under it
            pause = (RUN_SECONDS - 6) / SWAPS
            for generation in range(1, SWAPS + 1):
                if generation % 3:  # adds and deletes committed as a new generation of segments
                    collection.commit_generation(served)
                else:  # a whole new build: an atomic directory exchange
                    collection.next_generation()
                    collection.build(served)
                copies[generation] = tmp_path / "generations" / str(generation)
                shutil.copytree(served, copies[generation])
                if generation % 2 == 0:
                    reply = httpx.post(f"{base_url}/admin/reload", headers=AUTH, timeout=60)
                    assert reply.status_code == 200, reply.text
                wait_for(lambda: lifecycle(base_url)["generation"] == generation, what=f"generation {generation}")
                time.sleep(pause)
            output, _ = locust.communicate(timeout=RUN_SECONDS + 60)
        finally:
            if locust.poll() is None:
                locust.kill()
        final = lifecycle(base_url)

    assert locust.returncode == 0, output[-3000:]
    with open(tmp_path / "locust_stats.csv", newline="") as f:
        aggregated = [row for row in csv.DictReader(f) if row["Name"] == "Aggregated"][0]
    assert int(aggregated["Failure Count"]) == 0, output[-3000:]
    responses = [json.loads(line) for line in log.read_text().splitlines()]
    # Requests still in flight when locust stops are logged here but may miss its final statistics.
    assert len(responses) >= int(aggregated["Request Count"]) > 100
    expected = {g: expected_answer(path, collection, k) for g, path in copies.items()}
    assert len({tuple(ids) for ids, _ in expected.values()}) == SWAPS + 1  # every generation answers differently
    seen = set()
    for response in responses:
        ids, scores = expected[response["generation"]]
        assert (response["ids"], response["scores"]) == (ids, scores), response
        seen.add(response["generation"])
    assert len(seen) >= SWAPS // 2  # responses came from many generations, not just the first and last
    assert final["generation"] == SWAPS and final["swaps"] == SWAPS and final["refusals"] == 0


def _corrupt(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(0)
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_damaged_generation_is_refused_and_the_old_one_keeps_serving(default_model_dir, tmp_path, damage):
    collection = Collection(default_model_dir, seed=5)
    served = tmp_path / "index"
    collection.build(served)
    body = {"vector": collection.query_vector, "k": 5}
    env = {"SPLADE_API_KEY": KEY, "SPLADE_RELOAD_POLL_S": "0.2"}
    with running_service(default_model_dir, served, extra_env=env) as base_url:
        before = httpx.post(f"{base_url}/search", json=body, headers=AUTH, timeout=30).json()
        collection.next_generation()
        staged = tmp_path / "next"
        collection.build(staged)
        victim = staged / "impacts.npy"
        if damage == "corrupted":
            _corrupt(victim)
        else:
            os.truncate(victim, victim.stat().st_size - 7)
        os.rename(served, tmp_path / "old")  # the old files stay open in the service
        os.rename(staged, served)
        wait_for(lambda: lifecycle(base_url)["refusals"] == 1, what="the refusal")
        status = lifecycle(base_url)
        after = httpx.post(f"{base_url}/search", json=body, headers=AUTH, timeout=30).json()
        reply = httpx.post(f"{base_url}/admin/reload", headers=AUTH, timeout=60)
        unauthorized = httpx.post(f"{base_url}/admin/reload", timeout=10)
        metrics = httpx.get(f"{base_url}/metrics", timeout=10).text

    assert status["last_outcome"] == "refused" and status["generation"] == 0
    assert "impacts.npy" in status["last_error"]
    assert ("sha256" if damage == "corrupted" else "truncated") in status["last_error"]
    assert after["generation"] == 0 and after["hits"] == before["hits"]  # the old generation answers, unchanged
    assert reply.status_code == 200 and reply.json()["last_outcome"] == "unchanged"  # same broken content
    assert unauthorized.status_code == 401
    assert 'splade_index_reloads_total{outcome="refused"} 1.0' in metrics


def test_a_commit_with_a_damaged_segment_is_refused_by_admin_reload(default_model_dir, tmp_path):
    """A segmented index: a new commit whose new segment file is corrupted is refused (409 naming the file);
    the previous generation keeps answering."""
    collection = Collection(default_model_dir, seed=6)
    served = tmp_path / "index"
    collection.build(served)
    body = {"vector": collection.query_vector, "k": 5}
    env = {"SPLADE_API_KEY": KEY, "SPLADE_RELOAD_POLL_S": "0"}  # no watcher: the reload is asked for
    with running_service(default_model_dir, served, extra_env=env) as base_url:
        collection.commit_generation(served)
        assert httpx.post(f"{base_url}/admin/reload", headers=AUTH, timeout=60).json()["last_outcome"] == "swapped"
        before = httpx.post(f"{base_url}/search", json=body, headers=AUTH, timeout=30).json()
        existing = set((served / "segments").iterdir())
        collection.commit_generation(served)
        [new_segment] = set((served / "segments").iterdir()) - existing
        _corrupt(new_segment / "doc_numbers.npy")
        refused = httpx.post(f"{base_url}/admin/reload", headers=AUTH, timeout=60)
        after = httpx.post(f"{base_url}/search", json=body, headers=AUTH, timeout=30).json()
        status = lifecycle(base_url)

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["type"] == "reload_refused"
    assert "doc_numbers.npy" in refused.json()["error"]["message"]
    assert after["generation"] == before["generation"] == 1 and after["hits"] == before["hits"]
    assert status["refusals"] == 1 and status["segments"] >= 2
