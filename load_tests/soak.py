"""`python -m load_tests.soak`: a bounded soak test. A constant arrival rate (open model: requests are sent on
schedule whether or not earlier ones have answered) for a stated duration, with a mix of searches, batch
searches and bad requests; it reports latency percentiles per time window, error counts, and the service's
resident memory (from its /metrics) at the start and the end. A leak shows as growth and fails the run.

    python -m load_tests.soak --host http://127.0.0.1:8000 --rate 20 --duration 600 [--json reports/soak.json]
        [--max-rss-growth-mb 64] [--max-p99-ms 1000] [--window 60] [--api-key KEY]

Judged (exit 1 when any fails, each failure printed): no unexpected status (searches and batches must answer
200, a bad request must answer its 4xx), no transport errors, resident-memory growth from the end of the first
window to the end under --max-rss-growth-mb (the first window is warm-up: allocator pools and caches fill
there), and optionally the overall p99. Exit 2: bad options; 3: the service could not be reached.
Bounds: duration at most 1 hour, rate at most 500/s, loopback hosts only unless --allow-remote-host.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from load_tests.queries import load_queries

MAX_DURATION_S = 3600.0
MAX_RATE = 500.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix: its share and the status it must get."""

    name: str
    share: float
    expected: int


MIX = (Kind("search", 0.70, 200), Kind("batch", 0.20, 200), Kind("bad", 0.10, 422))
BAD_BODIES = ({"query": "x", "k": 0}, {"query": ""}, {"k": 5}, {"query": "x", "k": 10**9})


@dataclass
class Window:
    started_s: float
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {k.name: [] for k in MIX})
    unexpected: int = 0
    transport_errors: int = 0
    rss_bytes: float | None = None

    def summary(self) -> dict:
        row = {"t_s": round(self.started_s, 1), "unexpected_status": self.unexpected,
               "transport_errors": self.transport_errors,
               "rss_mb": None if self.rss_bytes is None else round(self.rss_bytes / 2**20, 1)}
        for name, values in self.latencies_ms.items():
            if values:
                p50, p95, p99 = np.percentile(values, [50, 95, 99])
                row[name] = {"n": len(values), "p50_ms": round(p50, 2), "p95_ms": round(p95, 2),
                             "p99_ms": round(p99, 2)}
            else:
                row[name] = {"n": 0}
        return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m load_tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second, all kinds together")
    parser.add_argument("--duration", type=float, required=True, help="seconds of load (at most 3600)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per reported window")
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0,
                        help="allowed resident-memory growth after the first window (default %(default)s)")
    parser.add_argument("--max-p99-ms", type=float, default=None, help="optional bound on the overall p99")
    parser.add_argument("--queries", type=Path, default=None, help="query texts, one per line (default: bundled)")
    parser.add_argument("--api-key", default=None, help="sent as Authorization: Bearer when the service has one")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-remote-host", action="store_true")
    return parser


def check_options(args: argparse.Namespace) -> str | None:
    if not 0 < args.duration <= MAX_DURATION_S:
        return f"--duration must be in (0, {MAX_DURATION_S:.0f}] seconds, got {args.duration}"
    if not 0 < args.rate <= MAX_RATE:
        return f"--rate must be in (0, {MAX_RATE:.0f}] requests/s, got {args.rate}"
    if not 0 < args.window <= args.duration:
        return f"--window must be in (0, --duration], got {args.window}"
    if urlparse(args.host).hostname not in LOOPBACK and not args.allow_remote_host:
        return f"--host {args.host} is not a loopback address (pass --allow-remote-host to soak it anyway)"
    return None


async def resident_bytes(client: httpx.AsyncClient) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_resident_memory_bytes":
                return sample.value
    return None


def request_for(kind: Kind, texts: list[str], rng: random.Random) -> tuple[str, dict]:
    if kind.name == "search":
        return "/search", {"query": rng.choice(texts), "k": 10}
    if kind.name == "batch":
        return "/search/batch", {"queries": [{"query": rng.choice(texts)} for _ in range(rng.randint(2, 8))]}
    return "/search", rng.choice(BAD_BODIES)


