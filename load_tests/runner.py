"""`python -m load_tests`: a bounded, headless locust run against one host, judged by service-level objectives.

    python -m load_tests --host http://127.0.0.1:8000 --users 8 --run-time 15s \\
        [--max-p95-ms 50 --max-p99-ms 100 --max-error-rate 0] [--csv reports/load/run --html reports/load/run.html]
    python -m load_tests --host http://127.0.0.1:8000 --arrival-rate 50 --users 16 --run-time 30s   # open model
    python -m load_tests --evaluate reports/load/run --max-p99-ms 100    # judge an earlier run again, no traffic

Bounds (load_tests/bounds.py): --run-time is required and at most 10 minutes; at most 200 users (or open-model
slots); at most --max-requests requests (default 200,000, ceiling 1,000,000); the host must be a loopback address
unless --allow-remote-host is given. The locust process is killed if it outlives the run time by a minute.

Exit status: 0 every objective met; 1 an objective missed (each one printed); 2 bad options (named, with the
limit); 3 the load test itself could not run (locust failed or wrote no summary).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from load_tests import bounds
from load_tests.queries import QueryFileError, load_queries
from load_tests.report import Objectives, missed_objectives, read_summary
from load_tests.stages import StageSnapshot, stage_means_ms

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_REPORT_PREFIX = Path("reports") / "load" / "locust"
KILL_MARGIN_S = 60.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m load_tests", description=__doc__.split("\n\n")[0],
        epilog="Bounds and exit status: see the module doc (docs/load_tests.md).",
    )
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="service base URL (default %(default)s)")
    parser.add_argument("--users", type=int, default=8,
                        help=f"concurrent users; open-model slots with --arrival-rate (default 8, max {bounds.MAX_USERS})")
    parser.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    parser.add_argument("--run-time", help=f"how long to send load, e.g. 15s, 2m (required, max {bounds.MAX_RUN_TIME_S:.0f}s)")
    parser.add_argument("--arrival-rate", type=float, default=None,
                        help="open model: requests started per second, whatever the latency (default: closed model)")
    parser.add_argument("--max-requests", type=int, default=bounds.DEFAULT_MAX_REQUESTS,
                        help=f"stop after this many requests (default %(default)s, max {bounds.MAX_REQUESTS})")
    parser.add_argument("--queries", type=Path, default=None,
                        help="BEIR queries.jsonl or a text file, one query a line (default: the demo queries)")
    parser.add_argument("--max-p95-ms", type=float, default=None, help="objective: p95 latency at most this (ms)")
    parser.add_argument("--max-p99-ms", type=float, default=None, help="objective: p99 latency at most this (ms)")
    parser.add_argument("--max-error-rate", type=float, default=0.0,
                        help="objective: failed share of requests at most this (default 0: no failure allowed)")
    parser.add_argument("--csv", type=Path, default=DEFAULT_REPORT_PREFIX,
                        help="report prefix: PREFIX_stats.csv, ..., PREFIX_summary.json (default %(default)s)")
    parser.add_argument("--html", type=Path, default=None, help="HTML report (default PREFIX.html)")
    parser.add_argument("--allow-remote-host", action="store_true",
                        help="allow a non-loopback --host (a deployment you own; never someone else's)")
    parser.add_argument("--evaluate", type=Path, metavar="PREFIX", default=None,
                        help="judge the run already recorded at PREFIX against the objectives; send no traffic")
    return parser


def validate(args: argparse.Namespace) -> None:
    """Raise BoundsError naming the option and the limit."""
    for name in ("max_p95_ms", "max_p99_ms"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise bounds.BoundsError(f"--{name.replace('_', '-')}: must be a positive number of ms, got {value}")
    if not 0 <= args.max_error_rate <= 1:
        raise bounds.BoundsError(f"--max-error-rate: must be between 0 and 1, got {args.max_error_rate}")
    if args.evaluate is not None:
        return
    if args.run_time is None:
        raise bounds.BoundsError(f"--run-time: required (e.g. 15s); at most {bounds.MAX_RUN_TIME_S:.0f} s")
    args.run_time_s = bounds.parse_run_time(args.run_time)
    bounds.check_count(args.users, "--users", bounds.MAX_USERS)
    bounds.check_count(args.max_requests, "--max-requests", bounds.MAX_REQUESTS)
    if args.spawn_rate is not None and not 0 < args.spawn_rate <= bounds.MAX_USERS:
        raise bounds.BoundsError(f"--spawn-rate: must be in (0, {bounds.MAX_USERS}], got {args.spawn_rate}")
    if args.arrival_rate is not None and not 0 < args.arrival_rate <= bounds.MAX_ARRIVAL_RATE:
        raise bounds.BoundsError(
            f"--arrival-rate: must be in (0, {bounds.MAX_ARRIVAL_RATE:.0f}] requests/s, got {args.arrival_rate}"
        )
    args.host = bounds.check_host(args.host, allow_remote=args.allow_remote_host)
    try:
        load_queries(args.queries)
    except QueryFileError as exc:
        raise bounds.BoundsError(f"--queries: {exc}") from None


def locust_command(args: argparse.Namespace, html: Path) -> list[str]:
    user_class = "PacedSearchUser" if args.arrival_rate else "SearchUser"
    spawn_rate = args.spawn_rate or args.users
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", args.host,
        "--csv", str(args.csv), "--html", str(html), "--only-summary", "--stop-timeout", "5",
        "--loglevel", "WARNING",
    ]
    if not args.arrival_rate:  # the open model's shape sets users and duration itself
        command += ["--users", str(args.users), "--spawn-rate", str(spawn_rate), "--run-time", f"{args.run_time_s:g}s"]
    return command + [user_class]


def run_locust(args: argparse.Namespace, summary_path: Path, html: Path) -> int:
    env = dict(os.environ)
    env.update(
        LOAD_TEST_SUMMARY=str(summary_path),
        LOAD_TEST_MAX_REQUESTS=str(args.max_requests),
        LOAD_TEST_MAX_RUN_TIME_S=f"{args.run_time_s:g}",
        LOAD_TEST_ALLOW_REMOTE_HOST="1" if args.allow_remote_host else "0",
        LOAD_TEST_USERS=str(args.users),
        LOAD_TEST_RUN_TIME_S=f"{args.run_time_s:g}",
        LOAD_TEST_ARRIVAL_RATE=f"{args.arrival_rate:g}" if args.arrival_rate else "",
    )
    if args.queries is not None:
        env["LOAD_TEST_QUERIES"] = str(args.queries)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    html.parent.mkdir(parents=True, exist_ok=True)
    summary_path.unlink(missing_ok=True)  # a stale summary must never judge this run
    command = locust_command(args, html)
    print("+ " + " ".join(command), flush=True)
    try:
        proc = subprocess.run(command, env=env, timeout=args.run_time_s + KILL_MARGIN_S)
    except subprocess.TimeoutExpired:
        print(f"load_tests: locust outlived --run-time by {KILL_MARGIN_S:.0f} s and was killed", file=sys.stderr)
        return 3
    # Locust exits 1 when any request failed: the objectives below decide; other codes mean it broke.
    if proc.returncode not in (0, 1):
        print(f"load_tests: locust exited {proc.returncode}", file=sys.stderr)
        return 3
    return 0


def print_summary(summary: dict, stages_ms: dict[str, float] | None) -> None:
    lat = summary["latency_ms"]
    print(
        f"requests {summary['requests']} in {summary['duration_s']:.1f} s ({summary['requests_per_s']:.1f}/s), "
        f"failures {summary['failures']} (error rate {summary['error_rate']:.4f}), stopped by {summary['stopped_by']}"
    )
    print(f"latency ms: p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f}  max {lat['max']:.2f}")
    for name, figures in summary["by_name"].items():
        f = figures["latency_ms"]
        print(f"  {name:<28} {figures['requests']:>7} req  {figures['failures']:>5} failed  "
              f"p50 {f['p50']:8.2f}  p95 {f['p95']:8.2f}  p99 {f['p99']:8.2f}")
    for example in summary["failure_examples"]:
        print(f"  failure: {example}")
    if stages_ms:
        dominant = max((s for s in stages_ms if s != "total"), key=stages_ms.get, default=None)
        parts = "  ".join(f"{stage} {ms:.3f}" for stage, ms in stages_ms.items())
        print(f"service stage means per query (ms, from /metrics): {parts}; dominant stage: {dominant}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        validate(args)
    except bounds.BoundsError as exc:
        parser.error(str(exc))
    objectives = Objectives(args.max_p95_ms, args.max_p99_ms, args.max_error_rate)
    prefix = args.evaluate if args.evaluate is not None else args.csv
    summary_path = Path(f"{prefix}_summary.json")

    stages_ms = None
    if args.evaluate is None:
        html = args.html or Path(f"{args.csv}.html")
        before = StageSnapshot.scrape(args.host)
        started = time.monotonic()
        status = run_locust(args, summary_path, html)
        if status:
            return status
        after = StageSnapshot.scrape(args.host)
        stages_ms = stage_means_ms(before, after)
        print(f"reports: {args.csv}_stats.csv, {html}, {summary_path} ({time.monotonic() - started:.1f} s)")
    if not summary_path.is_file():
        print(f"load_tests: no summary at {summary_path}: the run did not complete", file=sys.stderr)
        return 3
    summary = read_summary(summary_path)
    print_summary(summary, stages_ms)
    missed = missed_objectives(summary, objectives)
    for line in missed:
        print(f"OBJECTIVE MISSED: {line}")
    if not missed:
        print("all objectives met")
    return 1 if missed else 0
