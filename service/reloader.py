"""Hot swap of the served index: the service watches its index directory, and reloads on demand
(`POST /admin/reload`).

A reload opens what the directory holds now, checks it (every file's size; with `verify`, every sha256 and
the postings' order and range), checks it against the query encoder and the server's defaults, warms it
(every scorer and mode run a real query on it), and only then installs it: searches already running finish on
the generation they started on, and the old one closes its files when its last search ends (engine.snapshot).
If any step fails, the old generation keeps serving; the refusal is logged, counted
(`splade_index_reloads_total{outcome="refused"}`) and shown in /info with its reason.

The watcher compares a cheap fingerprint of the directory (its resolved path, inode, and every entry's name,
inode, size and mtime; hidden staging entries excluded), so it notices an atomically exchanged directory, a
flipped symlink, a new commit file or a rewritten manifest, and never reads file contents while nothing changed.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine import Searcher
from engine.index_format import open_index
from service.errors import ApiError, detail
from service.metrics import ServiceMetrics

logger = logging.getLogger("service.reloader")


class ReloadRefusedError(ApiError):
    """The index directory's new content was refused; the previous generation keeps serving."""

    status_code = 409
    error_type = "reload_refused"


@dataclass
class ReloadStatus:
    generation: int = 0                 # the served snapshot's number: +1 on every swap since the process started
    swaps: int = 0
    refusals: int = 0
    last_outcome: str = "loaded"        # loaded | swapped | unchanged | refused
    last_error: str | None = None       # the reason of the last refusal (kept until the next swap)
    last_attempt_unix: float | None = None
    last_swap_unix: float | None = None
    watching: bool = False
    poll_seconds: float = 0.0
    verify_checksums: bool = True


def directory_fingerprint(path: Path) -> tuple:
    """What changes whenever the directory's served content can have changed (see the module doc)."""
    resolved = path.resolve()
    try:
        top = os.stat(resolved)
        entries = []
        with os.scandir(resolved) as listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue  # staging directories and temporary files of writers in progress
                info = entry.stat(follow_symlinks=False)
                entries.append((entry.name, info.st_ino, info.st_size, info.st_mtime_ns))
    except FileNotFoundError:
        return (str(resolved), None)
    return (str(resolved), top.st_ino, tuple(sorted(entries)))


def lifecycle_counts(index: Any) -> tuple[int, int]:
    """(segments, deleted documents) of what is served; a plain index directory is one segment, none deleted."""
    return int(getattr(index, "num_segments", 1)), int(getattr(index, "deleted_documents", 0))


class IndexReloader:
    def __init__(self, searcher: Searcher, index_dir: str | os.PathLike, metrics: ServiceMetrics, *,
                 poll_seconds: float = 2.0, verify_checksums: bool = True,
                 opener: Callable[..., Any] = open_index) -> None:
        self.searcher = searcher
        self.index_dir = Path(index_dir)
        self.metrics = metrics
        self.poll_seconds = float(poll_seconds)
        self.verify_checksums = verify_checksums
        self._open = opener
        self._lock = threading.Lock()  # one reload at a time (watcher and admin endpoint)
        self._fingerprint = directory_fingerprint(self.index_dir)
        self._status = ReloadStatus(generation=searcher.served.current.generation, watching=self.poll_seconds > 0,
                                    poll_seconds=self.poll_seconds, verify_checksums=verify_checksums)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publish()

    def status(self) -> dict[str, Any]:
        with self._lock:
            status = asdict(self._status)
        segments, deleted = lifecycle_counts(self.searcher.index)
        return {**status, "segments": segments, "deleted_documents": deleted,
                "documents": int(self.searcher.index.num_documents)}

    def reload(self, trigger: str = "admin") -> dict[str, Any]:
        """Swap in what the directory holds now if it changed; ReloadRefusedError (old generation kept) if it
        cannot be served. Returns the status."""
        with self._lock:
            fingerprint = directory_fingerprint(self.index_dir)
            self._status.last_attempt_unix = time.time()
            if fingerprint == self._fingerprint:
                self._status.last_outcome = "unchanged"
                self.metrics.index_reloads.labels(outcome="unchanged").inc()
            else:
                # Remember it even if refused: the watcher retries when the directory changes again, not on
                # every poll of the same broken content.
                self._fingerprint = fingerprint
                self._swap(trigger)
        return self.status()

    def _swap(self, trigger: str) -> None:
        started = time.perf_counter()
        index = None
        try:
            index = self._open(self.index_dir, verify_checksums=self.verify_checksums)
            snapshot = self.searcher.prepare_swap(index)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the new content; the old one serves on
            if index is not None:
                index.close()
            reason = f"{type(exc).__name__}: {exc}"
            self._status.refusals += 1
            self._status.last_outcome = "refused"
            self._status.last_error = reason
            self.metrics.index_reloads.labels(outcome="refused").inc()
            logger.error("reload (%s) refused, still serving generation %d: %s", trigger,
                         self._status.generation, reason)
            raise ReloadRefusedError(f"the index in {self.index_dir} was refused; generation "
                                     f"{self._status.generation} keeps serving: {reason}",
                                     [detail("index", reason)]) from None
        installed = self.searcher.install(snapshot)
        self._status.generation = installed.generation
        self._status.swaps += 1
        self._status.last_outcome = "swapped"
        self._status.last_error = None
        self._status.last_swap_unix = time.time()
        self.metrics.index_reloads.labels(outcome="swapped").inc()
        self._publish()
        logger.info("reload (%s): generation %d serves %d documents (opened, verified and warmed in %.2f s)",
                    trigger, installed.generation, index.num_documents, time.perf_counter() - started)

    def _publish(self) -> None:
        index = self.searcher.index
        segments, deleted = lifecycle_counts(index)
        self.metrics.index_generation.set(self._status.generation)
        self.metrics.index_segments.set(segments)
        self.metrics.index_deleted_documents.set(deleted)
        self.metrics.index_documents.set(index.num_documents)
        self.metrics.index_postings.set(index.num_postings)

    # -- the watcher ----------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="splade-index-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            if directory_fingerprint(self.index_dir) == self._fingerprint:
                continue
            try:
                self.reload("watch")
            except ReloadRefusedError:
                pass  # logged, counted and shown in /info by reload()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad reload
                logger.exception("index watcher: unexpected error")
