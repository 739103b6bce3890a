"""Load-test pieces that need no server: bounds, response checks, query files, exact percentiles, objectives."""
from __future__ import annotations

import json
import math
import random

import pytest

from load_tests import bounds, runner
from load_tests.checks import batch_problems, search_problems
from load_tests.queries import DEFAULT_QUERIES, QueryFileError, load_queries
from load_tests.report import Objectives, missed_objectives, percentile, summarize
from load_tests.stages import StageSnapshot, stage_means_ms

# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize(("text", "seconds"), [("15s", 15), ("2m", 120), ("1m30s", 90), ("45", 45), ("0.5s", 0.5)])
def test_run_time_parses(text, seconds):
    assert bounds.parse_run_time(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("", "not a duration"), ("fast", "not a duration"), ("0s", "more than 0"), ("11m", "above the limit of 600"),
    ("1h", "above the limit"),
])
def test_run_time_out_of_bounds_is_refused(text, message):
    with pytest.raises(bounds.BoundsError, match="--run-time") as info:
        bounds.parse_run_time(text)
    assert message in str(info.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:9000",
                                 "http://127.1.2.3:80"])
def test_loopback_hosts_are_accepted(url):
    assert bounds.check_host(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://192.168.1.5", "http://0.0.0.0:8000",
                                 "http://[2001:db8::1]:80", "http://8.8.8.8"])
def test_other_hosts_are_refused_unless_allowed(url):
    with pytest.raises(bounds.BoundsError, match="not a loopback address"):
        bounds.check_host(url)
    assert bounds.check_host(url, allow_remote=True)


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1", "http://127.0.0.1:8000/search"])
def test_malformed_hosts_are_refused(url):
    with pytest.raises(bounds.BoundsError, match="--host"):
        bounds.check_host(url)


