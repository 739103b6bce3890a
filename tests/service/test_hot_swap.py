"""Hot swap of the served index (service/reloader.py) through a real uvicorn process on 127.0.0.1.

- Under load: 16 locust users search for 30 s while the index directory is replaced 12 times (documents added
  and deleted between swaps; half the swaps found by the watcher, half asked for with POST /admin/reload).
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
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tokenizers import Tokenizer

from engine.index_format import open_index
from engine.query import SparseQuery
from engine.scorers.exact import ExactScorer
from index_builder.csr_index import build_index_from_csr
from tests.support.server import REPO_ROOT, running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "hot-swap-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUERY_TERMS = 8
BASE_DOCUMENTS = 3000
SWAPS = 12
USERS = 16
RUN_SECONDS = 30


class Collection:
    """Random sparse documents over the model's vocabulary; generation g adds documents that match the query
    and deletes some of the best earlier ones, so every generation has its own top-k."""

    def __init__(self, model_dir: Path, seed: int = 11) -> None:
        manifest = json.loads((model_dir / "manifest.json").read_text())
        self.vocab_size, self.tokenizer_sha = manifest["vocab_size"], manifest["tokenizer_sha256"]
        self.rng = np.random.default_rng(seed)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        words = [tokenizer.id_to_token(i) for i in range(2000, self.vocab_size)]
        self.query_ids = self.rng.choice(np.arange(2000, self.vocab_size), QUERY_TERMS, replace=False)
        self.query_weights = np.linspace(2.0, 0.5, QUERY_TERMS).astype(np.float32)
        self.query_vector = {tokenizer.id_to_token(int(t)): float(w)
                             for t, w in zip(self.query_ids, self.query_weights)}
        assert len(words) and len(self.query_vector) == QUERY_TERMS
        self.documents: dict[str, dict[int, float]] = {}
        for i in range(BASE_DOCUMENTS):
            self.documents[f"base-{i}"] = self._random_document(matching=i % 10 == 0)
        self.generation = 0

    def _random_document(self, matching: bool) -> dict[int, float]:
        terms = self.rng.choice(self.vocab_size, 30, replace=False)
        if matching:
            terms[:3] = self.rng.choice(self.query_ids, 3, replace=False)
        weights = self.rng.uniform(0.1, 3.0, len(terms))
        return {int(t): float(w) for t, w in zip(terms, weights)}

    def next_generation(self) -> None:
        """Add 20 documents (3 of them heavier on the query than any before: a new top), delete 10 matching
        ones (among them the previous generation's best)."""
        self.generation += 1
        g = self.generation
        if g > 1:
            del self.documents[f"gen{g - 1}-0"]
        for j in range(20):
            document = self._random_document(matching=True)
            if j < 3:
                document.update({int(t): float(self.rng.uniform(3.0 + g, 4.0 + g)) for t in self.query_ids})
            self.documents[f"gen{g}-{j}"] = document
        matching = sorted(doc_id for doc_id, vec in self.documents.items()
                          if set(vec) & set(self.query_ids.tolist()) and not doc_id.startswith(f"gen{g}-"))
        for doc_id in self.rng.choice(matching, 9, replace=False):
            del self.documents[str(doc_id)]

    def build(self, out: Path) -> None:
        ids = sorted(self.documents)
        indptr, terms, weights = [0], [], []
        for doc_id in ids:
            vector = sorted(self.documents[doc_id].items())
            terms += [t for t, _ in vector]
            weights += [w for _, w in vector]
            indptr.append(len(terms))
        build_index_from_csr(out, np.array(indptr), np.array(terms, np.int32), np.array(weights, np.float32),
                             vocab_size=self.vocab_size, tokenizer_sha256=self.tokenizer_sha, ids=ids)


def expected_answer(index_dir: Path, collection: Collection, k: int) -> tuple[list[str], list[float]]:
    index = open_index(index_dir)
    scorer = ExactScorer.for_index(index)
    order = np.argsort(-collection.query_weights, kind="stable")
    query = SparseQuery(collection.query_ids[order].astype(np.int32), collection.query_weights[order])
    top = scorer.search(query, k, scorer.new_scratch(), {})
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
                collection.next_generation()
                collection.build(served)  # an atomic directory exchange, as every build does
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
    assert len(seen) >= SWAPS  # responses came from (nearly) every generation, not just the first and last
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
