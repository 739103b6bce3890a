"""External id -> (segment, document number) of the live documents: what update and delete look ids up in.

Not persisted: the writer rebuilds it from the segments' id tables when it opens (reading every id once) and keeps
it current as it adds, deletes and merges. Memory is bounded and stated: 16 bytes per live document (a 64-bit
hash of the id, the segment's number as int32, the document number as uint32, kept sorted by hash) plus
the ids of documents added since the last re-sort; a lookup is a binary search, and a hash match is confirmed
against the id stored in the segment, so hash collisions cannot confuse two ids.
The hash is Python's `hash(str)`: fast, salted per process, which is fine because the map is never written.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

IdsOf = Callable[[int, np.ndarray], list[str]]  # (segment number, document numbers) -> their ids
BYTES_PER_DOCUMENT = 16
READ_CHUNK = 1 << 16


def _hashes(ids: Sequence[str]) -> np.ndarray:
    return np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))


class IdMap:
    def __init__(self, ids_of: IdsOf) -> None:
        self._ids_of = ids_of
        self._hash = np.zeros(0, np.int64)
        self._segment = np.zeros(0, np.int32)
        self._doc = np.zeros(0, np.uint32)

    def __len__(self) -> int:
        return len(self._hash)

    @property
    def memory_bytes(self) -> int:
        return len(self) * BYTES_PER_DOCUMENT

    def add_segment(self, segment: int, ids: Sequence[str] | None, live: np.ndarray | None, count: int) -> None:
        """Add a segment's live documents; `ids` (all of them) or None to read them through `ids_of`."""
        docs = np.arange(count, dtype=np.int64) if live is None else np.flatnonzero(live)
        hashes = []
        for lo in range(0, len(docs), READ_CHUNK):
            chunk = docs[lo:lo + READ_CHUNK]
            names = [ids[d] for d in chunk.tolist()] if ids is not None else self._ids_of(segment, chunk)
            hashes.append(_hashes(names))
        self._insert(np.concatenate(hashes) if hashes else np.zeros(0, np.int64),
                     np.full(len(docs), segment, np.int32), docs.astype(np.uint32))

    def _insert(self, hashes: np.ndarray, segments: np.ndarray, docs: np.ndarray) -> None:
        h = np.concatenate([self._hash, hashes])
        order = np.argsort(h, kind="stable")
        self._hash = h[order]
        self._segment = np.concatenate([self._segment, segments])[order]
        self._doc = np.concatenate([self._doc, docs])[order]

    def lookup(self, ids: Sequence[str]) -> list[tuple[int, int] | None]:
        """(segment, document) of each id, or None for an id with no live document."""
        hashes = _hashes(ids)
        lo = np.searchsorted(self._hash, hashes, side="left")
        hi = np.searchsorted(self._hash, hashes, side="right")
        found: list[tuple[int, int] | None] = []
        for doc_id, a, b in zip(ids, lo.tolist(), hi.tolist()):
            hit = None
            for j in range(a, b):  # almost always one candidate
                segment, doc = int(self._segment[j]), int(self._doc[j])
                if self._ids_of(segment, np.array([doc]))[0] == doc_id:
                    hit = (segment, doc)
                    break
            found.append(hit)
        return found

    def remove(self, entries: Sequence[tuple[int, int]]) -> None:
        if not entries:
            return
        keys = (self._segment.astype(np.int64) << 32) | self._doc.astype(np.int64)
        wanted = np.array([(int(s) << 32) | int(d) for s, d in entries], dtype=np.int64)
        drop = np.isin(keys, wanted)
        keep = ~drop
        self._hash, self._segment, self._doc = self._hash[keep], self._segment[keep], self._doc[keep]

    def renumber(self, merged: Sequence[int], renumbering: Sequence[np.ndarray], new_segment: int) -> None:
        """After a merge: documents of the `merged` segments move to `new_segment` at their new numbers
        (`renumbering[i][old] = new`, -1 for dropped)."""
        for old, new in zip(merged, renumbering):
            rows = np.flatnonzero(self._segment == old)
            moved = new[self._doc[rows].astype(np.int64)]
            if np.any(moved < 0):
                raise AssertionError("a live document was dropped by a merge")
            self._segment[rows] = new_segment
            self._doc[rows] = moved.astype(np.uint32)
