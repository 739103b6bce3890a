"""The soak test's short CI form: 20 s at a constant 15 requests/s against a real service (searches, batches
and bad requests), judged by the script itself; and proof that its judge can fail (bad options, a memory
bound no service can meet, a status mix it must flag)."""
from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from load_tests.soak import Window, check_options, judge
from tests.support.server import running_service

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def run_soak(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "load_tests.soak", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=150)


def test_twenty_seconds_at_a_constant_rate_pass_and_report_windows_and_memory(
    default_model_dir, small_index_dir, scifact_dir, tmp_path
):
    out = tmp_path / "soak.json"
    env = {"SPLADE_DEVICE": "cpu", "SPLADE_INTRA_OP_THREADS": "1", "SPLADE_LOG_LEVEL": "warning",
           "SPLADE_API_KEY": "soak-key"}
    with running_service(default_model_dir, small_index_dir, env) as base_url:
        run = run_soak("--host", base_url, "--rate", "15", "--duration", "20", "--window", "5",
                       "--queries", str(scifact_dir / "queries.jsonl"), "--api-key", "soak-key",
                       "--json", str(out))
        without_key = run_soak("--host", base_url, "--rate", "5", "--duration", "2", "--window", "1")

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert len(report["windows"]) == 4
    assert report["sent"] == 300  # 15/s for 20 s, on schedule
    kinds = {name: sum(w[name]["n"] for w in report["windows"]) for name in ("search", "batch", "bad")}
    assert all(count > 0 for count in kinds.values()), kinds
    assert sum(kinds.values()) == 300
    assert report["rss_start_mb"] > 0 and report["rss_end_mb"] > 0
    assert "p99" in run.stdout
    # Every search of the unauthenticated run answers 401: the judge must fail it.
    assert without_key.returncode == 1 and "unexpected status" in without_key.stdout


def _window(rss_mb: float, unexpected: int = 0) -> Window:
    window = Window(0.0)
    window.latencies_ms["search"] = [1.0, 2.0]
    window.rss_bytes = rss_mb * 2**20
    window.unexpected = unexpected
    return window


def test_growth_after_the_warm_up_window_fails_the_run():
    args = Namespace(max_rss_growth_mb=64.0, max_p99_ms=None)
    leaking = {"rss_start_mb": 100.0, "_windows": [_window(300), _window(330), _window(400)]}
    steady = {"rss_start_mb": 100.0, "_windows": [_window(300), _window(310), _window(320)]}
    assert any("resident memory grew 100.0 MiB" in f for f in judge(leaking, args))
    assert judge(steady, args) == []  # warm-up growth (100 -> 300) is not counted


def test_options_are_bounded():
    base = dict(duration=30.0, rate=10.0, window=5.0, host="http://127.0.0.1:8000", allow_remote_host=False)
    assert check_options(Namespace(**base)) is None
    assert "--duration" in check_options(Namespace(**{**base, "duration": 7200.0}))
    assert "--rate" in check_options(Namespace(**{**base, "rate": 0.0}))
    assert "loopback" in check_options(Namespace(**{**base, "host": "http://example.com"}))
