"""A generation of a segmented index, searched as one index.

A `Generation` is what the commit file names (engine.commit): segments in ordinal order, each an opened
`InvertedIndex` in today's format with its live-document mask. It offers the read surface of an
`InvertedIndex` that the query path uses (ids, texts, manifest, parts, counts) over *global document numbers*:
segment i's document d is `doc_base[i] + d`, where `doc_base[i]` is the number of document slots (live or
deleted) of the segments before it.

The tie rule across segments: score descending, then the global document number ascending. Documents are
numbered in the order they were added (an update is a new document), segments hold consecutive runs of that
order (merges only ever combine adjacent segments and keep their order: engine.merge_policy), so the global
number orders documents exactly as a from-scratch build of the surviving documents, in the order they were
added, numbers them: both rank identically, whatever the split into segments (tests/engine/test_segments.py).

Searching a generation (`SegmentedScorer`): per segment, the scorer bound to that segment runs with the
segment's `allowed` mask (live documents AND the caller's `segment_mask(segment)`, e.g. a metadata filter), and
the per-segment top-k lists are merged by the tie rule. Each segment is scored with its own quantization scale.
A plain index directory (no commit file) opens as a one-segment generation; the service keeps opening such a
directory as the plain `InvertedIndex` it is (`open_searchable`), so nothing changes for today's indexes.
"""
from __future__ import annotations

import json

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine import bm25
from engine.commit import BASE_SEGMENT, Commit, SegmentEntry, commit_summary, read_commit
from engine.errors import IndexFormatError
from engine.index_format import MANIFEST, InvertedIndex, open_index, read_manifest
from engine.manifest import Counts, PartInfo
from engine.query import SparseQuery
from engine.scorers.base import Scorer, TopK

SegmentMask = Callable[["Segment"], "np.ndarray | None"]
# Opening retries when a writer removed a file between our reading the commit and opening the segment.
OPEN_RETRIES = 5


class Segment:
    """One segment of a generation: its opened index, its first global document number and its live mask."""

    def __init__(self, name: str, index: InvertedIndex, doc_base: int, deleted: np.ndarray | None) -> None:
        self.name = name
        self.index = index
        self.doc_base = int(doc_base)
        # None: every document is live (no deletes file), which keeps the no-delete path mask-free.
        self.deleted_mask = deleted if deleted is not None and deleted.any() else None
        self.deleted = 0 if self.deleted_mask is None else int(self.deleted_mask.sum())

    @property
    def num_slots(self) -> int:
        return self.index.num_documents

    @property
    def live(self) -> int:
        return self.num_slots - self.deleted

    def live_mask(self) -> np.ndarray | None:
        return None if self.deleted_mask is None else ~self.deleted_mask

    def allowed(self, extra: np.ndarray | None) -> np.ndarray | None:
        """live AND extra (None: every document allowed)."""
        live = self.live_mask()
        if extra is None:
            return live
        extra = np.asarray(extra, dtype=bool)
        if extra.shape != (self.num_slots,):
            raise ValueError(f"segment {self.name}: a mask must have {self.num_slots} entries, got {extra.shape}")
        return extra if live is None else live & extra

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, documents={self.num_slots}, deleted={self.deleted}, base={self.doc_base})"


