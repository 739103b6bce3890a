"""Approximate scoring by candidate generation over statically pruned posting lists + exact rescoring.

Seismic's block summaries cost memory and, on 55-term queries, bound their blocks loosely (engine/kernels/
clustered.py). This scorer keeps two of its ideas, static pruning and the query-term cut, and walks what is left
with the cache-blocked exact kernel (engine/kernels/blocked_exact.py), which is fast per posting:

- static pruning: each term keeps its `n_postings` highest-impact postings (ties: lower document number), with
  the index's impacts (uint8 or uint16), cut into document ranges of `range_size` (at most 65,536: a kept posting
  stores the low 16 bits of its document number, as the exact-blocked part does);
- impact tiers: a term's kept postings are stored as `tiers` lists by impact rank (default: its 10,000 highest
  impacts, the next 40,000, the next 50,000), each in document order with its own range starts and its highest
  impact. A query walks a lower tier of a term only when that tier's best contribution (the term's weight x the
  tier's highest impact) reaches `tier_cut` x the largest contribution any posting of the query can make: deep
  lists for the terms whose low-impact postings still matter, short ones for the rest (docs/index.md, "Ninth
  round"). Each tier is walked like a term of its own (virtual term = term x tiers + tier);
- query-term cut: the heaviest query terms are walked, up to `query_cut` of them and no more than needed to reach
  `query_mass` of the query's positive weight (a fraction, so that long and short queries are cut alike);
- candidate cut: the walk keeps the `candidates` best partial scores (at least k), range by range, with the
  accumulator slice in L2; the candidates get their exact scores from their forward rows (rows prefetched a few
  candidates ahead; engine/kernels/forward_scoring.py), the oracle's float32 products summed in query-term
  order, and the best k of them are returned: every returned score is bit-for-bit the exact scorer's score of
  that document (ties to the lower document number).

Per query the work is bounded by query_cut x n_postings postings, a scan of the touched ranges and
`candidates` forward rows, whatever the collection size. At 1M real-like documents a query touches ~10% of the
postings the exact scorer walks (docs/index.md, "Seventh round").

Part layout 3 (this one): impact tiers, range starts + 16-bit document numbers, impacts of the index's dtype.
Layouts 1 (uint32 documents, uint8 only) and 2 (one tier) are refused with the rebuild command.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from engine.kernels.blocked_exact import (DEFAULT_RANGE_SIZE, MAX_LOCAL_RANGE_SIZE, MIN_RANGE_SIZE,
                                          local_doc_numbers, num_ranges, prepare_ranges, score_blocked16)
from engine.kernels.clustered import _top_postings
from engine.kernels.exact import NO_MASK
from engine.kernels.forward_index import build_forward
from engine.kernels.forward_scoring import clear_query, new_query_positions, rank_exact, register_query

# Build-time parameters: defaults and valid ranges (inclusive).
DEFAULT_N_POSTINGS = 100000
N_POSTINGS_RANGE = (16, 1 << 24)
# Where the lower tiers start, in postings of a term's impact ranking (those at or past n_postings are dropped).
DEFAULT_TIERS = (10000, 50000)
MAX_TIERS = 8
RANGE_SIZE_RANGE = (MIN_RANGE_SIZE, MAX_LOCAL_RANGE_SIZE)
# Query-time knobs: defaults and valid ranges (inclusive), for request limits.
DEFAULT_QUERY_CUT = 64
QUERY_CUT_RANGE = (1, 1024)
DEFAULT_QUERY_MASS = 0.8
QUERY_MASS_RANGE = (0.01, 1.0)
DEFAULT_CANDIDATES = 300
CANDIDATES_RANGE = (1, 100_000)
MAX_POSTINGS_RANGE = (0, 1 << 40)  # 0: no cap
# After each document range the walk keeps at most range_quota x candidates x (ranges walked / ranges) + 1
# candidates (score_blocked16's `pace`): 3 kept recall@1000 as it was at 1M and saved 0.3 ms a query at 2,000
# candidates. 0: no quota (the exact top candidates), for collections sorted so that the best documents of a
# query gather in the first ranges.
DEFAULT_RANGE_QUOTA = 3.0
RANGE_QUOTA_RANGE = (0.0, 1000.0)
# A lower tier is walked when its best contribution reaches tier_cut x the query's largest; 0: every tier (the
# whole n_postings lists). 0.3 at k=10 and 0.1 at k=1000 measured best at 1M (docs/index.md, "Ninth round").
DEFAULT_TIER_CUT = 0.2
TIER_CUT_RANGE = (0.0, 1.0)

FILES = ("doc_offsets", "forward_terms", "forward_impacts", "range_starts", "pruned_docs", "pruned_impacts",
         "tier_max_impacts")


class PrunedIndex(NamedTuple):
    doc_offsets: np.ndarray      # int64[N+1]  forward index
    forward_terms: np.ndarray    # uint16[P]
    forward_impacts: np.ndarray  # uint8[P] or uint16[P]: the index's impacts
    range_starts: np.ndarray     # int64[V x T, R+1]: where tier j of term t (row t x T + j) reaches r x range_size
    pruned_docs: np.ndarray      # uint16[P']  low 16 bits of the document numbers, ascending within a tier
    pruned_impacts: np.ndarray   # [P'] the index's dtype
    tier_max_impacts: np.ndarray  # [V x T] the index's dtype: each tier's highest impact (0: empty tier)
    range_size: int
    tiers: int

    @property
    def num_documents(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def vocab_size(self) -> int:
        return len(self.range_starts) // self.tiers

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(self[:len(FILES)])

    def nbytes(self) -> int:
        return int(sum(np.asarray(a).nbytes for a in self.arrays()))


def _check_range(name: str, value, bounds) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be in [{bounds[0]}, {bounds[1]}], got {value}")


def check_knobs(query_cut: int, candidates: int, query_mass: float = DEFAULT_QUERY_MASS,
                max_postings: int = 0, range_quota: float = DEFAULT_RANGE_QUOTA,
                tier_cut: float = DEFAULT_TIER_CUT) -> None:
    """Raise ValueError naming the knob and its limits."""
    _check_range("query_cut", query_cut, QUERY_CUT_RANGE)
    _check_range("candidates", candidates, CANDIDATES_RANGE)
    _check_range("query_mass", query_mass, QUERY_MASS_RANGE)
    _check_range("max_postings", max_postings, MAX_POSTINGS_RANGE)
    _check_range("range_quota", range_quota, RANGE_QUOTA_RANGE)
    _check_range("tier_cut", tier_cut, TIER_CUT_RANGE)


def tier_bounds(n_postings: int, tiers=DEFAULT_TIERS) -> np.ndarray:
    """The tiers' ends in a term's impact ranking: the starts of the lower tiers below n_postings, then n_postings
    (int64, ascending). Raises ValueError on starts that are not positive and ascending, or too many tiers."""
    starts = [int(t) for t in tiers]
    if any(t <= 0 for t in starts) or starts != sorted(set(starts)):
        raise ValueError(f"tiers must be positive, ascending posting counts, got {list(tiers)}")
    ends = [t for t in starts if t < n_postings] + [int(n_postings)]
    if len(ends) > MAX_TIERS:
        raise ValueError(f"at most {MAX_TIERS} tiers, got {len(ends)}")
    return np.asarray(ends, dtype=np.int64)


def build_pruned(offsets: np.ndarray, doc_numbers: np.ndarray, impacts: np.ndarray, num_documents: int, *,
                 n_postings: int = DEFAULT_N_POSTINGS, range_size: int = DEFAULT_RANGE_SIZE,
                 tiers=DEFAULT_TIERS, chunk_terms: int = 2048, progress: bool = False) -> PrunedIndex:
    """The scorer's arrays from an inverted index (offsets int64[V+1], doc_numbers uint32 ascending per term,
    uint8 or uint16 impacts); `tiers`: where the lower tiers start in a term's impact ranking (tier_bounds).
    Memory: the output, plus 4 bytes a kept posting while the range starts are found."""
    _check_range("n_postings", n_postings, N_POSTINGS_RANGE)
    _check_range("range_size", range_size, RANGE_SIZE_RANGE)
    if np.dtype(impacts.dtype) not in (np.uint8, np.uint16):
        raise ValueError(f"pruned lists keep uint8 or uint16 impacts, the index has {impacts.dtype}")
    ends = tier_bounds(n_postings, tiers)
    offsets = np.asarray(offsets, dtype=np.int64)
    vocab = len(offsets) - 1
    doc_offsets, forward_terms, forward_impacts = build_forward(offsets, doc_numbers, impacts, num_documents)
    pruned_offsets = _tier_offsets(offsets, ends)
    full_docs = np.empty(int(pruned_offsets[-1]), dtype=np.uint32)
    pruned_impacts = np.empty(int(pruned_offsets[-1]), dtype=impacts.dtype)
    tier_max_impacts = np.zeros(vocab * len(ends), dtype=impacts.dtype)
    levels = 1 << (8 * np.dtype(impacts.dtype).itemsize)
    chunks = range(0, vocab, chunk_terms)
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc="pruning posting lists", unit="chunk")
    for t0 in chunks:
        _prune_terms(offsets, doc_numbers, impacts, pruned_offsets, full_docs, pruned_impacts, tier_max_impacts,
                     t0, min(vocab, t0 + chunk_terms), ends, levels)
    range_starts = prepare_ranges(pruned_offsets, full_docs, num_documents, range_size)
    pruned_docs = local_doc_numbers(full_docs)
    del full_docs
    return PrunedIndex(doc_offsets, forward_terms, forward_impacts, range_starts, pruned_docs, pruned_impacts,
                       tier_max_impacts, int(range_size), len(ends))


@njit(nogil=True, cache=True)
def _tier_offsets(offsets, ends):
    """Where each tier (row term x tiers + tier) starts in the pruned arrays: int64[V x tiers + 1]."""
    vocab, tiers = offsets.shape[0] - 1, ends.shape[0]
    out = np.zeros(vocab * tiers + 1, dtype=np.int64)
    for term in range(vocab):
        length = offsets[term + 1] - offsets[term]
        start = 0
        for tier in range(tiers):
            row = term * tiers + tier
            out[row + 1] = out[row] + max(0, min(length, ends[tier]) - start)
            start = ends[tier]
    return out


@njit(nogil=True, cache=True)
def _prune_terms(offsets, doc_numbers, impacts, pruned_offsets, pruned_docs, pruned_impacts, tier_max_impacts,
                 t0, t1, ends, levels):
    tiers = ends.shape[0]
    for term in range(t0, t1):
        lo, hi = offsets[term], offsets[term + 1]
        if hi - lo <= ends[0]:  # one tier, kept whole: already in document order
            out = pruned_offsets[term * tiers]
            for i in range(hi - lo):
                pruned_docs[out + i] = doc_numbers[lo + i]
                pruned_impacts[out + i] = impacts[lo + i]
                tier_max_impacts[term * tiers] = max(tier_max_impacts[term * tiers], impacts[lo + i])
            continue
        ranked = _top_postings(doc_numbers, impacts, levels, lo, hi, min(hi - lo, ends[tiers - 1]))
        start = 0
        for tier in range(tiers):
            stop = min(ranked.shape[0], ends[tier])
            if stop <= start:
                break
            tier_max_impacts[term * tiers + tier] = impacts[ranked[start]]  # impact descending
            # Each tier in document order: the accumulator adds then walk memory forward.
            chosen = np.sort(ranked[start:stop])
            out = pruned_offsets[term * tiers + tier]
            for i in range(chosen.shape[0]):
                pruned_docs[out + i] = doc_numbers[chosen[i]]
                pruned_impacts[out + i] = impacts[chosen[i]]
            start = stop


def new_scratch(num_documents: int, vocab_size: int, range_size: int = DEFAULT_RANGE_SIZE
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-thread scratch: (query positions, engine/kernels/forward_scoring.py, range accumulator
    float32[min(range_size, N)] = 0)."""
    return (new_query_positions(vocab_size), np.zeros(max(1, min(range_size, num_documents)), dtype=np.float32))


