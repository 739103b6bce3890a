"""What a build really used: peak resident and anonymous memory, sampled from /proc/self/status.

`VmHWM` is the kernel's own peak of resident memory (reset at the start of the build where the kernel allows
it, through /proc/self/clear_refs). The kernel keeps no peak of `RssAnon` (anonymous memory: the heap, numpy
buffers, the model; not the page cache of the files the build reads and writes), so a daemon thread samples it
every `interval` seconds and at each phase the build marks. The report says what the budget bounds and what
it does not (the interpreter, the libraries, the model, the read window, the encoder's batch).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")
MiB = 1 << 20


def read_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile in bytes ({} where /proc is not available)."""
    values: dict[str, int] = {}
    try:
        text = STATUS.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) * 1024  # the kernel reports kB
    return values


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class MemoryMonitor:
    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start: dict[str, int] = {}
        self.peak_anon = 0
        self.peak_rss_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0

    def __enter__(self) -> MemoryMonitor:
        self.peak_rss_reset = _reset_peak_rss()
        self.start = read_status()
        self.peak_anon = self.start.get("RssAnon", 0)
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._sample_loop, name="memory-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        anon = read_status().get("RssAnon", 0)
        if anon > self.peak_anon:
            self.peak_anon = anon

    def report(self, budget_mb: int, budget_covers: dict[str, int], outside_budget: dict[str, int]) -> dict[str, Any]:
        """The manifest's `build.memory`: peaks, the budget and its parts (bytes -> MiB, rounded)."""
        self.sample()
        now = read_status()
        return {
            "peak_anonymous_mb": _mb(self.peak_anon),
            "peak_resident_mb": _mb(now.get("VmHWM", 0)),
            "peak_resident_since": "build start" if self.peak_rss_reset else "process start",
            "anonymous_at_start_mb": _mb(self.start.get("RssAnon", 0)),
            "budget_mb": budget_mb,
            "budget_covers_mb": {name: _mb(size) for name, size in budget_covers.items()},
            "outside_budget_mb": {name: _mb(size) for name, size in outside_budget.items()},
            "sampled_every_s": self.interval,
        }


def _mb(size: int) -> float:
    return round(size / MiB, 1)


def summary_line(memory: dict[str, Any]) -> str:
    """One line for the CLI: the peaks, the budget and what it covered."""
    covers = ", ".join(f"{name} {mb:g}" for name, mb in memory["budget_covers_mb"].items())
    outside = ", ".join(f"{name} {mb:g}" for name, mb in memory["outside_budget_mb"].items())
    return (f"memory: peak anonymous {memory['peak_anonymous_mb']:g} MiB (at start {memory['anonymous_at_start_mb']:g}"
            f"), peak resident {memory['peak_resident_mb']:g} MiB (since {memory['peak_resident_since']}); "
            f"budget {memory['budget_mb']} MiB covers: {covers}; outside the budget (MiB): {outside}")
