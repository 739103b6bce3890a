"""The duplicate-id check of a build, in memory bounded by a budget whatever the number of documents.

Each id's 64-bit hash (Python's string hash: stable within the build's process, which is all this needs) is
buffered with nothing else (the document number is its place in the buffer). A full buffer is sorted by hash
(stably, so document numbers stay ascending among equal hashes) and written as a run of (hash, document number)
pairs. `find_duplicate` merges the runs by hash range, a bounded block of each run at a time, and confirms each
pair of equal hashes by comparing the ids themselves (read back from the written id table), so a hash collision
is never reported as a duplicate. The answer is the one a dictionary of seen ids gives, reading in corpus order:
the duplicate whose second occurrence comes first, with its first occurrence.
"""
from __future__ import annotations

import shutil
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Buffering: the hash (8 B); sorting: the argsort permutation (8 B), the sorted hashes (8 B), the numbers (8 B).
BYTES_PER_BUFFERED_ID = 32
# Merging: a block entry (16 B), its copy in the merged block (16 B), the lexsort permutation (8 B), the sorted
# copies (16 B), and slack for the comparisons.
BYTES_PER_MERGED_ID = 64
MIN_BLOCK = 1024


@dataclass(frozen=True)
class Duplicate:
    id: str
    first: int   # document number of the first occurrence
    second: int  # document number of the next occurrence


@dataclass(frozen=True)
class _Run:
    hashes: Path
    numbers: Path
    length: int


class DuplicateIdCheck:
    def __init__(self, scratch_dir: Path, memory_budget_bytes: int,
                 hash_function: Callable[[str], int] = hash) -> None:
        self._hash = hash_function  # tests pass a colliding one
        self.scratch_dir = Path(scratch_dir)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        self.run_capacity = max(MIN_BLOCK, int(memory_budget_bytes) // BYTES_PER_BUFFERED_ID)
        self._hashes = array("q")
        self._base = 0  # document number of the buffer's first id
        self._runs: list[_Run] = []

    @property
    def memory_budget_bytes(self) -> int:
        return self.run_capacity * BYTES_PER_BUFFERED_ID

    @property
    def runs(self) -> int:
        return len(self._runs)

    def add(self, doc_id: str) -> None:
        """Record the next document's id (document numbers follow the calls)."""
        self._hashes.append(self._hash(doc_id))
        if len(self._hashes) >= self.run_capacity:
            self._flush()

    def _flush(self) -> None:
        if not self._hashes:
            return
        hashes = np.frombuffer(self._hashes, dtype=np.int64)
        order = np.argsort(hashes, kind="stable")
        stem = self.scratch_dir / f"ids-{len(self._runs):05d}"
        run = _Run(Path(f"{stem}.hashes"), Path(f"{stem}.numbers"), len(hashes))
        hashes[order].tofile(run.hashes)
        (order + self._base).tofile(run.numbers)
        del hashes
        self._base += run.length
        self._hashes = array("q")
        self._runs.append(run)

    def find_duplicate(self, id_at: Callable[[int], str], memory_budget_bytes: int) -> Duplicate | None:
        """The first duplicate in corpus order, or None; `id_at(n)` reads document n's id. Removes the runs."""
        self._flush()
        best: Duplicate | None = None
        try:
            for hashes, numbers in self._merged_blocks(memory_budget_bytes):
                found = _first_confirmed(hashes, numbers, id_at)
                if found is not None and (best is None or found.second < best.second):
                    best = found
        finally:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)
        return best

    def _merged_blocks(self, memory_budget_bytes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Sorted (hash, document number) blocks covering all runs; equal hashes are never split across blocks."""
        runs = self._runs
        block = max(MIN_BLOCK, int(memory_budget_bytes) // (BYTES_PER_MERGED_ID * max(len(runs), 1)))
        cursors = [0] * len(runs)
        buffers = [(np.zeros(0, np.int64), np.zeros(0, np.int64)) for _ in runs]
        carry = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # trailing equal hashes of the previous block
        while True:
            for r, run in enumerate(runs):
                if len(buffers[r][0]) == 0 and cursors[r] < run.length:
                    count = min(block, run.length - cursors[r])
                    buffers[r] = (_read(run.hashes, cursors[r], count), _read(run.numbers, cursors[r], count))
                    cursors[r] += count
            live = [r for r in range(len(runs)) if len(buffers[r][0])]
            if not live:
                break
            # Every hash below the smallest buffered maximum is complete in the buffers (runs are sorted).
            # A run with unread entries may continue with its buffer's last hash, so take strictly below it.
            open_runs = [r for r in live if cursors[r] < runs[r].length]
            limit = min(int(buffers[r][0][-1]) for r in open_runs) if open_runs else None
            parts_h, parts_n = [carry[0]], [carry[1]]
            for r in live:
                hashes, numbers = buffers[r]
                cut = len(hashes) if limit is None else int(np.searchsorted(hashes, limit, side="left"))
                parts_h.append(hashes[:cut])
                parts_n.append(numbers[:cut])
                buffers[r] = (hashes[cut:], numbers[cut:])
            hashes, numbers = np.concatenate(parts_h), np.concatenate(parts_n)
            if limit is not None and len(hashes) == len(carry[0]):
                # Nothing below the limit: a limiting run's buffer holds only that hash. Take every buffered entry
                # equal to it (that empties the limiting runs' buffers; the carry joins any that follow).
                for r in live:
                    cut = int(np.searchsorted(buffers[r][0], limit, side="right"))
                    hashes = np.concatenate((hashes, buffers[r][0][:cut]))
                    numbers = np.concatenate((numbers, buffers[r][1][:cut]))
                    buffers[r] = (buffers[r][0][cut:], buffers[r][1][cut:])
            order = np.lexsort((numbers, hashes))
            hashes, numbers = hashes[order], numbers[order]
            if limit is None:
                yield hashes, numbers
                carry = (np.zeros(0, np.int64), np.zeros(0, np.int64))
                continue
            # Keep the last hash's entries for the next block: more of them may follow in unread parts of runs.
            tail = int(np.searchsorted(hashes, hashes[-1], side="left")) if len(hashes) else 0
            yield hashes[:tail], numbers[:tail]
            carry = (hashes[tail:], numbers[tail:])
        if len(carry[0]):
            yield carry


def _first_confirmed(hashes: np.ndarray, numbers: np.ndarray, id_at: Callable[[int], str]) -> Duplicate | None:
    """Among groups of equal hashes (sorted by hash, then number), the confirmed duplicate with the lowest second."""
    if len(hashes) < 2:
        return None
    same = hashes[1:] == hashes[:-1]
    if not same.any():
        return None
    # Candidates in order of their (second) document number; each is checked against its group's earlier members.
    group_start = np.maximum.accumulate(np.where(np.concatenate(([True], ~same)), np.arange(len(hashes)), 0))
    candidates = np.flatnonzero(same) + 1
    candidates = candidates[np.argsort(numbers[candidates], kind="stable")]
    for index in candidates.tolist():
        second = int(numbers[index])
        doc_id = id_at(second)
        for earlier in range(int(group_start[index]), index):
            first = int(numbers[earlier])
            if id_at(first) == doc_id:
                return Duplicate(doc_id, first, second)
    return None


def _read(path: Path, start: int, count: int) -> np.ndarray:
    values = np.fromfile(path, dtype=np.int64, count=count, offset=start * 8)
    if len(values) != count:
        raise OSError(f"{path}: truncated duplicate-id run ({len(values)} of {count} values at {start})")
    return values
