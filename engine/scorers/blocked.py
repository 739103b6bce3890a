"""`exact-blocked`: the exact top-k, bit for bit, with the accumulator cut into L2-sized document ranges
(engine/kernels/blocked_exact.py). Needs no index part: the range table is derived when the scorer is bound.
An optional part (`add-parts --scorer exact-blocked`) stores the low 16 bits of every document number; when the
index has it, the posting loop streams 3 bytes a posting instead of 5 (measured faster, docs/index.md).

Option `threads`: a query's ranges are cut into that many contiguous shares (engine.scorers.intra_query), each
walked by its own thread into its own accumulator and heap, and the shares' top-k lists merged by the tie rule:
the same answer bit for bit, sooner on idle cores. Effective threads: min(requested, ranges, the server's cap);
one thread is the single-kernel path, with no pool."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.index_format import InvertedIndex, PartWriter
from engine.kernels.blocked_exact import (DEFAULT_RANGE_SIZE, MAX_LOCAL_RANGE_SIZE, local_doc_numbers,
                                          prepare_ranges, score_blocked, share_bounds)
from engine.manifest import PartInfo
from engine.query import SparseQuery
from engine.scorers import intra_query, masking
from engine.scorers.base import OptionSpec, Scorer, TopK
from engine.topk import merge_sorted_top_k

PART = "blocked_exact"
PART_VERSION = 1
LOCAL_DOCS_FILE = f"{PART}.local_doc_numbers.npy"
# Postings converted per write: 4M x 2 bytes, so the part's build holds 8 MB beyond the mapped index.
WRITE_CHUNK = 1 << 22


def write_part(index: InvertedIndex, staged: Path) -> tuple[str, PartInfo]:
    """uint16 [postings]: each posting's document number mod 2^16, in the index's posting order."""
    path = staged / LOCAL_DOCS_FILE
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint16)), "fortran_order": False,
              "shape": (index.num_postings,)}
    with open(path, "wb") as out:  # plain sequential writes, as the builder's: nothing mapped for writing
        np.lib.format.write_array_header_1_0(out, header)
        for lo in range(0, index.num_postings, WRITE_CHUNK):
            out.write(local_doc_numbers(index.doc_numbers[lo:lo + WRITE_CHUNK]).tobytes())
    return PART, PartInfo(version=PART_VERSION, files=[LOCAL_DOCS_FILE], params={"bits": 16})


def score_in_shares(doc_numbers, impacts, range_starts, range_size, num_documents, term_ids, term_weights, scale,
                    k, accumulators, allowed, threads):
    """`score_blocked` with the ranges cut into at most `threads` shares (balanced by the query's postings), run
    by engine.scorers.intra_query and merged by the tie rule: (docs, scores, postings, shares). `accumulators`:
    one all-zero `score_blocked` accumulator per share (at least `threads`), each left all zeros."""
    bounds = share_bounds(range_starts, term_ids, threads)
    shares = len(bounds) - 1
    thresholds = np.zeros(shares, dtype=np.float32)  # each share's k-th best so far: the others skip below it

    def share(i: int):
        return score_blocked(doc_numbers, impacts, range_starts, range_size, num_documents, term_ids, term_weights,
                             scale, k, accumulators[i], allowed, bounds[i], bounds[i + 1], thresholds, i)

    parts = intra_query.run_shares(share, shares)
    docs, scores = merge_sorted_top_k([(part[0], part[1]) for part in parts], k)
    return docs, scores, sum(int(part[2]) for part in parts), shares


class BlockedExactScorer(Scorer):
    name = "exact-blocked"
    safe = True
    part_versions = {PART: PART_VERSION}  # its part is optional: used when present
    description = ("Exact, term-at-a-time per document range of 32K documents, so the accumulator stays in L2; "
                   "equal to `exact` bit for bit.")
    options = {
        "threads": OptionSpec(1, 1, intra_query.MAX_THREADS, integer=True, default_from=intra_query.max_threads,
                              description="threads that split the query's document ranges (at most the server's "
                                          "SPLADE_SEARCH_THREADS, which is also the default)"),
    }

    def __init__(self, index: InvertedIndex, range_size: int = DEFAULT_RANGE_SIZE) -> None:
        super().__init__(index)
        self.range_size = int(min(range_size, max(index.num_documents, 1024)))
        self.range_starts = prepare_ranges(index.offsets, index.doc_numbers, index.num_documents, self.range_size)
        self.num_ranges = self.range_starts.shape[1] - 1
        self.doc_numbers = index.doc_numbers
        if PART in index.parts and self.range_size <= MAX_LOCAL_RANGE_SIZE:
            self.doc_numbers = index.part_array(PART, LOCAL_DOCS_FILE, np.uint16, index.num_postings)

    @classmethod
    def part_writers(cls, params: Mapping[str, Any] | None = None, threads: int = 1) -> list[PartWriter]:
        if params:
            raise ValueError(f"{PART}: takes no build parameters, got {sorted(params)}")
        return [write_part]

    def new_scratch(self) -> list[np.ndarray]:
        """Accumulators, all zeros between searches: one now, one more per share once a query is split."""
        return [np.zeros(self.range_size, dtype=np.float32)]

    def search(self, query: SparseQuery, k: int, scratch: list[np.ndarray], options: Mapping[str, Any],
               allowed: np.ndarray | None = None) -> TopK:
        index = self.index
        allowed = masking.checked(allowed, index.num_documents)
        selected = masking.selected_documents(index.offsets, query, allowed)
        if selected is not None:
            return TopK(*masking.score_documents(index, query, k, selected))
        threads = min(int(options.get("threads", 1)), intra_query.max_threads(), self.num_ranges)
        arguments = (self.doc_numbers, index.impacts, self.range_starts, np.int64(self.range_size),
                     np.int64(index.num_documents), query.term_ids, query.weights, np.float32(index.scale), int(k))
        if threads <= 1:
            docs, scores, postings = score_blocked(*arguments, scratch[0], masking.kernel_mask(allowed))
            return TopK(docs, scores, {"postings_traversed": int(postings)})
        while len(scratch) < threads:  # this thread's own extra accumulators, kept for its later searches
            scratch.append(np.zeros(self.range_size, dtype=np.float32))
        docs, scores, postings, shares = score_in_shares(*arguments, scratch, masking.kernel_mask(allowed), threads)
        return TopK(docs, scores, {"postings_traversed": postings, "range_shares": shares})
