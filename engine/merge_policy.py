"""Which adjacent segments to merge, so that many small adds do not leave many small segments to search.

`LogMergePolicy` (Lucene's LogMergePolicy idea, by live documents): a segment's level is
floor(log_factor(max(live, floor_documents) / floor_documents)); whenever `merge_factor` adjacent segments share a
level they are merged into one (which lands about one level up), so an index of N documents keeps at most about
`merge_factor - 1` segments per level, O(merge_factor x log N) segments in all, and each document is rewritten
about log_factor(N) times over its life. A segment whose deleted share exceeds `max_deleted_fraction` is
rewritten alone (its deleted documents dropped). Only *adjacent* segments are merged, and a merge keeps their
order: segments stay consecutive runs of the add order, which the cross-segment tie rule needs (engine.segments).

`compaction_plan(sizes, max_segments)` is the full compaction of `merge --max-segments N`: the segments cut into
at most N adjacent groups of similar size.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentSize:
    documents: int   # slots (live + deleted)
    deleted: int

    @property
    def live(self) -> int:
        return self.documents - self.deleted


@dataclass(frozen=True)
class LogMergePolicy:
    merge_factor: int = 10
    floor_documents: int = 1000
    max_deleted_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.merge_factor < 2:
            raise ValueError(f"merge_factor must be >= 2, got {self.merge_factor}")
        if self.floor_documents < 1:
            raise ValueError(f"floor_documents must be >= 1, got {self.floor_documents}")

    def level(self, size: SegmentSize) -> int:
        return int(math.floor(math.log(max(size.live, self.floor_documents) / self.floor_documents,
                                       self.merge_factor) + 1e-9))

    def find_merge(self, sizes: Sequence[SegmentSize]) -> tuple[int, int] | None:
        """The next merge as a range [start, end) of segment positions, or None when the index is in shape."""
        levels = [self.level(s) for s in sizes]
        start = 0
        for i in range(1, len(sizes) + 1):
            if i == len(sizes) or levels[i] != levels[start]:
                if i - start >= self.merge_factor:
                    return start, start + self.merge_factor
                start = i
        for i, size in enumerate(sizes):
            if size.documents and size.deleted > self.max_deleted_fraction * size.documents:
                return i, i + 1
        return None


def compaction_plan(sizes: Sequence[SegmentSize], max_segments: int) -> list[tuple[int, int]]:
    """Ranges [start, end) of adjacent segments to merge so that at most `max_segments` remain; a lone segment
    with deleted documents is rewritten too (compaction drops every deleted document)."""
    if max_segments < 1:
        raise ValueError(f"--max-segments must be >= 1, got {max_segments}")
    total = sum(s.live for s in sizes)
    groups: list[tuple[int, int]] = []
    start, taken = 0, 0
    for i, size in enumerate(sizes):
        taken += size.live
        remaining_groups = max_segments - len(groups) - 1
        # Close the group once it holds its share, keeping enough segments for the groups still to come.
        if remaining_groups > 0 and taken >= total * (len(groups) + 1) / max_segments and len(sizes) - i - 1 >= 1:
            groups.append((start, i + 1))
            start = i + 1
    if start < len(sizes):
        groups.append((start, len(sizes)))
    return [(a, b) for a, b in groups if b - a > 1 or sizes[a].deleted]