async def soak(args: argparse.Namespace, texts: list[str]) -> dict:
    rng = random.Random(args.seed)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout, so a request never races the
    # server closing its connection (that would count as a transport error the service did not cause).
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=args.host, headers=headers, timeout=30, limits=limits) as client:
        rss_start = await resident_bytes(client)
        windows: list[Window] = []
        in_flight: set[asyncio.Task] = set()
        started = time.perf_counter()
        interval = 1.0 / args.rate
        weights = [k.share for k in MIX]

        async def one(kind: Kind, window: Window) -> None:
            path, body = request_for(kind, texts, rng)
            sent = time.perf_counter()
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError:
                window.transport_errors += 1
                return
            window.latencies_ms[kind.name].append((time.perf_counter() - sent) * 1000)
            if response.status_code != kind.expected:
                window.unexpected += 1

        n = 0
        while True:
            due = started + n * interval
            elapsed = due - started
            if elapsed >= args.duration:
                break
            index = int(elapsed // args.window)
            while len(windows) <= index:
                if windows:  # close the previous window: its memory figure is taken at its end
                    windows[-1].rss_bytes = await resident_bytes(client)
                windows.append(Window(len(windows) * args.window))
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(rng.choices(MIX, weights)[0], windows[index]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            n += 1
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)
        windows[-1].rss_bytes = await resident_bytes(client)
        actual_s = time.perf_counter() - started
    return {"host": args.host, "rate": args.rate, "duration_s": args.duration, "elapsed_s": round(actual_s, 1),
            "sent": n, "rss_start_mb": None if rss_start is None else round(rss_start / 2**20, 1),
            "windows": [w.summary() for w in windows], "_windows": windows}


def judge(report: dict, args: argparse.Namespace) -> list[str]:
    windows: list[Window] = report.pop("_windows")
    failures = []
    unexpected = sum(w.unexpected for w in windows)
    transport = sum(w.transport_errors for w in windows)
    if unexpected:
        failures.append(f"{unexpected} responses with an unexpected status")
    if transport:
        failures.append(f"{transport} transport errors (refused, reset or timed out)")
    baseline = windows[0].rss_bytes if len(windows) > 1 else report["rss_start_mb"] * 2**20
    end = windows[-1].rss_bytes
    growth_mb = (end - baseline) / 2**20 if end is not None and baseline is not None else None
    report["rss_end_mb"] = None if end is None else round(end / 2**20, 1)
    report["rss_growth_after_warmup_mb"] = None if growth_mb is None else round(growth_mb, 1)
    if growth_mb is None:
        failures.append("the service exposes no process_resident_memory_bytes: memory cannot be judged")
    elif growth_mb > args.max_rss_growth_mb:
        failures.append(f"resident memory grew {growth_mb:.1f} MiB after warm-up (limit {args.max_rss_growth_mb})")
    every = [v for w in windows for values in w.latencies_ms.values() for v in values]
    report["overall"] = {"answered": len(every), "unexpected_status": unexpected, "transport_errors": transport,
                         "p50_ms": round(float(np.percentile(every, 50)), 2) if every else None,
                         "p99_ms": round(float(np.percentile(every, 99)), 2) if every else None}
    if args.max_p99_ms is not None and every and report["overall"]["p99_ms"] > args.max_p99_ms:
        failures.append(f"p99 {report['overall']['p99_ms']} ms is above --max-p99-ms {args.max_p99_ms}")
    report["failures"] = failures
    return failures


def print_report(report: dict) -> None:
    print(f"soak: {report['sent']} requests at {report['rate']}/s for {report['duration_s']} s; resident memory "
          f"{report['rss_start_mb']} MiB at start, {report['rss_end_mb']} MiB at the end "
          f"(growth after warm-up {report['rss_growth_after_warmup_mb']} MiB)")
    for w in report["windows"]:
        parts = [f"{name} n={w[name]['n']}" + (f" p50 {w[name]['p50_ms']} p95 {w[name]['p95_ms']} "
                                                f"p99 {w[name]['p99_ms']} ms" if w[name]["n"] else "")
                 for name in (k.name for k in MIX)]
        print(f"  t={w['t_s']:>6}s  " + " | ".join(parts) + f" | unexpected {w['unexpected_status']}, "
              f"transport {w['transport_errors']}, rss {w['rss_mb']} MiB")
    for failure in report["failures"]:
        print(f"FAILED: {failure}")
    if not report["failures"]:
        print("soak passed")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_options(args)
    if problem:
        print(f"soak: {problem}", file=sys.stderr)
        return 2
    texts = load_queries(args.queries)
    try:
        httpx.get(f"{args.host}/readyz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"soak: {args.host} is not ready: {exc}", file=sys.stderr)
        return 3
    report = asyncio.run(soak(args, texts))
    failures = judge(report, args)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