def search(index: PrunedIndex, term_ids: np.ndarray, term_weights: np.ndarray, scale: float, k: int,
           query_cut: int = DEFAULT_QUERY_CUT, candidates: int = DEFAULT_CANDIDATES,
           query_mass: float = DEFAULT_QUERY_MASS, max_postings: int = 0, scratch=None,
           allowed: np.ndarray = NO_MASK, range_quota: float = DEFAULT_RANGE_QUOTA,
           tier_cut: float = DEFAULT_TIER_CUT):
    """Convenience wrapper around search_pruned (checks the knobs; allocates scratch when none is given)."""
    check_knobs(query_cut, candidates, query_mass, max_postings, range_quota, tier_cut)
    if scratch is None:
        scratch = new_scratch(index.num_documents, index.vocab_size, index.range_size)
    return search_pruned(*index.arrays(), index.range_size, index.tiers, np.asarray(term_ids, dtype=np.int32),
                         np.asarray(term_weights, np.float32), np.float32(scale), int(k), int(query_cut),
                         np.float64(query_mass), int(candidates), *scratch, allowed, int(max_postings),
                         np.float64(range_quota), np.float64(tier_cut))


@njit(nogil=True, cache=True)
def search_pruned(doc_offsets, forward_terms, forward_impacts, range_starts, pruned_docs, pruned_impacts,
                  tier_max_impacts, range_size, tiers, term_ids, term_weights, scale, k, query_cut, query_mass,
                  candidates, query_positions, accumulator, allowed=NO_MASK, max_postings=0,
                  range_quota=DEFAULT_RANGE_QUOTA, tier_cut=DEFAULT_TIER_CUT):
    """Approximate top-k: (document numbers int64, exact float32 scores, stats int64[4] = pruned postings
    walked, query terms walked, documents rescored, forward entries read). Term ids must be unique (the
    Searcher's queries are); ids outside the vocabulary are ignored. The scratch is left as found. `allowed`:
    bool[num_documents] of the documents that may be returned, or empty for all; the walk's selection skips
    excluded documents, so the candidates are all allowed ones. `max_postings` (0: no cap): a term whose pruned
    list would take the walk past that many postings is not walked, nor any lighter one (the first term always
    is): it bounds the slowest queries, those whose heaviest terms have long lists. `range_quota`: see
    DEFAULT_RANGE_QUOTA; `tier_cut`: see DEFAULT_TIER_CUT (postings of the lower tiers walked count too)."""
    num_documents = doc_offsets.shape[0] - 1
    vocab = range_starts.shape[0] // tiers
    terms, raw, weights, num_terms = register_query(term_ids, term_weights, scale, vocab, query_positions)
    stats = np.zeros(4, dtype=np.int64)
    k = max(0, min(k, num_documents))
    docs = np.empty(0, dtype=np.int64)
    scores = np.empty(0, dtype=np.float32)
    if k > 0 and num_terms > 0:
        # The heaviest terms (ties: query order), until query_cut of them or query_mass of the positive weight.
        heaviest = np.argsort(-raw[:num_terms], kind="mergesort")
        positive = 0.0
        largest = 0.0  # the largest contribution a posting of the query can make
        for q in range(num_terms):
            positive += max(np.float64(raw[q]), 0.0)
            largest = max(largest, np.float64(raw[q]) * np.float64(tier_max_impacts[terms[q] * tiers]))
        walk_terms = np.empty(min(query_cut, num_terms) * tiers, dtype=np.int32)  # tiers as terms of their own
        walk_weights = np.empty(min(query_cut, num_terms) * tiers, dtype=np.float32)
        walked = 0
        lists = 0
        mass = 0.0
        budget = 0
        ranges = range_starts.shape[1] - 1
        for h in range(min(query_cut, num_terms)):
            q = heaviest[h]
            if not raw[q] > 0:
                break  # a non-positive weight cannot lift a document into the top-k
            first = terms[q] * tiers
            # The top tier always; a lower one when its best contribution reaches the cut (tiers are in impact
            # order, so the first that does not ends the term's walk).
            chosen_tiers = 1
            while chosen_tiers < tiers and (tier_cut == 0 or np.float64(raw[q]) * np.float64(
                    tier_max_impacts[first + chosen_tiers]) >= tier_cut * largest):
                chosen_tiers += 1
            work = 0
            for tier in range(chosen_tiers):
                work += range_starts[first + tier, ranges] - range_starts[first + tier, 0]
            budget += work
            if walked > 0 and 0 < max_postings < budget:
                break
            for tier in range(chosen_tiers):
                walk_terms[lists] = first + tier
                walk_weights[lists] = raw[q]
                lists += 1
            walked += 1
            mass += np.float64(raw[q])
            if mass >= query_mass * positive:
                break
        stats[1] = walked
        chosen, _, postings = score_blocked16(pruned_docs, pruned_impacts, range_starts, range_size,
                                              num_documents, walk_terms[:lists], walk_weights[:lists], scale,
                                              max(candidates, k), accumulator, allowed, np.int64(0),
                                              np.int64(ranges), None, np.int64(0), np.float64(range_quota))
        stats[0] = postings
        # The candidates' exact scores, straight from their forward rows (one pass: ranking them by a dense dot
        # product first, then rescoring the k kept, read the rows twice and took 1.4x as long at k=1000).
        docs, scores, entries = rank_exact(chosen, k, doc_offsets, forward_terms, forward_impacts, query_positions,
                                           weights[:num_terms])
        stats[3] = entries
        stats[2] = chosen.shape[0]
    clear_query(terms, num_terms, query_positions)
    return docs, scores, stats


