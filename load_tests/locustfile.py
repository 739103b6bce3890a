"""Locust users for splade-serve: realistic queries, a weighted mix of endpoints, every answer checked.

Run through the bounded runner (`python -m load_tests --help`); with plain `locust -f` the same bounds hold:
the run stops after LOAD_TEST_MAX_RUN_TIME_S when no --run-time is given, after LOAD_TEST_MAX_REQUESTS
requests, and refuses a non-loopback host unless LOAD_TEST_ALLOW_REMOTE_HOST=1.

Two user classes (pick one by name on the command line):
  SearchUser       closed model: a fixed number of users, each sending its next request as soon as the last
                   one is answered (plus a short think time).
  PacedSearchUser  open model: with the ConstantArrivalRate shape (LOAD_TEST_ARRIVAL_RATE set), requests start
                   at a constant total rate whatever the latency, as long as there are enough user slots.

Environment:
  LOAD_TEST_QUERIES         BEIR queries.jsonl or a text file, one query a line (default: the demo queries)
  LOAD_TEST_ARRIVAL_RATE    requests/s for the open model (enables the ConstantArrivalRate shape)
  LOAD_TEST_USERS           user slots for the open model; LOAD_TEST_RUN_TIME_S its duration
  LOAD_TEST_MAX_REQUESTS    stop after this many requests (default and ceiling in bounds.py)
  LOAD_TEST_SUMMARY         where to write the exact-percentile summary JSON (report.py)
  LOAD_TEST_SEED            seed of the query choice (default 0: runs are repeatable)
"""
from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import gevent
from locust import LoadTestShape, between, constant_pacing, events, task
from locust.exception import StopUser
from locust.contrib.fasthttp import FastHttpUser

from load_tests import bounds
from load_tests.checks import batch_problems, search_problems
from load_tests.queries import load_queries
from load_tests.report import summarize, write_summary

logger = logging.getLogger("load_tests")

QUERIES = load_queries(os.environ.get("LOAD_TEST_QUERIES") or None)
MAX_REQUESTS = min(int(os.environ.get("LOAD_TEST_MAX_REQUESTS", bounds.DEFAULT_MAX_REQUESTS)), bounds.MAX_REQUESTS)
MAX_RUN_TIME_S = min(float(os.environ.get("LOAD_TEST_MAX_RUN_TIME_S", bounds.MAX_RUN_TIME_S)), bounds.MAX_RUN_TIME_S)
ALLOW_REMOTE = os.environ.get("LOAD_TEST_ALLOW_REMOTE_HOST") == "1"
SUMMARY_PATH = os.environ.get("LOAD_TEST_SUMMARY")
BATCH_SIZE = 4


class _Run:
    """What one run records: every request's time and failure, for the exact summary and the request cap."""

    records: list[tuple[str, float, str | None]] = []
    started: float | None = None
    stopped: float | None = None
    stopped_by = "run_time"
    environment = None


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs):
    _Run.records, _Run.started, _Run.stopped, _Run.stopped_by = [], time.monotonic(), None, "run_time"
    try:
        bounds.check_host(environment.host or "", allow_remote=ALLOW_REMOTE)
    except bounds.BoundsError as exc:
        logger.error("refusing to run: %s", exc)
        _Run.stopped_by = "refused_host"
        gevent.spawn(environment.runner.quit)
        return
    run_time = getattr(environment.parsed_options, "run_time", None) if environment.parsed_options else None
    if not run_time and environment.shape_class is None:
        # No --run-time: enforce the ceiling ourselves, so a plain `locust -f` run still ends.
        gevent.spawn_later(MAX_RUN_TIME_S, _stop, environment, "max_run_time")


def _stop(environment, reason: str) -> None:
    if _Run.stopped is None:
        _Run.stopped_by = reason
        environment.runner.quit()


@events.init.add_listener
def _on_init(environment, **_kwargs):
    _Run.environment = environment


@events.request.add_listener
def _on_request(name, response_time, exception, **_kwargs):
    _Run.records.append((name, float(response_time), None if exception is None else str(exception)[:200]))
    if len(_Run.records) == MAX_REQUESTS:
        logger.warning("request cap of %d reached: stopping", MAX_REQUESTS)
        gevent.spawn(_stop, _Run.environment, "request_cap")


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs):
    _Run.stopped = time.monotonic()
    _write_summary()


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs):
    _write_summary()


def _write_summary() -> None:
    if not SUMMARY_PATH or _Run.started is None:
        return
    duration = (_Run.stopped or time.monotonic()) - _Run.started
    write_summary(summarize(_Run.records, duration, _Run.stopped_by), Path(SUMMARY_PATH))


class _SearchUserBase(FastHttpUser):
    """The weighted request mix shared by both user classes."""

    abstract = True

    def on_start(self) -> None:
        seed = int(os.environ.get("LOAD_TEST_SEED", "0"))
        self.rng = random.Random(f"{seed}-{id(self)}")

    def _query(self) -> str:
        if len(_Run.records) >= MAX_REQUESTS:  # the cap: no new request, only those in flight finish
            raise StopUser()
        return self.rng.choice(QUERIES)

    def _search(self, name: str, k: int, include_text: bool) -> None:
        body = {"query": self._query(), "k": k, "include_text": include_text}
        with self.client.post("/search", json=body, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_status_failure(response))
                return
            problems = search_problems(_json(response), k, include_text)
            if problems:
                response.failure("; ".join(problems[:3]))

    @task(6)
    def search_k10(self) -> None:
        self._search("/search k=10", 10, False)

    @task(2)
    def search_k100_text(self) -> None:
        self._search("/search k=100 include_text", 100, True)

    @task(1)
    def search_batch(self) -> None:
        body = {"queries": [{"query": self._query(), "k": 10} for _ in range(BATCH_SIZE)]}
        with self.client.post("/search/batch", json=body, name=f"/search/batch x{BATCH_SIZE}",
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_status_failure(response))
                return
            problems = batch_problems(_json(response), 10, BATCH_SIZE)
            if problems:
                response.failure("; ".join(problems[:3]))


def _status_failure(response) -> str:
    """Why a non-200 answer failed: the connection error when there was no answer, else the body's start."""
    detail = (response.text or "") if response.status_code else getattr(response, "error", "")
    return f"status {response.status_code}: {str(detail)[:120]}"


def _json(response):
    try:
        return response.json()
    except Exception:  # noqa: BLE001 - any undecodable body is a failed check, reported as such
        return None


class SearchUser(_SearchUserBase):
    """Closed model: a fixed number of users with a short think time."""

    wait_time = between(0.0, 0.05)


ARRIVAL_RATE = float(os.environ.get("LOAD_TEST_ARRIVAL_RATE", "0") or 0)
SLOTS = int(os.environ.get("LOAD_TEST_USERS", "8"))


class PacedSearchUser(_SearchUserBase):
    """Open model: each of SLOTS users starts one request every SLOTS/RATE seconds, so the total arrival rate
    is RATE whatever the latency, while a request takes less than that interval (else arrivals fall behind:
    give more slots)."""

    wait_time = constant_pacing(SLOTS / ARRIVAL_RATE if ARRIVAL_RATE > 0 else 1.0)


if ARRIVAL_RATE > 0:

    class ConstantArrivalRate(LoadTestShape):
        """All SLOTS paced users from the first second, for LOAD_TEST_RUN_TIME_S seconds, then stop."""

        run_time_s = min(float(os.environ.get("LOAD_TEST_RUN_TIME_S", "15")), MAX_RUN_TIME_S)

        def tick(self):
            if self.get_run_time() >= self.run_time_s:
                return None
            return SLOTS, SLOTS
