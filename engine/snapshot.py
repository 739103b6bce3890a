"""The served index and the snapshot rule.

Every search takes one `Snapshot` at its start (`ServedIndex.acquire()`) and uses it to the end: the index,
the scorers bound to it and the per-thread scratch buffers sized for it. A later `swap` installs a new
snapshot for the searches that start after it; searches already running finish on the one they hold, and a
retired snapshot closes its index when its last search releases it. Two indexes never mix inside a search.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from engine import passages, scorers, segments
from engine.index_format import InvertedIndex
from engine.query import SparseQuery
from engine.segments import Generation
from engine.scorers.base import Scorer, TopK


class Snapshot:
    def __init__(self, index: InvertedIndex | Generation, default_scorer: str, generation: int = 0) -> None:
        scorers.resolve(default_scorer, index)  # fail now, not on the first request
        self.index = index
        # A passage index (engine.passages): scorers see passage rows and `search` collapses them to documents.
        self.passages = passages.map_of(index)
        self.rows = index if self.passages is None else passages.rows_view(index, self.passages)
        self.default_scorer = default_scorer
        self.generation = generation
        self._bound: dict[str, Scorer] = {}
        self._bind_lock = threading.Lock()
        self._local = threading.local()
        self._refs = 0
        self._retired = False
        self._refs_lock = threading.Lock()

    @property
    def available_scorers(self) -> list[str]:
        """Scorer names this index serves (without the tuned configurations: see `choices`)."""
        return scorers.available(self.index)

    @property
    def choices(self) -> list[str]:
        """Every name a request may give as `scorer`: servable scorers and tuned configurations."""
        return scorers.choices(self.index)

    def scorer(self, name: str | None = None) -> Scorer:
        """The scorer behind `name` (a scorer or a tuned configuration; default: the snapshot's), bound to this
        index; InvalidQueryError if the index cannot serve it."""
        cls, _ = scorers.resolve(name or self.default_scorer, self.index)
        bound = self._bound.get(cls.name)
        if bound is None:
            with self._bind_lock:
                bound = self._bound.get(cls.name)
                if bound is None:
                    # A generation binds per segment; a passage index binds to its passage rows.
                    target = self.index if isinstance(self.index, Generation) else self.rows
                    bound = self._bound[cls.name] = segments.bind(cls, target)
        return bound

    def options(self, name: str | None = None, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The options a search with `name` runs with: the scorer's defaults, then the configuration's, then the
        request's own (each checked against its limits)."""
        cls, configured = scorers.resolve(name or self.default_scorer, self.index)
        return cls.resolve_options({**configured, **(given or {})})

    def scratch(self, scorer: Scorer) -> Any:
        """This thread's scratch for `scorer` (made on first use, reused by every later search of the thread)."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        scratch = buffers.get(scorer.name)
        if scratch is None:
            scratch = buffers[scorer.name] = scorer.new_scratch()
        return scratch

    def search(self, query: SparseQuery, k: int, scorer: str | None = None,
               options: Mapping[str, Any] | None = None, allowed: np.ndarray | None = None,
               segment_mask: segments.SegmentMask | None = None) -> tuple[TopK, str]:
        """The top-k among the documents `allowed` lets through (None: all), and the name it was served by (the
        scorer or configuration asked for, or the default). On a generation (engine.segments) `allowed` covers
        its global document numbers, and `segment_mask(segment)` may give each segment's own mask instead
        (e.g. a metadata filter evaluated per segment); deleted documents are never returned.

        On a passage index the top-k is over documents (maximum over passages; a `passages.DocumentTopK` that
        names each hit's passage row); `allowed` is still over documents (each passage takes its document's)."""
        name = scorer or self.default_scorer
        bound = self.scorer(name)
        scratch, resolved = self.scratch(bound), self.options(name, options)
        if isinstance(bound, segments.SegmentedScorer):
            return bound.search(query, k, scratch, resolved, allowed, segment_mask=segment_mask), name
        if segment_mask is not None:  # a plain index is its own one segment
            own = segment_mask(segments.Segment(segments.BASE_SEGMENT, self.index, 0, None))
            if own is not None:
                allowed = own if allowed is None else (np.asarray(own, dtype=bool) & allowed)
        if self.passages is None:
            return bound.search(query, k, scratch, resolved, allowed), name
        rows_allowed = None if allowed is None else self.passages.allowed_rows(allowed)
        return passages.top_documents(lambda depth: bound.search(query, depth, scratch, resolved, rows_allowed), k,
                                      self.passages), name

    @contextlib.contextmanager
    def retained(self) -> Iterator[Snapshot]:
        """Keep this snapshot's index open beyond the request that acquired it (background re-scoring)."""
        self.retain()
        try:
            yield self
        finally:
            self.release()

    # -- reference counting: the index is closed once retired and unused --
    def retain(self) -> None:
        """One more user of this snapshot (a search, or a background re-scoring); pair with `release`."""
        with self._refs_lock:
            self._refs += 1

    def release(self) -> None:
        with self._refs_lock:
            self._refs -= 1
            close = self._retired and self._refs == 0
        if close:
            self.index.close()

    def _retire(self) -> None:
        with self._refs_lock:
            self._retired = True
            close = self._refs == 0
        if close:
            self.index.close()

    @property
    def in_use(self) -> int:
        return self._refs


class ServedIndex:
    """Holds the current snapshot; `acquire()` for a search, `swap()` to serve another index."""

    def __init__(self, index: InvertedIndex | Generation, scorer_override: str | None = None) -> None:
        """`scorer_override` (the SPLADE_SCORER setting) replaces the default each index's manifest names."""
        self._lock = threading.Lock()
        self._scorer_override = scorer_override
        self._current = Snapshot(index, self._default_scorer(index), 0)

    def _default_scorer(self, index: InvertedIndex | Generation) -> str:
        return self._scorer_override or index.typed_manifest.default_scorer

    @property
    def current(self) -> Snapshot:
        return self._current

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Snapshot]:
        with self._lock:
            snapshot = self._current
            snapshot.retain()
        try:
            yield snapshot
        finally:
            snapshot.release()

    def prepare(self, index: InvertedIndex | Generation) -> Snapshot:
        """A snapshot of `index` (a plain index or a generation of a segmented one, engine.segments), validated
        (its default scorer servable) but not yet served: warm it, then `install` it."""
        return Snapshot(index, self._default_scorer(index))

    def install(self, snapshot: Snapshot) -> Snapshot:
        """Serve `snapshot` from now on; the previous one closes its index when its last search ends."""
        with self._lock:
            previous = self._current
            snapshot.generation = previous.generation + 1
            self._current = snapshot
        previous._retire()
        return snapshot

    def swap(self, index: InvertedIndex | Generation) -> Snapshot:
        """Serve `index` from now on (prepare + install); validated before anything changes."""
        return self.install(self.prepare(index))