class Generation:
    """A generation: segments searched as one index (read surface of InvertedIndex, global document numbers)."""

    def __init__(self, path: Path, segments: list[Segment], commit: Commit | None = None) -> None:
        if not segments:
            raise IndexFormatError(f"{path}: a generation needs at least one segment")
        self.path = Path(path)
        self.segments = segments
        self.commit = commit
        self.number = commit.generation if commit is not None else 0
        self._bases = np.array([s.doc_base for s in segments], dtype=np.int64)
        base = segments[0].index
        self.vocab_size = base.vocab_size
        self.tokenizer_sha256 = base.tokenizer_sha256
        self.scale = base.scale  # every segment keeps its own; this is the index's (fixed at creation)
        self.num_slots = sum(s.num_slots for s in segments)
        self.num_documents = sum(s.live for s in segments)
        self.deleted_documents = sum(s.deleted for s in segments)
        self.num_postings = sum(s.index.num_postings for s in segments)
        names = [set(s.index.parts) for s in segments]
        common = set.intersection(*names)
        parts: dict[str, PartInfo] = {name: info for name, info in base.parts.items() if name in common}
        counts = Counts(documents=self.num_documents, postings=self.num_postings,
                        empty_documents=sum(s.index.typed_manifest.counts.empty_documents for s in segments))
        self.typed_manifest = base.typed_manifest.model_copy(update={"parts": parts, "counts": counts})
        self.manifest = self.typed_manifest.to_json()
        self.manifest["generation"] = self.summary()

    @classmethod
    def of_index(cls, index: InvertedIndex) -> Generation:
        """A plain index as a one-segment generation 0."""
        return cls(index.path, [Segment(BASE_SEGMENT, index, 0, None)])

    @property
    def parts(self) -> Mapping[str, PartInfo]:
        return self.typed_manifest.parts

    def summary(self) -> dict[str, Any]:
        if self.commit is not None:
            return commit_summary(self.commit)
        return {"generation": 0, "segments": len(self.segments), "documents": self.num_documents,
                "deleted_documents": self.deleted_documents}

    # -- global document numbers ------------------------------------------------------------------------------
    def locate(self, doc_number: int) -> tuple[InvertedIndex, int]:
        """(segment index, local document number) of a global document number."""
        i = int(np.searchsorted(self._bases, int(doc_number), side="right")) - 1
        if i < 0 or doc_number - self.segments[i].doc_base >= self.segments[i].num_slots:
            raise IndexError(f"document {doc_number} out of range [0, {self.num_slots})")
        return self.segments[i].index, int(doc_number) - self.segments[i].doc_base

    def segment_of(self, doc_numbers: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._bases, np.asarray(doc_numbers, dtype=np.int64), side="right") - 1

    def external_id(self, doc_number: int) -> str:
        index, local = self.locate(doc_number)
        return index.external_id(local)

    def external_ids(self, doc_numbers: np.ndarray) -> list[str]:
        docs = np.asarray(doc_numbers, dtype=np.int64)
        out: list[str] = [""] * len(docs)
        which = self.segment_of(docs)
        for i in np.unique(which).tolist():
            rows = np.flatnonzero(which == i)
            segment = self.segments[i]
            for row, value in zip(rows.tolist(), segment.index.external_ids(docs[rows] - segment.doc_base)):
                out[row] = value
        return out

    def document(self, doc_number: int) -> dict[str, str] | None:
        index, local = self.locate(doc_number)
        return index.document(local)

    def close(self) -> None:
        for segment in self.segments:
            segment.index.close()

    def bm25_field(self) -> SegmentedBm25Field:
        return SegmentedBm25Field(self)

    def __repr__(self) -> str:
        return (f"Generation({str(self.path)!r}, generation={self.number}, segments={len(self.segments)}, "
                f"documents={self.num_documents}, deleted={self.deleted_documents})")


_ACCEPTS_ALLOWED: dict[type, bool] = {}


def _accepts_allowed(scorer: Scorer) -> bool:
    """Whether this scorer's `search` takes the `allowed` document mask (the scorer seam's optional argument;
    looked up once per class: inspecting a signature costs more than a small segment's search)."""
    known = _ACCEPTS_ALLOWED.get(type(scorer))
    if known is None:
        known = _ACCEPTS_ALLOWED[type(scorer)] = "allowed" in inspect.signature(scorer.search).parameters
    return known


