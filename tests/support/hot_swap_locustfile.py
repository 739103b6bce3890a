"""Locust users for the hot-swap test: the same vector query, as fast as they can; every response's
generation, ids and scores go to a JSON-lines log so the test can check each one against exactly one
generation. Configured by environment: HOT_SWAP_BODY (the JSON request body), HOT_SWAP_LOG (the log path),
HOT_SWAP_KEY (the API key, sent as a bearer token)."""
from __future__ import annotations

import json
import os

from locust import FastHttpUser, task

BODY = json.loads(os.environ["HOT_SWAP_BODY"])
HEADERS = {"Authorization": f"Bearer {os.environ['HOT_SWAP_KEY']}"}
LOG = open(os.environ["HOT_SWAP_LOG"], "a", encoding="utf-8")  # noqa: SIM115 - one handle for the whole run


class SameQueryUser(FastHttpUser):
    @task
    def search(self) -> None:
        with self.client.post("/search", json=BODY, headers=HEADERS, catch_response=True, name="/search") as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            LOG.write(json.dumps({"generation": body["generation"], "ids": [h["id"] for h in body["hits"]],
                                  "scores": [h["score"] for h in body["hits"]]}) + "\n")
            LOG.flush()