def write_pruned(index: PrunedIndex, directory: str | os.PathLike, prefix: str, **parameters) -> dict:
    """Save every array as <directory>/<prefix><name>.npy; returns a JSON-able dict (parameters, counts, files)
    for the index manifest. The range size and the tier count go into the parameters: load_pruned needs them."""
    directory = Path(directory)
    files = {}
    for name, array in zip(FILES, index.arrays()):
        path = directory / f"{prefix}{name}.npy"
        np.save(path, np.ascontiguousarray(array).ravel())  # range_starts flat: the index format maps 1-D arrays
        files[name] = path.name
    return {"parameters": {**parameters, "range_size": index.range_size, "tier_count": index.tiers}, "files": files,
            "counts": {"documents": index.num_documents, "forward_postings": int(len(index.forward_terms)),
                       "kept_postings": int(len(index.pruned_docs)), "bytes": index.nbytes()}}


def load_pruned(directory: str | os.PathLike, prefix: str, range_size: int, vocab_size: int, tiers: int = 1,
                mmap: bool = True) -> PrunedIndex:
    """Open the arrays written by write_pruned (memory-mapped by default); `range_size` and `tiers` as it
    recorded."""
    directory = Path(directory)
    arrays = []
    for name in FILES:
        path = directory / f"{prefix}{name}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path}: part of the pruned index is missing")
        arrays.append(np.load(path, mmap_mode="r" if mmap else None))
    return bound(*arrays, range_size, vocab_size, tiers)


def bound(doc_offsets, forward_terms, forward_impacts, flat_range_starts, pruned_docs, pruned_impacts,
          tier_max_impacts, range_size: int, vocab_size: int, tiers: int) -> PrunedIndex:
    """A PrunedIndex over arrays as written (range starts flat), after checking the range starts' length."""
    _check_range("range_size", range_size, RANGE_SIZE_RANGE)
    _check_range("tiers", tiers, (1, MAX_TIERS))
    num_documents = len(doc_offsets) - 1
    columns = num_ranges(num_documents, range_size) + 1
    if len(flat_range_starts) != vocab_size * tiers * columns or len(tier_max_impacts) != vocab_size * tiers:
        raise ValueError(f"{len(flat_range_starts)} range starts and {len(tier_max_impacts)} tier maxima do not "
                         f"cut {num_documents} documents into ranges of {range_size} for {vocab_size} terms in "
                         f"{tiers} tiers")
    return PrunedIndex(doc_offsets, forward_terms, forward_impacts,
                       flat_range_starts.reshape(vocab_size * tiers, columns), pruned_docs, pruned_impacts,
                       tier_max_impacts, int(range_size), int(tiers))