def merge_top_k(per_segment: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment hits (global document numbers, float32 scores) -> the top-k by the tie rule."""
    if not per_segment:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    docs = np.concatenate([d for d, _ in per_segment]).astype(np.int64, copy=False)
    scores = np.concatenate([s for _, s in per_segment]).astype(np.float32, copy=False)
    order = np.lexsort((docs, -scores))[:k]
    return docs[order], scores[order]


def segment_top_k(scorer: Scorer, segment: Segment, query: SparseQuery, k: int, scratch: Any,
                  options: Mapping[str, Any], allowed: np.ndarray | None) -> TopK:
    """One segment's top-k among its allowed documents (local document numbers).

    With a scorer that takes the mask, the mask goes to it; otherwise the scorer is asked for k + (documents not
    allowed) hits and the disallowed ones are dropped, which is exact (at most that many can be disallowed) but
    slower the more documents a mask excludes.
    """
    if allowed is None:
        return scorer.search(query, k, scratch, options)
    if _accepts_allowed(scorer):
        return scorer.search(query, k, scratch, options, allowed=allowed)
    excluded = int(len(allowed) - np.count_nonzero(allowed))
    top = scorer.search(query, min(k + excluded, max(segment.num_slots, 1)), scratch, options)
    keep = allowed[top.doc_numbers][:]
    docs, scores = top.doc_numbers[keep][:k], top.scores[keep][:k]
    return TopK(docs, scores, top.stats)


class SegmentedScorer:
    """One scorer class bound to every segment of a generation; searches them and merges by the tie rule."""

    def __init__(self, cls: type[Scorer], generation: Generation) -> None:
        self.cls = cls
        self.name = cls.name
        self.safe = cls.safe
        self.recall_floor = cls.recall_floor
        self.options = cls.options
        self.generation = generation
        self.index = generation
        self.bound = [cls.for_index(segment.index) for segment in generation.segments]

    def new_scratch(self) -> list[Any]:
        return [scorer.new_scratch() for scorer in self.bound]

    def search(self, query: SparseQuery, k: int, scratch: list[Any], options: Mapping[str, Any],
               allowed: np.ndarray | None = None, segment_mask: SegmentMask | None = None) -> TopK:
        """`allowed`: a mask over global document numbers; `segment_mask(segment)`: a mask per segment (or None)."""
        segments = self.generation.segments
        if len(segments) == 1 and allowed is None and segment_mask is None and segments[0].deleted_mask is None:
            return self.bound[0].search(query, k, scratch[0], options)
        hits, stats = [], {}
        for segment, scorer, own in zip(segments, self.bound, scratch):
            extra = None if segment_mask is None else segment_mask(segment)
            if allowed is not None:
                part = np.asarray(allowed[segment.doc_base:segment.doc_base + segment.num_slots], dtype=bool)
                extra = part if extra is None else (np.asarray(extra, dtype=bool) & part)
            mask = segment.allowed(extra)
            if mask is not None and not mask.any():
                continue
            top = segment_top_k(scorer, segment, query, k, own, options, mask)
            hits.append((top.doc_numbers.astype(np.int64) + segment.doc_base, top.scores))
            for key, value in top.stats.items():
                stats[key] = stats.get(key, 0) + int(value)
        docs, scores = merge_top_k(hits, k)
        stats.setdefault("postings_traversed", 0)
        stats["segments"] = len(segments)
        return TopK(docs, scores, stats)


def bind(cls: type[Scorer], index: InvertedIndex | Generation) -> Scorer | SegmentedScorer:
    """`cls` bound to an index, or to every segment of a generation."""
    if isinstance(index, Generation):
        return SegmentedScorer(cls, index)
    return cls.for_index(index)


class SegmentedBm25Field:
    """The BM25 field of a generation: each segment's field with its own statistics (idf, average length), the
    per-segment top-k merged by the tie rule, as Elasticsearch does per shard. Equal to a from-scratch build's
    BM25 only for a one-segment generation; a full merge (`merge --max-segments 1`) gets there."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.fields = [bm25.field_of(segment.index) for segment in generation.segments]

    def query(self, text: str) -> list[SparseQuery]:
        return [field.query(text) for field in self.fields]

    def search(self, queries: list[SparseQuery], k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, int]:
        """Top-k over the segments' live documents (and `allowed`, bool over global document numbers)."""
        hits, postings = [], 0
        for segment, field, query in zip(self.generation.segments, self.fields, queries):
            part = None if allowed is None else np.asarray(allowed[segment.doc_base:segment.doc_base
                                                                   + segment.num_slots], dtype=bool)
            mask = segment.allowed(part)
            if mask is not None and not mask.any():
                continue
            docs, scores, traversed = field.search(query, k, mask)
            postings += traversed
            hits.append((docs.astype(np.int64) + segment.doc_base, scores))
        docs, scores = merge_top_k(hits, k)
        return docs, scores, postings

    def contributions(self, doc_number: int, queries: list[SparseQuery]) -> dict[str, float]:
        i = int(self.generation.segment_of(np.array([doc_number]))[0])
        segment = self.generation.segments[i]
        return self.fields[i].contributions(int(doc_number) - segment.doc_base, queries[i])


def _read_deleted(path: Path, entry: SegmentEntry) -> np.ndarray | None:
    if entry.deletes is None:
        if entry.deleted:
            raise IndexFormatError(f"{path}: segment {entry.name} says {entry.deleted} deleted but names no file")
        return None
    file = path / entry.deletes
    try:
        packed = np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"{file}: unreadable deletes bitmap ({exc})") from exc
    if packed.dtype != np.uint8 or packed.ndim != 1 or len(packed) != (entry.documents + 7) // 8:
        raise IndexFormatError(f"{file}: expected uint8[{(entry.documents + 7) // 8}] (packed bits of "
                               f"{entry.documents} documents), found {packed.dtype}{list(packed.shape)}")
    deleted = np.unpackbits(packed, count=entry.documents).astype(bool)
    if int(deleted.sum()) != entry.deleted:
        raise IndexFormatError(f"{file}: {int(deleted.sum())} deleted documents, the commit says {entry.deleted}")
    return deleted


