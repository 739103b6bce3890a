"""Approximate scoring over clustered, statically pruned posting lists (our design, from Seismic's ideas).

Build time, from the inverted index (term by term, in chunks, so memory stays the size of the output):
- static pruning: each term keeps its `n_postings` highest-impact postings (ties: lower document number);
- clustering: the kept documents of a term are grouped by their strongest other terms. Every document has a
  signature, its `signature_terms` highest-impact terms; ceil(kept / block_size) documents of the list, drawn
  with a seed, are the centroids; each document joins the centroid whose signature has the largest dot
  product with its own (an inverted mini-index over the centroids' signatures makes this cheap); documents
  that share nothing with any centroid are chunked in impact order. Clusters larger than `block_size` are
  cut into near-equal blocks;
- block summaries: for each block, the component-wise maximum of its documents' full vectors (uint8
  impacts in the index's own scale, so an unpruned summary is an exact upper bound of every document in
  the block), cut to its `summary_terms` largest components;
- summary layout: the summaries of one list are stored term-major (a sorted key = summary term, then the
  (block, value) entries of that term). A query therefore touches only the entries of its own terms, rather
  than computing a sparse dot product per block as Seismic does;
- a forward index (engine/kernels/forward_index.py) for exact rescoring.

Query time:
1. the `query_cut` heaviest query terms are the only ones whose lists are walked;
2. every block of those lists gets its summary score (the query against the summary) in one term-at-a-time
   pass per list;
3. all candidate blocks of all walked lists are visited in ONE global order, best summary score first, and the
   walk stops at the first block whose summary score is not above heap_factor x (the current k-th best
   score): every later block scores lower still. Seismic walks each list in stored order and tests each block;
4. the documents of a visited block are scored exactly from the forward index, each at most once (a
   visited bitmap, cleared after the query), with the oracle's float32 formula summed in query-term order,
   so a returned score is bit-for-bit the exact scorer's score of that document.

`heap_factor` follows Seismic's meaning: lower visits more blocks (more recall, slower); a block is visited
while its summary score > heap_factor x threshold.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from engine.kernels.forward_index import build_forward
from engine.kernels.prefetch import prefetch_address
from engine.topk import offer, sorted_hits

# Build-time parameters: defaults and valid ranges (inclusive).
DEFAULT_N_POSTINGS = 4000
N_POSTINGS_RANGE = (16, 65535)           # blocks are numbered in uint16 within a list
DEFAULT_BLOCK_SIZE = 16
BLOCK_SIZE_RANGE = (2, 1024)
DEFAULT_SUMMARY_TERMS = 160  # 48 measured far too few (R@10 0.33 at 100k real-like); see docs/index.md
SUMMARY_TERMS_RANGE = (1, 4096)
DEFAULT_SIGNATURE_TERMS = 8
SIGNATURE_TERMS_RANGE = (1, 64)
# Query-time knobs: valid ranges (inclusive) for request limits.
DEFAULT_QUERY_CUT = 10
QUERY_CUT_RANGE = (1, 1024)
DEFAULT_HEAP_FACTOR = 0.9
HEAP_FACTOR_RANGE = (0.0, 4.0)

NO_TERM = np.uint16(0xFFFF)
FILES = ("doc_offsets", "forward_terms", "forward_impacts", "list_block_offsets", "block_doc_offsets",
         "block_docs", "list_key_offsets", "summary_keys", "key_entry_offsets", "entry_blocks", "entry_values")


class ClusteredIndex(NamedTuple):
    """The flat arrays of the approximate scorer (all mmap-able .npy files)."""
    doc_offsets: np.ndarray         # int64[N+1]   forward index
    forward_terms: np.ndarray       # uint16[P]
    forward_impacts: np.ndarray     # uint8[P]
    list_block_offsets: np.ndarray  # int64[V+1]   term t's blocks: [list_block_offsets[t], [t+1])
    block_doc_offsets: np.ndarray   # int64[B+1]   block b's documents: block_docs[block_doc_offsets[b]:[b+1]]
    block_docs: np.ndarray          # uint32[P']
    list_key_offsets: np.ndarray    # int64[V+1]   term t's summary keys: summary_keys[list_key_offsets[t]:[t+1]]
    summary_keys: np.ndarray        # uint16[D]    ascending within a list
    key_entry_offsets: np.ndarray   # int64[D+1]   key j's entries: [key_entry_offsets[j], [j+1])
    entry_blocks: np.ndarray        # uint16[E]    block number within the list
    entry_values: np.ndarray        # uint8[E]     summary value (an impact)

    @property
    def num_documents(self) -> int:
        return len(self.doc_offsets) - 1

    def nbytes(self) -> int:
        return int(sum(np.asarray(a).nbytes for a in self))


def _check_range(name: str, value, bounds) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be in [{bounds[0]}, {bounds[1]}], got {value}")


def check_knobs(query_cut: int, heap_factor: float) -> None:
    """Raise ValueError naming the knob and its limits."""
    _check_range("query_cut", query_cut, QUERY_CUT_RANGE)
    _check_range("heap_factor", heap_factor, HEAP_FACTOR_RANGE)


def build_clustered(offsets: np.ndarray, doc_numbers: np.ndarray, impacts: np.ndarray, num_documents: int, *,
                    n_postings: int = DEFAULT_N_POSTINGS, block_size: int = DEFAULT_BLOCK_SIZE,
                    summary_terms: int = DEFAULT_SUMMARY_TERMS, signature_terms: int = DEFAULT_SIGNATURE_TERMS,
                    seed: int = 0, chunk_postings: int = 1 << 22, progress: bool = False) -> ClusteredIndex:
    """Build the approximate scorer's arrays from an inverted index (offsets int64[V+1], doc_numbers uint32
    ascending per term, impacts uint8). Terms are processed in chunks of about `chunk_postings` kept postings,
    so the working memory beyond the output is bounded by the chunk."""
    _check_range("n_postings", n_postings, N_POSTINGS_RANGE)
    _check_range("block_size", block_size, BLOCK_SIZE_RANGE)
    _check_range("summary_terms", summary_terms, SUMMARY_TERMS_RANGE)
    _check_range("signature_terms", signature_terms, SIGNATURE_TERMS_RANGE)
    offsets = np.asarray(offsets, dtype=np.int64)
    vocab = len(offsets) - 1
    doc_offsets, forward_terms, forward_impacts = build_forward(offsets, doc_numbers, impacts, num_documents)
    sig_terms, sig_impacts = _signatures(doc_offsets, forward_terms, forward_impacts, signature_terms)

    kept = np.minimum(np.diff(offsets), n_postings)
    # Chunks of terms with about chunk_postings kept postings each.
    bounds = [0]
    running = np.cumsum(kept)
    while bounds[-1] < vocab:
        done = running[bounds[-1] - 1] if bounds[-1] else 0
        nxt = int(np.searchsorted(running, done + chunk_postings, side="right"))
        bounds.append(min(vocab, max(nxt, bounds[-1] + 1)))
    chunks = list(zip(bounds[:-1], bounds[1:]))
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc="clustering posting lists", unit="chunk")

    blocks_per_term, block_sizes, block_docs = [], [], []
    keys_per_term, keys, key_sizes, entry_blocks, entry_values = [], [], [], [], []
    for t0, t1 in chunks:
        chunk_kept = int(kept[t0:t1].sum())
        max_blocks = int((2 * -(-kept[t0:t1] // block_size) + 1).sum())
        out = _cluster_terms(offsets, doc_numbers, impacts, doc_offsets, forward_terms, forward_impacts,
                             sig_terms, sig_impacts, t0, t1, n_postings, block_size, summary_terms, seed,
                             chunk_kept, max_blocks, max_blocks * summary_terms)
        (bpt, bsz, bd, nb, nd, kpt, ky, ksz, eb, ev, nk, ne) = out
        blocks_per_term.append(bpt)
        block_sizes.append(bsz[:nb].copy())
        block_docs.append(bd[:nd].copy())
        keys_per_term.append(kpt)
        keys.append(ky[:nk].copy())
        key_sizes.append(ksz[:nk].copy())
        entry_blocks.append(eb[:ne].copy())
        entry_values.append(ev[:ne].copy())
        del out, bsz, bd, ky, ksz, eb, ev

    def offsets_of(counts: list[np.ndarray]) -> np.ndarray:
        flat = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        result = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(flat, out=result[1:])
        return result

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    return ClusteredIndex(doc_offsets, forward_terms, forward_impacts,
                          offsets_of(blocks_per_term), offsets_of(block_sizes), cat(block_docs, np.uint32),
                          offsets_of(keys_per_term), cat(keys, np.uint16), offsets_of(key_sizes),
                          cat(entry_blocks, np.uint16), cat(entry_values, np.uint8))


@njit(nogil=True, cache=True)
def _signatures(doc_offsets, terms, impacts, m):
    """Each document's m highest-impact terms (ties: lower term), padded with NO_TERM."""
    n = doc_offsets.shape[0] - 1
    sig_terms = np.full((n, m), 0xFFFF, dtype=np.uint16)
    sig_impacts = np.zeros((n, m), dtype=np.uint8)
    for d in range(n):
        count = 0
        for j in range(doc_offsets[d], doc_offsets[d + 1]):
            value = impacts[j]
            if count == m and value <= sig_impacts[d, m - 1]:
                continue
            # Insertion into the sorted (descending) signature; terms come ascending, so '>' keeps ties lower.
            i = count if count < m else m - 1
            while i > 0 and sig_impacts[d, i - 1] < value:
                sig_impacts[d, i] = sig_impacts[d, i - 1]
                sig_terms[d, i] = sig_terms[d, i - 1]
                i -= 1
            sig_impacts[d, i] = value
            sig_terms[d, i] = terms[j]
            if count < m:
                count += 1
    return sig_terms, sig_impacts


