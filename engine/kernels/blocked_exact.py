"""Cache-blocked exact scoring: the exact oracle's results, bit for bit, with the accumulator kept in L2.

The oracle (term-at-a-time over the whole index) adds each posting into a float32 accumulator of one entry per
document: 4 MB at 1M documents, which misses a 0.5-2 MB L2 on every scattered add. Here the documents are cut
into ranges of `range_size` documents; at open time `prepare_ranges` records, for every term, the posting
position where each range starts (postings are in ascending document order, so a range of a term's list is a
contiguous slice). A query then walks range by range: every query term's postings of that range go into an
accumulator slice of `range_size` floats (L2-resident), the slice is scanned into one top-k heap and cleared
while still in cache.

Equal to the oracle bit for bit, by construction:
- each posting adds float32(float32(w_q) * float32(scale)) * float32(impact), the same float32 operations;
- within a range the terms are walked in query order, so every document sums its products in query-term
  order, as the oracle does;
- ranges go in ascending document order and the heap keeps ties to the lower document number, so the top-k
  (score descending, ties to the lower document) is the same set in the same order.

Refinements of the 16-bit form (docs/index.md, "Faster exact scoring"; the uint32 form is the first version):
- the document numbers may be given as their low 16 bits (`local_doc_numbers`, an optional index part written by
  `local_doc_numbers()`): a range holds at most 65,536 documents, so the low 16 bits of a document number minus
  those of the range's first document (mod 2^16) is its place in the range. The posting loop then streams 3 bytes
  a posting instead of 5;
- the top-k is a key buffer (engine/topk.py) rather than a heap: a hit above the bar is appended, and a full
  buffer keeps its k best by a partition. The keys order hits by the tie rule, so the top-k is the same. It beat
  the heap at every k measured, and the chunked scan (the maximum of each 64 scores compared first) that the heap
  needed at small k (docs/index.md, "Eighth round");
- for k <= COUNTED_SCAN_MAX_K, once the bar has risen, the dense scan first counts each chunk's scores that
  reach the bar (vectorized) and reads only the chunks that have one: the same tests on the same scores,
  skipped only where none could pass.

Intra-query threads (engine/scorers/blocked.py): both forms can walk a contiguous share of the ranges; threads
walk the shares of one query at once, each with its own accumulator and heap, optionally skipping scores that
the other shares' k-th bests exclude, and their top-k lists are merged by the tie rule (docs/index.md).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.exact import NO_MASK
from engine.topk import (best_hits, could_enter, hit_key, keep_best, key_buffer, key_score, offer, sift_down,
                         sift_up, sorted_hits)

# 32K documents x 4 bytes = 128 KB of accumulator: a quarter of the 512 KB L2 of the AMD EPYC this was
# measured on (16K and 32K were best there, 64K and 128K slower), well inside the 2 MB L2 of the Intel Xeon of
# the reference figures (docs/index.md, "Faster exact scoring").
DEFAULT_RANGE_SIZE = 32768
MIN_RANGE_SIZE = 1024
MAX_RANGE_SIZE = 1 << 22
# In a range whose postings * SPARSE_FRACTION < range_size, walking the postings again beats scanning the slice.
SPARSE_FRACTION = 8
# Up to this k, once the bar has risen, the dense scan first counts each chunk's passing scores (SCAN_CHUNK a
# chunk). At k=10 it took the scan of a pruned walk from 0.46 to 0.29 ms a query; at 2,000 most chunks pass and
# it cost more than it saved (docs/index.md, "Eighth round").
COUNTED_SCAN_MAX_K = 512
SCAN_CHUNK = 64
# Ranges of at most this many documents can be walked with 16-bit local document numbers.
MAX_LOCAL_RANGE_SIZE = 1 << 16


def num_ranges(num_documents: int, range_size: int) -> int:
    return max(1, -(-int(num_documents) // int(range_size)))


def prepare_ranges(offsets: np.ndarray, doc_numbers: np.ndarray, num_documents: int,
                   range_size: int = DEFAULT_RANGE_SIZE) -> np.ndarray:
    """range_starts int64[vocab, ranges + 1]: row t holds the posting positions where term t's documents
    reach r * range_size, for r = 0..ranges (the last column is the end of the list). O(vocab * ranges * log)."""
    if not MIN_RANGE_SIZE <= range_size <= MAX_RANGE_SIZE:
        raise ValueError(f"range_size must be in [{MIN_RANGE_SIZE}, {MAX_RANGE_SIZE}], got {range_size}")
    return _range_starts(np.asarray(offsets, dtype=np.int64), doc_numbers, num_ranges(num_documents, range_size),
                         np.int64(range_size))


@njit(nogil=True, cache=True)
def _range_starts(offsets, doc_numbers, ranges, range_size):
    vocab = offsets.shape[0] - 1
    starts = np.empty((vocab, ranges + 1), dtype=np.int64)
    bounds = np.arange(ranges + 1).astype(np.int64) * range_size
    for term in range(vocab):
        lo, hi = offsets[term], offsets[term + 1]
        docs = doc_numbers[lo:hi]
        for r in range(ranges):
            starts[term, r] = lo + np.searchsorted(docs, bounds[r])
        starts[term, ranges] = hi
    return starts


def local_doc_numbers(doc_numbers: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """The low 16 bits of every document number (uint16, same order), converted chunk by chunk."""
    out = np.empty(doc_numbers.shape[0], dtype=np.uint16)
    for lo in range(0, doc_numbers.shape[0], chunk):
        out[lo:lo + chunk] = doc_numbers[lo:lo + chunk]  # numpy's unsafe cast keeps the low bits
    return out


def score_blocked(doc_numbers, impacts, range_starts, range_size, num_documents, term_ids, term_weights, scale,
                  k, accumulator, allowed=NO_MASK, first_range=0, last_range=None, share_thresholds=None, share=0):
    """Top-k (document numbers int64, scores float32, postings traversed) of a query, equal to the oracle's.

    `doc_numbers`: the index's uint32 array, or its low 16 bits (`local_doc_numbers`; range_size at most
    MAX_LOCAL_RANGE_SIZE). `accumulator` is float32[>= min(range_size, num_documents)], all zeros; it is left all
    zeros. `allowed`: bool[num_documents] of the documents that may be returned, or empty for all.
    `[first_range, last_range)` (default: every range) limits the walk to those ranges: the top-k among their
    documents, so that threads can each take a share (`share_bounds`) and their answers be merged by the tie rule.
    Shares running at the same time may pass `share_thresholds` (float32[shares], zeros at the start, the same
    array for all) and their own index `share`: each publishes its k-th best score there once it holds k hits,
    and skips scores the others' published ones exclude (`_others_floor`), which only saves heap work. Without
    them (None) the kernels compile without that test: the one-thread code is the kernel as it was before shares.
    One kernel per form: a single kernel for both (with a runtime or a compile-time switch) measured 2-10% slower
    on the uint32 form than the first version, which is kept as it was."""
    ranges = range_starts.shape[1] - 1
    last_range = ranges if last_range is None else last_range
    if not 0 <= first_range <= last_range <= ranges:
        raise ValueError(f"ranges [{first_range}, {last_range}) must lie within [0, {ranges}]")
    kernel = score_blocked16 if doc_numbers.dtype == np.uint16 else _score_blocked32
    return kernel(doc_numbers, impacts, range_starts, range_size, num_documents, term_ids, term_weights, scale, k,
                  accumulator, allowed, np.int64(first_range), np.int64(last_range), share_thresholds,
                  np.int64(share))


@njit(nogil=True, cache=True, inline="always")
def _others_floor(share_thresholds, share):
    """The score a hit of share `share` must beat, given the k-th best scores the other shares published (0: none
    yet). Shares are contiguous and ascending, so a share before this one holds k hits that each rank above any
    of ours with a score <= its k-th best (equal scores go to the lower document): ours must be > it; a share
    after this one: ours must be >= its k-th best, i.e. > the next float below. A value read while another
    thread raises it is an older k-th best of the same heap: still a bound, just a lower one."""
    floor = np.float32(0)
    if share_thresholds is None:
        return floor
    for i in range(share_thresholds.shape[0]):
        other = share_thresholds[i]
        if i == share or other <= 0:
            continue
        if i > share:
            other = np.nextafter(other, np.float32(0))
        floor = max(floor, other)
    return floor


@njit(nogil=True, cache=True, inline="always")
def _bar(threshold, floor, share_thresholds):
    """What a score must beat: the k-th best, or the others' bound if higher (only when sharing: Numba prunes
    the branch for None, so the one-thread scan compares against the k-th best alone)."""
    if share_thresholds is None:
        return threshold
    return max(threshold, floor)


def share_bounds(range_starts: np.ndarray, term_ids: np.ndarray, shares: int) -> np.ndarray:
    """Cut the ranges into at most `shares` contiguous, non-empty shares with about equal postings of the query
    (its terms' postings decide a share's time, and a collection's order can make ranges uneven): int64 bounds
    [0, ..., ranges], share i being ranges [bounds[i], bounds[i + 1]). Fewer shares when there are fewer ranges,
    or when a few heavy ranges hold most postings (a range is never split)."""
    return _share_bounds(range_starts, term_ids, np.int64(max(1, int(shares))))


@njit(nogil=True, cache=True)
def _share_bounds(range_starts, term_ids, shares):
    # Numba: the numpy form of this (fancy indexing, cumsum, searchsorted, unique) cost ~60 us a query.
    vocab_size, ranges = range_starts.shape[0], range_starts.shape[1] - 1
    # Each range also costs a scan of its documents: one unit a range keeps an all-empty query evenly cut.
    cost = np.ones(ranges, dtype=np.int64)
    for q in range(term_ids.shape[0]):
        term = term_ids[q]
        if term < 0 or term >= vocab_size:
            continue  # as the kernels do: ignored
        for r in range(ranges):
            cost[r] += range_starts[term, r + 1] - range_starts[term, r]
    total = cost.sum()
    bounds = np.empty(min(shares, ranges) + 1, dtype=np.int64)
    bounds[0] = 0
    count = 1
    running = 0
    share = 1  # the next cut ends share `share`: after the first range where running >= total * share / shares
    for r in range(ranges - 1):
        running += cost[r]
        if share < shares and running * shares >= total * share and count < bounds.shape[0] - 1:
            bounds[count] = r + 1
            count += 1
            while share < shares and running * shares >= total * share:
                share += 1
    bounds[count] = ranges
    return bounds[:count + 1]


@njit(nogil=True, cache=True)
def _passing_counts(acc, bar, counts):
    """counts[c] = how many scores of chunk c (SCAN_CHUNK of them) are >= bar; returns the number of chunks."""
    chunks = -(-acc.shape[0] // SCAN_CHUNK)
    for c in range(chunks):
        chunk = acc[c * SCAN_CHUNK:min(acc.shape[0], (c + 1) * SCAN_CHUNK)]
        passing = 0
        for i in range(chunk.shape[0]):
            passing += chunk[i] >= bar
        counts[c] = passing
    return chunks


@njit(nogil=True, cache=True)
def score_blocked16(doc_numbers, impacts, range_starts, range_size, num_documents, term_ids, term_weights, scale,
                     k, accumulator, allowed, first_range, last_range, share_thresholds, share, pace=0.0):
    """The 16-bit form: `doc_numbers` are the low 16 bits (`local_doc_numbers`; range_size at most
    MAX_LOCAL_RANGE_SIZE); the top-k is kept in a key buffer (engine/topk.py) instead of a heap. Otherwise as
    `_score_blocked32`.

    `pace` > 0 makes it approximate, for candidate generation (engine/kernels/pruned_rescore.py): after each
    range the buffer keeps at most pace x k x (ranges walked / ranges) + 1 hits, the best. While the bar is still
    low the first ranges would otherwise admit most of their documents: at 2,000 candidates the walk took 2.27 ms,
    1.92-1.94 ms with pace 1.5-3 at the same recall@1000 (docs/index.md, "Eighth round"). It assumes the best
    hits are spread over the ranges, not gathered in the first ones (documents in input order rather than sorted
    by topic); 0 (exact) by default."""
    masked = allowed.shape[0] > 0
    # A document's place in its range: (stored number - the range's first document's stored number) & 0xFFFF.
    vocab_size = range_starts.shape[0]
    scale32 = np.float32(scale)
    # The query's valid terms and their float32 weights, computed as the oracle does.
    num_terms = 0
    terms = np.empty(term_ids.shape[0], dtype=np.int64)
    weights = np.empty(term_ids.shape[0], dtype=np.float32)
    for q in range(term_ids.shape[0]):
        term = term_ids[q]
        if term < 0 or term >= vocab_size:
            continue
        terms[num_terms] = term
        weights[num_terms] = np.float32(term_weights[q]) * scale32
        num_terms += 1

    k = min(k, num_documents)
    k = max(k, 0)
    keys = key_buffer(k)
    size = 0
    bar_key = np.uint64(0)  # the k-th best key kept at the last compaction (0: none yet)
    bar = np.float32(0)     # its score: a hit scoring below it cannot enter
    postings = 0
    counts = np.empty(-(-max(1, min(range_size, num_documents)) // SCAN_CHUNK), dtype=np.int64)
    for r in range(first_range, last_range):
        base = r * range_size
        stored_base = base & 0xFFFF
        width = min(range_size, num_documents - base)
        acc = accumulator[:width]
        touched = 0
        for q in range(num_terms):
            term = terms[q]
            lo, hi = range_starts[term, r], range_starts[term, r + 1]
            if lo == hi:
                continue
            weight = weights[q]
            # Slices indexed from 0: LLVM drops the negative-index checks.
            docs = doc_numbers[lo:hi]
            term_impacts = impacts[lo:hi]
            touched += hi - lo
            for i in range(docs.shape[0]):
                acc[(np.int64(docs[i]) - stored_base) & 0xFFFF] += weight * np.float32(term_impacts[i])
        postings += touched
        if touched == 0:
            continue
        if k == 0:
            acc[:] = 0
            continue
        # What a score must beat besides the bar: 0, or the bound the other shares give.
        floor = _others_floor(share_thresholds, share)
        if touched * SPARSE_FRACTION < width:
            # Few documents touched: reach them through the postings; reading zeroes the entry, so a document
            # is offered once with its full score. Keys compare document numbers, so order does not matter.
            for q in range(num_terms):
                term = terms[q]
                docs = doc_numbers[range_starts[term, r]:range_starts[term, r + 1]]
                for i in range(docs.shape[0]):
                    local = (np.int64(docs[i]) - stored_base) & 0xFFFF
                    score = acc[local]
                    if score > 0:
                        acc[local] = 0
                        if score >= bar and score > floor and (not masked or allowed[local + base]):
                            key = hit_key(score, local + base)
                            if key > bar_key:
                                keys[size] = key  # push_key written out (see there)
                                size += 1
                                if size == keys.shape[0]:
                                    bar_key = keep_best(keys, size, k)
                                    size = k
                                    bar = key_score(bar_key)
        elif k <= COUNTED_SCAN_MAX_K and bar_key > 0:
            # Few of the range's scores can beat a risen bar: count each chunk's passing scores first (a loop
            # LLVM vectorizes in its own function) and look only into the chunks that have one.
            for c in range(_passing_counts(acc, bar, counts)):
                if counts[c] > 0:
                    for local in range(c * SCAN_CHUNK, min(width, (c + 1) * SCAN_CHUNK)):
                        score = acc[local]
                        if score >= bar and score > floor and (not masked or allowed[local + base]):
                            key = hit_key(score, local + base)
                            if key > bar_key:
                                keys[size] = key  # push_key written out (see there)
                                size += 1
                                if size == keys.shape[0]:
                                    bar_key = keep_best(keys, size, k)
                                    size = k
                                    bar = key_score(bar_key)
            acc[:] = 0
        else:
            for local in range(width):
                score = acc[local]
                if score >= bar and score > floor and (not masked or allowed[local + base]):
                    key = hit_key(score, local + base)
                    if key > bar_key:
                        keys[size] = key  # push_key written out (see there)
                        size += 1
                        if size == keys.shape[0]:
                            bar_key = keep_best(keys, size, k)
                            size = k
                            bar = key_score(bar_key)
            acc[:] = 0
        if pace > 0:
            quota = np.int64(k * pace * (r - first_range + 1) / (last_range - first_range)) + 1
            if quota < k and size > 2 * quota:  # worth a compaction: the buffer holds far more than the quota
                bar_key = keep_best(keys, size, quota)
                size = quota
                bar = key_score(bar_key)
        if share_thresholds is not None and bar_key > 0:
            share_thresholds[share] = bar
    docs, scores = best_hits(keys, size, k)
    return docs, scores, postings


@njit(nogil=True, cache=True)
def _score_blocked32(doc_numbers, impacts, range_starts, range_size, num_documents, term_ids, term_weights, scale,
                     k, accumulator, allowed, first_range, last_range, share_thresholds, share):
    """The uint32 form, unchanged from the first version (the chunked scan did not measure faster here).

    `accumulator` is float32[>= min(range_size, num_documents)], all zeros; it is left all zeros. Term ids
    outside the vocabulary are ignored; k is capped at the number of documents. `allowed`: bool[num_documents]
    of the documents that may be returned, or empty for all (selection skips the others; see exact.py).
    """
    masked = allowed.shape[0] > 0
    vocab_size = range_starts.shape[0]
    scale32 = np.float32(scale)
    # The query's valid terms and their float32 weights, computed as the oracle does.
    num_terms = 0
    terms = np.empty(term_ids.shape[0], dtype=np.int64)
    weights = np.empty(term_ids.shape[0], dtype=np.float32)
    for q in range(term_ids.shape[0]):
        term = term_ids[q]
        if term < 0 or term >= vocab_size:
            continue
        terms[num_terms] = term
        weights[num_terms] = np.float32(term_weights[q]) * scale32
        num_terms += 1

    k = min(k, num_documents)
    k = max(k, 0)
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    threshold = np.float32(0)
    postings = 0
    for r in range(first_range, last_range):
        base = r * range_size
        width = min(range_size, num_documents - base)
        acc = accumulator[:width]
        touched = 0
        for q in range(num_terms):
            term = terms[q]
            lo, hi = range_starts[term, r], range_starts[term, r + 1]
            if lo == hi:
                continue
            weight = weights[q]
            # Slices indexed from 0: LLVM drops the negative-index checks.
            docs = doc_numbers[lo:hi]
            term_impacts = impacts[lo:hi]
            touched += hi - lo
            for i in range(docs.shape[0]):
                acc[np.int64(docs[i]) - base] += weight * np.float32(term_impacts[i])
        postings += touched
        if touched == 0:
            continue
        if k == 0:
            acc[:] = 0
            continue
        if touched * SPARSE_FRACTION < width:
            # Few documents touched: reach them through the postings; reading zeroes the entry, so a document
            # is offered once with its full score. _offer compares document numbers, so order does not matter.
            for q in range(num_terms):
                term = terms[q]
                docs = doc_numbers[range_starts[term, r]:range_starts[term, r + 1]]
                for i in range(docs.shape[0]):
                    local = np.int64(docs[i]) - base
                    score = acc[local]
                    if score > 0:
                        acc[local] = 0
                        if masked and not allowed[local + base]:
                            continue
                        if could_enter(heap_scores, size, k, score):
                            size = offer(heap_scores, heap_docs, size, k, score, local + base)
            threshold = heap_scores[0] if size == k else np.float32(0)
            if share_thresholds is not None:
                if size == k:
                    share_thresholds[share] = threshold
        else:
            # Ascending document order and every kept hit has a lower number: '>' the k-th best is the test,
            # and '>' the bound the other shares give (`bar`, the k-th best when there are none).
            floor = _others_floor(share_thresholds, share)
            bar = _bar(threshold, floor, share_thresholds)
            for local in range(width):
                score = acc[local]
                if score > bar and (not masked or allowed[local + base]):
                    if size < k:
                        heap_scores[size] = score
                        heap_docs[size] = local + base
                        sift_up(heap_scores, heap_docs, size)
                        size += 1
                        if size == k:
                            threshold = heap_scores[0]
                    else:
                        heap_scores[0] = score
                        heap_docs[0] = local + base
                        sift_down(heap_scores, heap_docs, size, 0)
                        threshold = heap_scores[0]
                    bar = _bar(threshold, floor, share_thresholds)
            if share_thresholds is not None:
                if size == k:
                    share_thresholds[share] = threshold
            acc[:] = 0
    docs, scores = sorted_hits(heap_scores, heap_docs, size)
    return docs, scores, postings