def open_segments(path: Path, commit: Commit, verify_checksums: bool = False) -> list[Segment]:
    segments, opened = [], []
    try:
        for entry, base in zip(commit.segments, commit.doc_bases()):
            index = open_index(path / entry.path, verify_checksums=verify_checksums)
            opened.append(index)
            if index.num_documents != entry.documents:
                raise IndexFormatError(f"{path / entry.path}: {index.num_documents} documents, the commit says "
                                       f"{entry.documents}")
            if index.vocab_size != commit.vocab_size or index.tokenizer_sha256 != commit.tokenizer_sha256:
                raise IndexFormatError(f"{path / entry.path}: another vocabulary than the index's")
            segments.append(Segment(entry.name, index, base, _read_deleted(path, entry)))
    except BaseException:
        for index in opened:
            index.close()
        raise
    return segments


def open_generation(path: str | Path, verify_checksums: bool = False) -> Generation:
    """The live generation of an index directory (a plain index: one segment, generation 0).

    A writer may commit and remove an older generation's files while we open; then the commit we read is gone
    and we read the new one (a few retries), so a reader never fails because of a concurrent commit.
    """
    path = Path(path)
    for attempt in range(OPEN_RETRIES):
        commit = read_commit(path)
        if commit is None:
            return Generation.of_index(open_index(path, verify_checksums=verify_checksums))
        try:
            return Generation(path, open_segments(path, commit, verify_checksums), commit)
        except (FileNotFoundError, IndexFormatError):
            latest = read_commit(path)
            if latest is None or latest.generation == commit.generation or attempt == OPEN_RETRIES - 1:
                raise
            time.sleep(0.01)
    raise AssertionError("unreachable")


def base_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an index's first segment (a plain index: its own): its build facts (model, document
    length, terms per document, BM25 parameters), which later writes follow."""
    path = Path(path)
    commit = read_commit(path)
    directory = path if commit is None else path / commit.segments[0].path
    read_manifest(directory)  # validated: IndexFormatError naming the file otherwise
    return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))


def open_searchable(path: str | Path, verify_checksums: bool = False) -> InvertedIndex | Generation:
    """What the query path serves: a plain index as itself, a segmented one as its live generation."""
    if read_commit(path) is None:
        return open_index(path, verify_checksums=verify_checksums)
    return open_generation(path, verify_checksums=verify_checksums)