@njit(nogil=True, cache=True)
def _top_postings(doc_numbers, impacts, lo, hi, n):
    """Positions of the n highest-impact postings of [lo, hi), impact descending, ties to the lower document
    (counting sort on the uint8 impact: stable, O(df))."""
    counts = np.zeros(257, dtype=np.int64)
    for i in range(lo, hi):
        counts[255 - impacts[i] + 1] += 1
    for v in range(256):
        counts[v + 1] += counts[v]
    order = np.empty(hi - lo, dtype=np.int64)
    for i in range(lo, hi):
        bucket = 255 - impacts[i]
        order[counts[bucket]] = i
        counts[bucket] += 1
    return order[:n]


@njit(nogil=True, cache=True)
def _cluster_terms(offsets, doc_numbers, impacts, doc_offsets, fwd_terms, fwd_impacts, sig_terms, sig_impacts,
                   t0, t1, n_postings, block_size, summary_terms, seed, max_docs, max_blocks, max_entries):
    vocab = offsets.shape[0] - 1
    m = sig_terms.shape[1]
    blocks_per_term = np.zeros(t1 - t0, dtype=np.int64)
    keys_per_term = np.zeros(t1 - t0, dtype=np.int64)
    block_sizes = np.empty(max_blocks, dtype=np.int64)
    block_docs = np.empty(max_docs, dtype=np.uint32)
    keys = np.empty(max_entries, dtype=np.uint16)
    key_sizes = np.empty(max_entries, dtype=np.int64)
    entry_blocks = np.empty(max_entries, dtype=np.uint16)
    entry_values = np.empty(max_entries, dtype=np.uint8)
    nb = 0
    nd = 0
    nk = 0
    ne = 0
    # Scratch reused across terms.
    chain_head = np.full(vocab, -1, dtype=np.int64)
    dense_max = np.zeros(vocab, dtype=np.uint8)
    touched_terms = np.empty(vocab, dtype=np.int64)
    for term in range(t0, t1):
        lo, hi = offsets[term], offsets[term + 1]
        df = hi - lo
        if df == 0:
            continue
        n = min(df, n_postings)
        top = _top_postings(doc_numbers, impacts, lo, hi, n)
        docs = np.empty(n, dtype=np.int64)
        for i in range(n):
            docs[i] = doc_numbers[top[i]]
        clusters = -(-n // block_size)
        assign = np.zeros(n, dtype=np.int64)
        if clusters > 1:
            np.random.seed(seed * 1000003 + term)
            centroids = np.random.permutation(n)[:clusters]
            # Inverted mini-index over the centroids' signatures (chains through chain_head).
            chain_next = np.empty(clusters * m, dtype=np.int64)
            chain_centroid = np.empty(clusters * m, dtype=np.int64)
            chain_value = np.empty(clusters * m, dtype=np.int64)
            entries = 0
            for c in range(clusters):
                d = docs[centroids[c]]
                for j in range(m):
                    t = sig_terms[d, j]
                    if t == 0xFFFF or t == term:
                        continue
                    chain_centroid[entries] = c
                    chain_value[entries] = sig_impacts[d, j]
                    chain_next[entries] = chain_head[t]
                    chain_head[t] = entries
                    entries += 1
            sums = np.zeros(clusters, dtype=np.int64)
            hit = np.empty(clusters, dtype=np.int64)
            for i in range(n):
                d = docs[i]
                hits = 0
                for j in range(m):
                    t = sig_terms[d, j]
                    if t == 0xFFFF or t == term:
                        continue
                    e = chain_head[t]
                    while e >= 0:
                        c = chain_centroid[e]
                        if sums[c] == 0:
                            hit[hits] = c
                            hits += 1
                        sums[c] += chain_value[e] * np.int64(sig_impacts[d, j])
                        e = chain_next[e]
                best = clusters  # the leftover bucket: shares no signature term with any centroid
                best_sum = 0
                for h in range(hits):
                    c = hit[h]
                    if sums[c] > best_sum or (sums[c] == best_sum and c < best):
                        best = c
                        best_sum = sums[c]
                    sums[c] = 0
                assign[i] = best
            for c in range(clusters):
                d = docs[centroids[c]]
                for j in range(m):
                    t = sig_terms[d, j]
                    if t != 0xFFFF:
                        chain_head[t] = -1
        # Stable counting sort by cluster: within a cluster, impact order.
        counts = np.zeros(clusters + 2, dtype=np.int64)
        for i in range(n):
            counts[assign[i] + 1] += 1
        for c in range(clusters + 1):
            counts[c + 1] += counts[c]
        starts = counts.copy()
        order = np.empty(n, dtype=np.int64)
        for i in range(n):
            order[counts[assign[i]]] = i
            counts[assign[i]] += 1
        # Blocks: each cluster cut into ceil(size / block_size) near-equal parts.
        term_blocks = 0
        block_start_in_list = np.empty(2 * clusters + 2, dtype=np.int64)
        for c in range(clusters + 1):
            size = starts[c + 1] - starts[c]
            if size == 0:
                continue
            parts = -(-size // block_size)
            for p in range(parts):
                a = starts[c] + (size * p) // parts
                b = starts[c] + (size * (p + 1)) // parts
                block_start_in_list[term_blocks] = a
                block_sizes[nb + term_blocks] = b - a
                term_blocks += 1
        block_start_in_list[term_blocks] = n
        for i in range(n):
            block_docs[nd + i] = docs[order[i]]
        # Summaries: component-wise max over the block's documents, cut to the summary_terms largest.
        triple_keys = np.empty(term_blocks * summary_terms, dtype=np.int64)
        triple_values = np.empty(term_blocks * summary_terms, dtype=np.uint8)
        triples = 0
        for blk in range(term_blocks):
            touched = 0
            for i in range(block_start_in_list[blk], block_start_in_list[blk + 1]):
                d = docs[order[i]]
                for j in range(doc_offsets[d], doc_offsets[d + 1]):
                    t = fwd_terms[j]
                    v = fwd_impacts[j]
                    if dense_max[t] == 0:
                        touched_terms[touched] = t
                        touched += 1
                    if v > dense_max[t]:
                        dense_max[t] = v
            if touched <= summary_terms:
                for h in range(touched):
                    t = touched_terms[h]
                    triple_keys[triples] = t * 65536 + blk
                    triple_values[triples] = dense_max[t]
                    triples += 1
            else:
                # The summary_terms largest values: a threshold from a histogram, then ties by term order.
                hist = np.zeros(256, dtype=np.int64)
                for h in range(touched):
                    hist[dense_max[touched_terms[h]]] += 1
                cut = 255
                total = hist[255]
                while total < summary_terms:
                    cut -= 1
                    total += hist[cut]
                room_at_cut = summary_terms - (total - hist[cut])
                for h in range(touched):
                    t = touched_terms[h]
                    v = dense_max[t]
                    if v > cut or (v == cut and room_at_cut > 0):
                        if v == cut:
                            room_at_cut -= 1
                        triple_keys[triples] = t * 65536 + blk
                        triple_values[triples] = v
                        triples += 1
            for h in range(touched):
                dense_max[touched_terms[h]] = 0
        ordering = np.argsort(triple_keys[:triples])
        term_keys = 0
        previous = -1
        for i in range(triples):
            key = triple_keys[ordering[i]]
            t = key // 65536
            if t != previous:
                keys[nk + term_keys] = t
                key_sizes[nk + term_keys] = 0
                term_keys += 1
                previous = t
            key_sizes[nk + term_keys - 1] += 1
            entry_blocks[ne + i] = key % 65536
            entry_values[ne + i] = triple_values[ordering[i]]
        blocks_per_term[term - t0] = term_blocks
        keys_per_term[term - t0] = term_keys
        nb += term_blocks
        nd += n
        nk += term_keys
        ne += triples
    return (blocks_per_term, block_sizes, block_docs, nb, nd, keys_per_term, keys, key_sizes, entry_blocks,
            entry_values, nk, ne)


def new_scratch(num_documents: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-thread scratch for search_clustered: (query positions int32[V] = -1, visited bitmap uint8[N/8])."""
    return np.full(vocab_size, -1, dtype=np.int32), np.zeros((num_documents + 7) // 8, dtype=np.uint8)


def search(index: ClusteredIndex, term_ids: np.ndarray, term_weights: np.ndarray, scale: float, k: int,
           query_cut: int = DEFAULT_QUERY_CUT, heap_factor: float = DEFAULT_HEAP_FACTOR, scratch=None):
    """Convenience wrapper around search_clustered (checks the knobs; allocates scratch when none is given)."""
    check_knobs(query_cut, heap_factor)
    if scratch is None:
        scratch = new_scratch(index.num_documents, len(index.list_block_offsets) - 1)
    return search_clustered(*index, np.asarray(term_ids, dtype=np.int32), np.asarray(term_weights, np.float32),
                            np.float32(scale), int(k), int(query_cut), np.float32(heap_factor), *scratch)


@njit(nogil=True, cache=True, inline="always")
def prefetch_rows(doc, doc_offsets, terms_address, impacts_address):
    """Start loading a document's forward row (uint16 terms, uint8 impacts) into the cache."""
    lo, hi = doc_offsets[doc], doc_offsets[doc + 1]
    for offset in range(lo * 2, hi * 2, 64):
        prefetch_address(terms_address + offset)
    for offset in range(lo, hi, 64):
        prefetch_address(impacts_address + offset)


@njit(nogil=True, cache=True)
def _exact_score(doc, doc_offsets, fwd_terms, fwd_impacts, query_positions, weights, match_pos, match_val):
    """The oracle's float32 score of one document: products in float32, summed in query-term order."""
    matches = 0
    for j in range(doc_offsets[doc], doc_offsets[doc + 1]):
        p = query_positions[fwd_terms[j]]
        if p >= 0:
            value = weights[p] * np.float32(fwd_impacts[j])
            i = matches
            while i > 0 and match_pos[i - 1] > p:
                match_pos[i] = match_pos[i - 1]
                match_val[i] = match_val[i - 1]
                i -= 1
            match_pos[i] = p
            match_val[i] = value
            matches += 1
    score = np.float32(0)
    for i in range(matches):
        score += match_val[i]
    return score


@njit(nogil=True, cache=True)
def search_clustered(doc_offsets, forward_terms, forward_impacts, list_block_offsets, block_doc_offsets, block_docs,
                     list_key_offsets, summary_keys, key_entry_offsets, entry_blocks, entry_values,
                     term_ids, term_weights, scale, k, query_cut, heap_factor, query_positions, visited):
    """Approximate top-k: (document numbers int64, exact float32 scores, stats int64[4] = blocks summarized,
    blocks visited, documents scored, forward entries read). Term ids must be unique (the Searcher's queries
    are); ids outside the vocabulary are ignored. The scratch arrays (new_scratch) are left as found."""
    num_documents = doc_offsets.shape[0] - 1
    vocab = list_block_offsets.shape[0] - 1
    scale32 = np.float32(scale)
    nq = term_ids.shape[0]
    terms = np.empty(nq, dtype=np.int64)
    weights = np.empty(nq, dtype=np.float32)
    raw = np.empty(nq, dtype=np.float32)
    num_terms = 0
    for q in range(nq):
        term = term_ids[q]
        if term < 0 or term >= vocab:
            continue
        if query_positions[term] >= 0:
            for i in range(num_terms):
                query_positions[terms[i]] = -1
            raise ValueError("duplicate term id in the query")
        query_positions[term] = num_terms
        terms[num_terms] = term
        raw[num_terms] = term_weights[q]
        weights[num_terms] = np.float32(term_weights[q]) * scale32
        num_terms += 1
    stats = np.zeros(4, dtype=np.int64)
    k = max(0, min(k, num_documents))
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    if k > 0 and num_terms > 0:
        # The heaviest query terms (ties: query order).
        cut = min(query_cut, num_terms)
        heaviest = np.argsort(-raw[:num_terms], kind="mergesort")[:cut]
        total_blocks = 0
        for h in range(cut):
            t = terms[heaviest[h]]
            total_blocks += list_block_offsets[t + 1] - list_block_offsets[t]
        cand_scores = np.zeros(total_blocks, dtype=np.float32)
        cand_blocks = np.empty(total_blocks, dtype=np.int64)
        filled = 0
        # The query's terms sorted by id: each list's summary keys are searched in one merge-like sweep.
        by_id = np.argsort(terms[:num_terms])
        for h in range(cut):
            t = terms[heaviest[h]]
            first = list_block_offsets[t]
            blocks = list_block_offsets[t + 1] - first
            if blocks == 0:
                continue
            for b in range(blocks):
                cand_blocks[filled + b] = first + b
            klo, khi = list_key_offsets[t], list_key_offsets[t + 1]
            keys = summary_keys[klo:khi]
            position = 0
            for i in range(num_terms):
                q = by_id[i]
                qt = terms[q]
                # Galloping would do; a binary search from the last position is enough (few keys per query).
                position += np.searchsorted(keys[position:], qt)
                if position >= keys.shape[0]:
                    break
                if keys[position] != qt:
                    continue
                w = weights[q]
                for e in range(key_entry_offsets[klo + position], key_entry_offsets[klo + position + 1]):
                    cand_scores[filled + entry_blocks[e]] += w * np.float32(entry_values[e])
            filled += blocks
        stats[0] = filled
        order = np.argsort(-cand_scores[:filled])
        scored_count = 0
        capacity = 0
        for i in range(filled):
            b = cand_blocks[i]
            capacity += block_doc_offsets[b + 1] - block_doc_offsets[b]
        scored = np.empty(capacity, dtype=np.int64)
        match_pos = np.empty(num_terms, dtype=np.int64)
        match_val = np.empty(num_terms, dtype=np.float32)
        threshold = np.float32(0)
        bar = np.float32(heap_factor)
        terms_address = forward_terms.ctypes.data
        impacts_address = forward_impacts.ctypes.data
        if filled > 0:
            b = cand_blocks[order[0]]
            for j in range(block_doc_offsets[b], block_doc_offsets[b + 1]):
                prefetch_rows(np.int64(block_docs[j]), doc_offsets, terms_address, impacts_address)
        for i in range(filled):
            summary = cand_scores[order[i]]
            if size == k and summary <= bar * threshold:
                break
            stats[1] += 1
            # The rows of the next block's documents load while this block is scored (the forward rows are
            # scattered: one cache miss per row otherwise, one after the other).
            if i + 1 < filled:
                nb = cand_blocks[order[i + 1]]
                for j in range(block_doc_offsets[nb], block_doc_offsets[nb + 1]):
                    prefetch_rows(np.int64(block_docs[j]), doc_offsets, terms_address, impacts_address)
            b = cand_blocks[order[i]]
            for j in range(block_doc_offsets[b], block_doc_offsets[b + 1]):
                doc = np.int64(block_docs[j])
                byte = doc >> 3
                bit = np.uint8(1 << (doc & 7))
                if visited[byte] & bit:
                    continue
                visited[byte] |= bit
                scored[scored_count] = doc
                scored_count += 1
                stats[3] += doc_offsets[doc + 1] - doc_offsets[doc]
                score = _exact_score(doc, doc_offsets, forward_terms, forward_impacts, query_positions, weights,
                                     match_pos, match_val)
                if score > 0:
                    size = offer(heap_scores, heap_docs, size, k, score, doc)
                    if size == k:
                        threshold = heap_scores[0]
        stats[2] = scored_count
        for i in range(scored_count):
            visited[scored[i] >> 3] = 0
    for i in range(num_terms):
        query_positions[terms[i]] = -1
    docs, scores = sorted_hits(heap_scores, heap_docs, size)
    return docs, scores, stats


def write_clustered(index: ClusteredIndex, directory: str | os.PathLike, prefix: str, **parameters) -> dict:
    """Save every array as <directory>/<prefix><name>.npy; returns a JSON-able dict (parameters, counts, files)
    for the index manifest."""
    directory = Path(directory)
    files = {}
    for name, array in zip(FILES, index):
        path = directory / f"{prefix}{name}.npy"
        np.save(path, np.ascontiguousarray(array))
        files[name] = path.name
    return {"parameters": parameters, "files": files,
            "counts": {"documents": index.num_documents, "forward_postings": int(len(index.forward_terms)),
                       "kept_postings": int(len(index.block_docs)), "blocks": int(len(index.block_doc_offsets) - 1),
                       "summary_keys": int(len(index.summary_keys)), "summary_entries": int(len(index.entry_values)),
                       "bytes": index.nbytes()}}


def load_clustered(directory: str | os.PathLike, prefix: str, mmap: bool = True) -> ClusteredIndex:
    """Open the arrays written by write_clustered (memory-mapped by default)."""
    directory = Path(directory)
    arrays = []
    for name in FILES:
        path = directory / f"{prefix}{name}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path}: part of the clustered index is missing")
        arrays.append(np.load(path, mmap_mode="r" if mmap else None))
    return ClusteredIndex(*arrays)