@pytest.mark.parametrize(("args", "message"), [
    ([], "--run-time: required"),
    (["--run-time", "20m"], "--run-time"),
    (["--run-time", "5s", "--users", "0"], "--users: must be between 1 and 200"),
    (["--run-time", "5s", "--users", "201"], "--users: must be between 1 and 200"),
    (["--run-time", "5s", "--max-requests", "2000000"], "--max-requests"),
    (["--run-time", "5s", "--arrival-rate", "-1"], "--arrival-rate"),
    (["--run-time", "5s", "--max-error-rate", "1.5"], "--max-error-rate"),
    (["--run-time", "5s", "--max-p99-ms", "0"], "--max-p99-ms"),
    (["--run-time", "5s", "--host", "http://10.1.1.1:8000"], "not a loopback address"),
    (["--run-time", "5s", "--queries", "/nonexistent/q.txt"], "--queries"),
])
def test_runner_refuses_out_of_bounds_options_before_sending_anything(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        runner.main([*args, "--csv", str(tmp_path / "run")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing may be written for a refused run"


def test_open_model_command_uses_the_paced_user_and_no_fixed_run_time():
    args = runner.build_parser().parse_args(["--run-time", "5s", "--arrival-rate", "20", "--users", "4"])
    runner.validate(args)
    command = runner.locust_command(args, html=runner.DEFAULT_REPORT_PREFIX.with_suffix(".html"))
    assert command[-1] == "PacedSearchUser" and "--run-time" not in command
    closed = runner.build_parser().parse_args(["--run-time", "5s"])
    runner.validate(closed)
    command = runner.locust_command(closed, html=runner.DEFAULT_REPORT_PREFIX.with_suffix(".html"))
    assert command[-1] == "SearchUser" and command[command.index("--run-time") + 1] == "5s"
    assert command[command.index("--host") + 1] == "http://127.0.0.1:8000"


# ---------------------------------------------------------------- response checks


def good_search(k=10, hits=3, text=False):
    body = {"hits": [{"id": f"d{i}", "score": 10.0 - i} for i in range(hits)], "postings_traversed": 12,
            "timings_ms": {s: 0.1 for s in ("tokenize", "queue", "encode", "score", "total")}}
    if text:
        for hit in body["hits"]:
            hit["text"] = "some text"
    return body


def test_a_well_formed_answer_has_no_problem():
    assert search_problems(good_search(), 10) == []
    assert search_problems(good_search(text=True), 100, include_text=True) == []
    assert search_problems(good_search(hits=0), 10) == []
    assert batch_problems({"results": [good_search(), good_search()]}, 10, 2) == []


def test_wrong_answers_are_caught():
    assert search_problems(None, 10) == ["body is not a JSON object"]
    assert search_problems({"error": {}}, 10)
    assert any("hits for k=2" in p for p in search_problems(good_search(hits=3), 2))
    unsorted = good_search()
    unsorted["hits"].reverse()
    assert any("not sorted" in p for p in search_problems(unsorted, 10))
    assert any("'text'" in p for p in search_problems(good_search(), 10, include_text=True))
    no_timings = good_search()
    del no_timings["timings_ms"]["encode"]
    assert any("timings_ms" in p for p in search_problems(no_timings, 10))
    nan_score = good_search()
    nan_score["hits"][0]["score"] = math.nan
    assert any("finite" in p for p in search_problems(nan_score, 10))
    assert batch_problems({"results": [good_search()]}, 10, 2) == ["1 results for 2 queries"]
    bad_batch = {"results": [good_search(), {"hits": "x"}]}
    assert batch_problems(bad_batch, 10, 2) == ["result 1: 'hits' is missing or not a list"]


# ---------------------------------------------------------------- query files


def test_default_queries_are_the_demo_queries():
    queries = load_queries()
    assert load_queries(DEFAULT_QUERIES) == queries
    assert len(queries) >= 20 and "parse command line arguments" in queries


def test_beir_and_text_query_files(tmp_path):
    beir = tmp_path / "queries.jsonl"
    beir.write_text(json.dumps({"_id": "1", "text": " first "}) + "\n\n" + json.dumps({"_id": "2", "text": "b"}) + "\n")
    assert load_queries(beir) == ["first", "b"]
    text = tmp_path / "queries.txt"
    text.write_text("# comment\none\n\n two \n")
    assert load_queries(text) == ["one", "two"]


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ("", ".txt", "no queries found"),
    ("# only a comment\n", ".txt", "no queries found"),
    ('{"_id": "1"}\n', ".jsonl", ":1: not a BEIR query line"),
    ("not json\n", ".jsonl", ":1: not a BEIR query line"),
])
def test_bad_query_files_name_the_problem(tmp_path, content, suffix, message):
    path = tmp_path / f"q{suffix}"
    path.write_text(content)
    with pytest.raises(QueryFileError, match=message):
        load_queries(path)


# ---------------------------------------------------------------- percentiles and objectives


def test_percentile_is_nearest_rank():
    rng = random.Random(7)
    values = sorted(rng.uniform(0, 100) for _ in range(1001))
    for q in (0.5, 0.95, 0.99):
        found = percentile(values, q)
        assert sum(v <= found for v in values) >= q * len(values)
        assert sum(v < found for v in values) < q * len(values)
    assert percentile([3.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))


def test_objectives_are_judged_on_exact_figures():
    records = [("/search", float(ms), None) for ms in range(1, 101)] + [("/search", 500.0, "status 503")]
    summary = summarize(records, duration_s=2.0, stopped_by="run_time")
    assert summary["requests"] == 101 and summary["failures"] == 1
    assert summary["latency_ms"]["p50"] == 51.0 and summary["latency_ms"]["p99"] == 100.0
    assert summary["requests_per_s"] == 50.5
    assert summary["failure_examples"] == ["/search: status 503"]
    assert missed_objectives(summary, Objectives(max_error_rate=0.01)) == []
    missed = missed_objectives(summary, Objectives(max_p95_ms=90, max_p99_ms=0.001, max_error_rate=0))
    assert len(missed) == 3
    assert "error rate" in missed[0] and "p95" in missed[1] and "p99" in missed[2]
    assert missed_objectives(summarize([], 1.0, "run_time"), Objectives()) == ["no request completed: nothing to judge"]


def test_stage_means_come_from_histogram_deltas():
    def exposition(encode_sum, count):
        return (
            "# TYPE splade_stage_duration_seconds histogram\n"
            f'splade_stage_duration_seconds_sum{{stage="encode"}} {encode_sum}\n'
            f'splade_stage_duration_seconds_count{{stage="encode"}} {count}\n'
            f'splade_stage_duration_seconds_sum{{stage="score"}} {count * 0.001}\n'
            f'splade_stage_duration_seconds_count{{stage="score"}} {count}\n'
        )
    before = StageSnapshot.parse(exposition(1.0, 100))
    after = StageSnapshot.parse(exposition(3.0, 300))
    means = stage_means_ms(before, after)
    assert means["encode"] == pytest.approx(10.0) and means["score"] == pytest.approx(1.0)
    assert stage_means_ms(None, after) is None


def test_the_load_tests_stage_names_are_the_engines():
    from engine import STAGES as ENGINE_STAGES
    from load_tests.checks import STAGES as CHECKED_STAGES

    assert CHECKED_STAGES == ENGINE_STAGES
