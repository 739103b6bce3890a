"""CI smoke test: a real uvicorn service on 127.0.0.1 and a 15-second headless locust run with 8 users.

The run must have zero failures (every response checked for status and shape), and the runner's real exit
status must say no to an impossible objective (p99 < 0.001 ms) and to failing requests.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import running_service

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def run_load_tests(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "load_tests", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


def test_fifteen_seconds_of_eight_users_without_failure_and_objectives_that_can_fail(
    default_model_dir, small_index_dir, scifact_dir, tmp_path
):
    prefix = tmp_path / "smoke"
    with running_service(default_model_dir, small_index_dir) as base_url:
        run = run_load_tests("--host", base_url, "--users", "8", "--run-time", "15s",
                             "--queries", str(scifact_dir / "queries.jsonl"), "--csv", str(prefix))
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

        # Requests that the service refuses (a query above SPLADE_MAX_QUERY_CHARS) must count as failures.
        too_long = tmp_path / "too-long.txt"
        too_long.write_text("protein " * 1000 + "\n")
        failing = run_load_tests("--host", base_url, "--users", "2", "--run-time", "2s", "--queries", str(too_long),
                                 "--csv", str(tmp_path / "failing"))

        # The open model: a constant arrival rate, never above the rate (each slot starts one request per
        # slots/rate seconds, however fast the service answers).
        opened = run_load_tests("--host", base_url, "--arrival-rate", "20", "--users", "4", "--run-time", "3s",
                                "--queries", str(scifact_dir / "queries.jsonl"), "--csv", str(tmp_path / "open"))

    summary = json.loads(Path(f"{prefix}_summary.json").read_text())
    assert summary["failures"] == 0 and summary["error_rate"] == 0
    assert summary["requests"] >= 50, summary
    assert set(summary["by_name"]) == {"/search k=10", "/search k=100 include_text", "/search/batch x4"}
    assert summary["by_name"]["/search k=10"]["requests"] > summary["by_name"]["/search/batch x4"]["requests"]
    assert 13 <= summary["duration_s"] <= 20
    assert "all objectives met" in run.stdout
    assert "dominant stage" in run.stdout  # stage means read from the service's /metrics
    for report in ("_stats.csv", "_failures.csv", ".html"):
        assert Path(f"{prefix}{report}").stat().st_size > 0, report

    # The same run judged against an impossible objective: the runner's real exit status is non-zero.
    judged = run_load_tests("--evaluate", str(prefix), "--max-p99-ms", "0.001")
    assert judged.returncode == 1, judged.stdout + judged.stderr
    assert "OBJECTIVE MISSED: p99 latency" in judged.stdout
    # ...and against objectives it meets, zero.
    assert run_load_tests("--evaluate", str(prefix), "--max-p99-ms", "60000").returncode == 0

    assert opened.returncode == 0, opened.stdout[-3000:] + opened.stderr[-3000:]
    assert "PacedSearchUser" in opened.stdout
    open_summary = json.loads((tmp_path / "open_summary.json").read_text())
    assert open_summary["failures"] == 0 and open_summary["stopped_by"] == "run_time"
    assert 0 < open_summary["requests"] <= 20 * open_summary["duration_s"] + 4

    assert failing.returncode == 1, failing.stdout[-3000:] + failing.stderr[-3000:]
    assert "OBJECTIVE MISSED: error rate 1.0000" in failing.stdout
    assert "status 422" in failing.stdout
