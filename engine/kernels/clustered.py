"""Approximate scoring over clustered, statically pruned posting lists (our design, from Seismic's ideas).

Build time, from the inverted index (term by term, in chunks, so memory stays the size of the output):
- static pruning (`kept_postings`): with `max_fraction` above 1, Seismic's global pruning: the
  n_postings x (terms with postings) highest impacts of the whole index are kept, no list beyond
  max_fraction x n_postings (lists of heavy terms keep more, lists of uniformly light terms less); with 1,
  every term keeps its `n_postings` best. Ties: the lower document number;
- clustering: ceil(kept / cluster_size) documents of the list, drawn with a seed, are centroids; every document
  joins the centroid with the largest dot product between the centroid's full vector and the document's
  `signature_terms` highest-impact terms (an inverted mini-index over the centroids makes this cheap; Seismic
  approximates its k-means step the same way). Documents that share nothing with any centroid are chunked in
  impact order; a cluster larger than `block_size` is cut into ceil(size / block_size) blocks: its strongest
  documents seed them, and every other document, in impact order, joins the seed it shares most signature
  mass with among the blocks with room (blocks of similar documents have tighter summaries: at 1M, recall@10
  0.99 at 0.85x the time of blocks cut in impact order, for an 8% longer build; "Fifth round");
- block summaries: the component-wise maximum of the block's documents (uint8 impacts in the index's scale: an
  unpruned summary bounds every document of the block), cut to the largest components that carry
  `summary_energy` of its mass (at most `summary_terms`). A uint16 index (float-equivalent scores) keeps its
  impacts in the forward index; pruning order uses them too, while clustering and summaries use coarse uint8
  copies, ceil(impact / 257), so a summary still bounds its block (UINT16_SUMMARY_UNIT);
- summary layout, term-major per list: the list's distinct summary terms (ascending keys), each with its
  (block, value) entries. A query merges its own terms with a list's keys by galloping and reads only their
  entries, instead of a dot product per block (measured 1.8x faster on the summary phase than block-major).
  The entries are one stream of nibbles: the value in 4 bits (one of the list's VALUE_LEVELS levels, set at
  the quantiles of its values, rounded up), then the gap to the key's previous block as a LEB128 varint
  (~1.6 bytes an entry instead of 2.1 with a value byte, 3 as uint16 + uint8), and a key's end is 16 bits
  from its group of 16 keys (KEY_GROUP): the part shrinks from 3.24x to 2.68x the exact index at 1M at the
  same time and recall ("Sixth round");
- a forward index (engine/kernels/forward_index.py) for scoring documents.

Query time:
1. the `query_cut` heaviest query terms are the only ones whose lists are walked;
2. every block of those lists gets its summary score (the query against the summary);
3. all blocks of all walked lists are visited in ONE order, best summary score first (a max-heap popped only
   as far as the walk goes), and the walk stops at the first block whose summary score is not above
   heap_factor x the current k-th best score: every later block scores lower still. Seismic walks each list
   in stored order and tests each block;
   With `max_documents` above 0, the walk also stops once that many documents were scored: the slowest
   queries are those whose k-th score rises slowly against their summaries, and a cap at the work most queries
   need trims them at little recall ("Sixth round": the p99 from 0.90x to 0.71x Seismic's, recall unchanged);
4. the documents of a visited block are scored from the forward index, each at most once (a visited bitmap,
   cleared after the query), by a dense-query dot product; the k kept documents are rescored with the oracle's
   float32 formula summed in query-term order, so a returned score is bit-for-bit the exact scorer's score of
   that document.

`heap_factor` follows Seismic's meaning: lower visits more blocks (more recall, slower).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from engine.kernels.exact import NO_MASK
from engine.kernels.forward_index import build_forward
from engine.kernels.forward_scoring import (clear_query, new_query_positions, prefetch_rows, register_query,
                                            rescore_in_order)
from engine.kernels.prefetch import prefetch_address
from engine.topk import could_enter, offer, sorted_hits

# A uint16 impact v is summarized as ceil(v / 257), a uint8 one as itself: 65535 = 255 x 257.
UINT16_SUMMARY_UNIT = 257

# Build-time parameters: defaults and valid ranges (inclusive).
DEFAULT_N_POSTINGS = 2000
N_POSTINGS_RANGE = (16, 65535)
MAX_KEPT = 65535  # blocks are numbered in uint16 within a list, so no list keeps more postings
# Blocks of 4 cut from clusters of 10 (Seismic: blocks = clusters of 10): at 1M real-like documents, recall@10
# 0.99 at ~0.8x the time of blocks of 10 for 1.15x the part's size; the clustering costs what clusters of 10
# cost (docs/index.md, fourth round).
DEFAULT_BLOCK_SIZE = 4
BLOCK_SIZE_RANGE = (2, 1024)
DEFAULT_CLUSTER_SIZE = 10
CLUSTER_SIZE_RANGE = (2, 4096)
DEFAULT_SUMMARY_TERMS = 4096  # a cap only: the energy cut decides (docs/index.md)
SUMMARY_TERMS_RANGE = (1, 4096)
DEFAULT_MAX_FRACTION = 1.5  # 1: every list keeps its n_postings best; above: one global impact threshold
MAX_FRACTION_RANGE = (1.0, 64.0)
DEFAULT_SUMMARY_ENERGY = 0.4  # share of a block summary's mass kept (its largest components first)
SUMMARY_ENERGY_RANGE = (0.01, 1.0)
DEFAULT_SIGNATURE_TERMS = 15
SIGNATURE_TERMS_RANGE = (1, 64)
# Query-time knobs: valid ranges (inclusive) for request limits.
DEFAULT_QUERY_CUT = 10
QUERY_CUT_RANGE = (1, 1024)
DEFAULT_HEAP_FACTOR = 0.5  # with blocks of 4; blocks of 10 reached the same recall at 0.7
HEAP_FACTOR_RANGE = (0.0, 4.0)
MAX_DOCUMENTS_RANGE = (0, 100_000_000)  # 0: no cap
# Blocks popped ahead of the one scored, for the staged prefetches of the walk (measured: 4 stages, ~8% faster
# at 1M than rows alone one block ahead).
PREFETCH_DEPTH = 4

NO_TERM = np.uint16(0xFFFF)
# Summary values are stored in 4 bits: each list has VALUE_LEVELS levels, its values' quantiles (the last its
# largest value), and a value is stored as the smallest level at or above it (an unpruned summary still bounds
# its block).
VALUE_LEVELS = 16
# Keys are grouped by 16 for their entry ends: a group's start as int64, each key's end from it in 16 bits
# (2.5 bytes a key instead of 4 bytes counted from the list; 32 bits only in a part where some group's entries
# span more than 64 Ki nibbles, which needs lists of tens of thousands of blocks).
KEY_GROUP = 16
FILES = ("doc_offsets", "forward_terms", "forward_impacts", "list_block_offsets", "block_doc_offsets",
         "block_docs", "list_key_offsets", "summary_keys", "list_entry_offsets", "key_group_starts",
         "key_entry_ends", "entry_stream", "list_value_levels")


class ClusteredIndex(NamedTuple):
    """The flat arrays of the approximate scorer (all mmap-able .npy files)."""
    doc_offsets: np.ndarray         # int64[N+1]   forward index
    forward_terms: np.ndarray       # uint16[P]
    forward_impacts: np.ndarray     # uint8[P] or uint16[P]: the index's impacts
    list_block_offsets: np.ndarray  # int64[V+1]   term t's blocks: [list_block_offsets[t], [t+1])
    block_doc_offsets: np.ndarray   # int64[B+1]   block b's documents: block_docs[block_doc_offsets[b]:[b+1]]
    block_docs: np.ndarray          # uint32[P']
    list_key_offsets: np.ndarray    # int64[V+1]   term t's summary keys: summary_keys[list_key_offsets[t]:[t+1]]
    summary_keys: np.ndarray        # uint16[D]    ascending within a list
    list_entry_offsets: np.ndarray  # int64[V+1]   term t's summary entries: entry_stream bytes [[t], [t+1])
    key_group_starts: np.ndarray    # int64[ceil(D/16)] where key 16g's entries start, in nibbles of entry_stream
    key_entry_ends: np.ndarray      # uint16[D]    where key j's entries end, in nibbles from its group's start
                                    #              (uint32 where a group spans 64 Ki nibbles or more); they
                                    #              start where the previous key's end, or, for a list's first
                                    #              key, at its list's first byte
    entry_stream: np.ndarray        # uint8[S]     nibbles, the low one of a byte first; a key's entries, blocks
                                    #              ascending, each: the value's level (4 bits), then the gap
                                    #              from the key's previous block (the first: its number) as a
                                    #              LEB128 varint, its bytes nibble-aligned. A list starts on a
                                    #              byte. ~1.6 bytes an entry at 1M real-like documents (89% of
                                    #              gaps under 128). Followed by STREAM_PADDING zero bytes
    list_value_levels: np.ndarray   # uint8[16V]   term t's VALUE_LEVELS summary value levels, ascending, at
                                    #              [16t, 16t + 16), in the index's uint8 scale (uint16
                                    #              indexes: in UINT16_SUMMARY_UNITs)

    @property
    def num_documents(self) -> int:
        return len(self.doc_offsets) - 1

    def nbytes(self) -> int:
        return int(sum(np.asarray(a).nbytes for a in self))


def _check_range(name: str, value, bounds) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be in [{bounds[0]}, {bounds[1]}], got {value}")


def check_build_params(n_postings: int, block_size: int, summary_terms: int, signature_terms: int,
                       summary_energy: float, max_fraction: float, cluster_size: int = DEFAULT_CLUSTER_SIZE) -> None:
    """Raise ValueError naming the build parameter and its limits."""
    _check_range("n_postings", n_postings, N_POSTINGS_RANGE)
    _check_range("block_size", block_size, BLOCK_SIZE_RANGE)
    _check_range("cluster_size", cluster_size, CLUSTER_SIZE_RANGE)
    _check_range("summary_terms", summary_terms, SUMMARY_TERMS_RANGE)
    _check_range("signature_terms", signature_terms, SIGNATURE_TERMS_RANGE)
    _check_range("summary_energy", summary_energy, SUMMARY_ENERGY_RANGE)
    _check_range("max_fraction", max_fraction, MAX_FRACTION_RANGE)


def check_knobs(query_cut: int, heap_factor: float) -> None:
    """Raise ValueError naming the knob and its limits."""
    _check_range("query_cut", query_cut, QUERY_CUT_RANGE)
    _check_range("heap_factor", heap_factor, HEAP_FACTOR_RANGE)


def build_clustered(offsets: np.ndarray, doc_numbers: np.ndarray, impacts: np.ndarray, num_documents: int, *,
                    n_postings: int = DEFAULT_N_POSTINGS, block_size: int = DEFAULT_BLOCK_SIZE,
                    summary_terms: int = DEFAULT_SUMMARY_TERMS, signature_terms: int = DEFAULT_SIGNATURE_TERMS,
                    summary_energy: float = DEFAULT_SUMMARY_ENERGY, max_fraction: float = DEFAULT_MAX_FRACTION,
                    seed: int = 0, chunk_postings: int = 1 << 22, progress: bool = False,
                    threads: int = 1, cluster_size: int = DEFAULT_CLUSTER_SIZE) -> ClusteredIndex:
    """Build the approximate scorer's arrays from an inverted index (offsets int64[V+1], doc_numbers uint32
    ascending per term, impacts uint8 or uint16). Terms are processed in chunks of about `chunk_postings` kept
    postings, so the working memory beyond the output is bounded by the chunk (plus, for uint16 impacts, a
    uint8 copy of the forward impacts for the clustering: one byte a posting). `threads` chunks are clustered at once
    (the kernel releases the GIL; the working memory grows by a chunk a thread); the output does not depend
    on it: every term's blocks come from its own seed."""
    check_build_params(n_postings, block_size, summary_terms, signature_terms, summary_energy, max_fraction,
                       cluster_size)
    offsets = np.asarray(offsets, dtype=np.int64)
    vocab = len(offsets) - 1
    doc_offsets, forward_terms, forward_impacts = build_forward(offsets, doc_numbers, impacts, num_documents)
    coarse_forward = coarse_uint8(forward_impacts) if impacts.dtype == np.uint16 else forward_impacts
    levels = int(np.iinfo(impacts.dtype).max) + 1
    sig_terms, sig_impacts = _signatures(doc_offsets, forward_terms, coarse_forward, signature_terms)
    longest_row = int(np.diff(doc_offsets).max()) if num_documents else 0  # a summary has at most its block's rows

    kept = kept_postings(offsets, impacts, n_postings, max_fraction)
    # Chunks of terms with about chunk_postings kept postings each.
    bounds = [0]
    running = np.cumsum(kept)
    while bounds[-1] < vocab:
        done = running[bounds[-1] - 1] if bounds[-1] else 0
        nxt = int(np.searchsorted(running, done + chunk_postings, side="right"))
        bounds.append(min(vocab, max(nxt, bounds[-1] + 1)))
    chunks = list(zip(bounds[:-1], bounds[1:]))

    def cluster_chunk(chunk: tuple[int, int]) -> tuple[np.ndarray, ...]:
        t0, t1 = chunk
        chunk_kept = int(kept[t0:t1].sum())
        max_blocks = int((2 * -(-kept[t0:t1] // block_size) + 1).sum())
        out = _cluster_terms(offsets, doc_numbers, impacts, levels, doc_offsets, forward_terms, coarse_forward,
                             sig_terms, sig_impacts, t0, t1, kept, block_size, cluster_size, summary_terms,
                             float(summary_energy), seed, chunk_kept, max_blocks,
                             min(max_blocks * summary_terms, chunk_kept * longest_row))
        (bpt, bsz, bd, nb, nd, kpt, ky, ksz, eb, ev, nk, ne) = out
        stream, key_nibbles, list_bytes, list_levels = _encode_entries(kpt, ksz[:nk], eb[:ne], ev[:ne])
        # Trimmed copies: the kernel's buffers are sized for the worst case.
        return (bpt, bsz[:nb].copy(), bd[:nd].copy(), kpt, ky[:nk].copy(), key_nibbles, list_bytes, list_levels,
                stream)

    with ThreadPoolExecutor(max(1, min(threads, len(chunks)))) as pool:
        parts = pool.map(cluster_chunk, chunks)  # in chunk order
        if progress:
            from tqdm import tqdm
            parts = tqdm(parts, total=len(chunks), desc="clustering posting lists", unit="chunk")
        columns = list(zip(*parts)) or [[] for _ in range(9)]
    (blocks_per_term, block_sizes, block_docs, keys_per_term, keys, key_nibbles, list_bytes, list_levels,
     streams) = columns

    def offsets_of(counts: list[np.ndarray]) -> np.ndarray:
        flat = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        result = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(flat, out=result[1:])
        return result

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    list_key_offsets = offsets_of(keys_per_term)
    list_entry_offsets = offsets_of(list_bytes)
    key_group_starts, key_entry_ends = key_end_offsets(list_key_offsets, list_entry_offsets,
                                                       cat(key_nibbles, np.int64))
    return ClusteredIndex(doc_offsets, forward_terms, forward_impacts,
                          offsets_of(blocks_per_term), offsets_of(block_sizes), cat(block_docs, np.uint32),
                          list_key_offsets, cat(keys, np.uint16), list_entry_offsets, key_group_starts,
                          key_entry_ends,
                          cat(list(streams) + [np.zeros(STREAM_PADDING, np.uint8)], np.uint8),
                          cat(list_levels, np.uint8))


@njit(nogil=True, cache=True)
def _group_relative_ends(list_key_offsets, list_entry_offsets, key_nibbles, group):
    """(each group's start in nibbles int64, each key's end from its group's start int64)."""
    keys = key_nibbles.shape[0]
    starts = np.zeros((keys + group - 1) // group, dtype=np.int64)
    ends = np.empty(keys, dtype=np.int64)
    for t in range(list_key_offsets.shape[0] - 1):
        position = 2 * list_entry_offsets[t]
        for key in range(list_key_offsets[t], list_key_offsets[t + 1]):
            if key % group == 0:
                starts[key // group] = position
            position += key_nibbles[key]
            ends[key] = position - starts[key // group]
    return starts, ends


def key_end_offsets(list_key_offsets: np.ndarray, list_entry_offsets: np.ndarray,
                    key_nibbles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys' group starts (int64) and their ends from them: uint16, or uint32 when some end is 64 Ki nibbles
    or more from its group's start."""
    starts, ends = _group_relative_ends(list_key_offsets, list_entry_offsets, key_nibbles, KEY_GROUP)
    wide = len(ends) > 0 and int(ends.max()) > np.iinfo(np.uint16).max
    return starts, ends.astype(np.uint32 if wide else np.uint16)


@njit(nogil=True, cache=True, inline="always")
def key_span(list_entry_offsets, key_group_starts, key_entry_ends, t, first_key, key):
    """Key `key`'s entries in nibbles of entry_stream: (start, end); t: its list, first_key: the list's first."""
    end = key_group_starts[key // KEY_GROUP] + np.int64(key_entry_ends[key])
    if key == first_key:
        return 2 * list_entry_offsets[t], end
    return key_group_starts[(key - 1) // KEY_GROUP] + np.int64(key_entry_ends[key - 1]), end


@njit(nogil=True, cache=True)
def value_levels(histogram):
    """A list's VALUE_LEVELS levels from the histogram of its uint8 summary values: level i is the smallest
    value with (i + 1) / VALUE_LEVELS of the values at or below it, so the last is the largest value (levels at
    the quantiles round values up by less than evenly spaced ones where values crowd)."""
    levels = np.zeros(VALUE_LEVELS, dtype=np.uint8)
    total = histogram.sum()
    if total == 0:
        return levels
    running = 0
    level = 0
    for value in range(256):
        running += histogram[value]
        while level < VALUE_LEVELS and running * VALUE_LEVELS >= (level + 1) * total:
            levels[level] = value
            level += 1
    return levels


@njit(nogil=True, cache=True, inline="always")
def _put_nibble(stream, position, nibble):
    if position & 1:
        stream[position >> 1] |= np.uint8(nibble << 4)
    else:
        stream[position >> 1] = np.uint8(nibble)


@njit(nogil=True, cache=True, inline="always")
def _put_byte(stream, position, byte):
    """The inverse of read_byte: its low nibble at nibble `position`, its high one at the next."""
    _put_nibble(stream, position, byte & 15)
    _put_nibble(stream, position + 1, byte >> 4)


@njit(nogil=True, cache=True, inline="always")
def read_byte(stream, position):
    """The byte whose low nibble is at nibble `position` (its high nibble the next one)."""
    at = position >> 1
    return ((np.int64(stream[at]) | np.int64(stream[at + 1]) << 8) >> ((position & 1) << 2)) & 255


@njit(nogil=True, cache=True, inline="always")
def read_gap(stream, position):
    """(the LEB128 varint whose first byte starts at nibble `position`, the nibble position after it)."""
    byte = read_byte(stream, position)
    value = byte & 127
    position += 2
    shift = 7
    while byte >= 128:
        byte = read_byte(stream, position)
        position += 2
        value |= (byte & 127) << shift
        shift += 7
    return value, position


STREAM_PADDING = 2  # zero bytes after the last list: an entry is read as 3 bytes from its first nibble's


@njit(nogil=True, cache=True, inline="always")
def read_entry(stream, position):
    """(the entry's value level, its block gap, the nibble position after it), from nibble `position`."""
    at = position >> 1
    word = (np.int64(stream[at]) | np.int64(stream[at + 1]) << 8) >> ((position & 1) << 2)
    gap = (word >> 4) & 255
    if gap < 128:  # ~89% at 1M: a predictable branch keeps the next entry's position off the loads' path
        return word & 15, gap, position + 3
    gap, after = read_gap(stream, position + 1)
    return word & 15, gap, after


@njit(nogil=True, cache=True)
def _encode_entries(keys_per_list, key_sizes, entry_blocks, entry_values):
    """The entries of consecutive lists (keys_per_list keys each, key_sizes entries a key, blocks ascending
    within a key) as one nibble stream: per entry the value's level, then the block's gap from the key's
    previous block (the first: the block number) as a LEB128 varint (its bytes nibble-aligned); every list
    starts on a byte. Returns (stream, nibbles a key, bytes a list, the lists' value levels uint8[16 x lists])."""
    lists = keys_per_list.shape[0]
    # A value nibble and at most 3 varint bytes (a block number < 65536) an entry, and a padding nibble a list.
    stream = np.zeros((entry_blocks.shape[0] * 7 + lists + 1) // 2 + 1 + STREAM_PADDING, dtype=np.uint8)
    key_nibbles = np.empty(key_sizes.shape[0], dtype=np.int64)
    list_bytes = np.zeros(lists, dtype=np.int64)
    list_levels = np.zeros(VALUE_LEVELS * lists, dtype=np.uint8)
    histogram = np.zeros(256, dtype=np.int64)
    level_of = np.zeros(256, dtype=np.int64)
    position = 0
    key = 0
    e = 0
    for t in range(lists):
        first_entry = e
        entries = 0
        for j in range(keys_per_list[t]):
            entries += key_sizes[key + j]
        histogram[:] = 0
        for i in range(first_entry, first_entry + entries):
            histogram[entry_values[i]] += 1
        levels = value_levels(histogram)
        list_levels[VALUE_LEVELS * t:VALUE_LEVELS * (t + 1)] = levels
        level = VALUE_LEVELS - 1
        for value in range(255, -1, -1):  # each value's smallest level at or above it
            while level > 0 and levels[level - 1] >= value:
                level -= 1
            level_of[value] = level
        list_start = position
        for _ in range(keys_per_list[t]):
            key_start = position
            previous = 0
            for _ in range(key_sizes[key]):
                _put_nibble(stream, position, level_of[entry_values[e]])
                position += 1
                block = np.int64(entry_blocks[e])
                gap = block - previous
                previous = block
                while gap >= 128:  # LEB128, as read_gap reads it
                    _put_byte(stream, position, (gap & 127) | 128)
                    position += 2
                    gap >>= 7
                _put_byte(stream, position, gap)
                position += 2
                e += 1
            key_nibbles[key] = position - key_start
            key += 1
        position += position & 1  # the next list starts on a byte
        list_bytes[t] = (position - list_start) >> 1
    return stream[:position >> 1].copy(), key_nibbles, list_bytes, list_levels  # unpadded: chunks are joined


@njit(nogil=True, cache=True)
def decode_entries(entry_stream, start, end, levels):
    """A key's entries from the nibbles [start, end) of entry_stream, in a list with value `levels`: (block
    numbers within the list int64, the values their levels stand for, uint8)."""
    blocks = np.empty(end - start, dtype=np.int64)
    values = np.empty(end - start, dtype=np.uint8)
    count = 0
    block = np.int64(0)
    position = start
    while position < end:
        level, gap, position = read_entry(entry_stream, position)
        block += gap
        blocks[count] = block
        values[count] = levels[level]
        count += 1
    return blocks[:count], values[:count]


def key_entries(index: "ClusteredIndex", term: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Term t's summaries, decoded: {summary term: (block numbers within the list, values)}."""
    first_key = int(index.list_key_offsets[term])
    levels = np.asarray(index.list_value_levels[VALUE_LEVELS * term:VALUE_LEVELS * (term + 1)])
    result = {}
    for key in range(first_key, int(index.list_key_offsets[term + 1])):
        start, end = key_span(index.list_entry_offsets, index.key_group_starts, index.key_entry_ends, term,
                              first_key, key)
        result[int(index.summary_keys[key])] = decode_entries(index.entry_stream, start, end, levels)
    return result


@njit(nogil=True, cache=True)
def _count_entries(list_key_offsets, list_entry_offsets, key_group_starts, key_entry_ends, entry_stream):
    count = 0
    for t in range(list_key_offsets.shape[0] - 1):
        first_key, last_key = list_key_offsets[t], list_key_offsets[t + 1]
        if last_key == first_key:
            continue
        position = 2 * list_entry_offsets[t]
        _, end = key_span(list_entry_offsets, key_group_starts, key_entry_ends, t, first_key, last_key - 1)
        while position < end:
            _, _, position = read_entry(entry_stream, position)
            count += 1
    return count


def count_entries(index: "ClusteredIndex") -> int:
    """How many (block, value) entries the summaries hold."""
    return int(_count_entries(index.list_key_offsets, index.list_entry_offsets, index.key_group_starts,
                              index.key_entry_ends, index.entry_stream))


def coarse_uint8(impacts: np.ndarray) -> np.ndarray:
    """uint16 impacts as uint8 upper bounds: ceil(v / UINT16_SUMMARY_UNIT)."""
    unit = UINT16_SUMMARY_UNIT
    return ((impacts.astype(np.uint32) + unit - 1) // unit).astype(np.uint8)


def kept_postings(offsets: np.ndarray, impacts: np.ndarray, n_postings: int, max_fraction: float) -> np.ndarray:
    """How many postings each term keeps (its highest impacts). max_fraction 1: min(df, n_postings) for every
    term. Above 1 (Seismic's global pruning): the n_postings x (terms with postings) highest impacts of the
    whole index are kept, no list beyond max_fraction x n_postings: lists of heavy terms keep more, lists whose
    impacts are all low keep less. The threshold is one impact value; at that value, each list keeps its share.
    uint16 impacts are counted in UINT16_SUMMARY_UNITs (the coarse uint8 values), without a copy."""
    df = np.diff(offsets)
    if max_fraction <= 1.0:
        return np.minimum(df, n_postings)
    cap = min(int(max_fraction * n_postings), MAX_KEPT)
    unit = UINT16_SUMMARY_UNIT if impacts.dtype == np.uint16 else 1
    at_least = _impact_counts_at_least(offsets, impacts, unit)  # [V, 257]: postings with coarse impact >= v
    budget = n_postings * int(np.count_nonzero(df))
    for threshold in range(1, 257):  # the lowest threshold whose capped total fits the budget
        above = np.minimum(at_least[:, threshold] if threshold < 256 else 0, cap)
        if above.sum() <= budget:
            break
    # The threshold's own impact value fills the remaining budget, spread over the lists in proportion.
    at = np.minimum(at_least[:, threshold - 1], cap) - above
    room = budget - int(above.sum())
    share = at if at.sum() <= room else np.floor(at * (room / max(int(at.sum()), 1))).astype(np.int64)
    return (above + share).astype(np.int64)


@njit(nogil=True, cache=True)
def _impact_counts_at_least(offsets, impacts, unit):
    vocab = offsets.shape[0] - 1
    counts = np.zeros((vocab, 257), dtype=np.int64)
    for t in range(vocab):
        for i in range(offsets[t], offsets[t + 1]):
            counts[t, (np.int64(impacts[i]) + unit - 1) // unit] += 1
        for v in range(254, -1, -1):
            counts[t, v] += counts[t, v + 1]
    return counts


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
def _top_postings(doc_numbers, impacts, levels, lo, hi, n):
    """Positions of the n highest-impact postings of [lo, hi), impact descending, ties to the lower document
    (counting sort on the impact, `levels` values (256 or 65536): stable, O(df + levels))."""
    top = levels - 1
    counts = np.zeros(levels + 1, dtype=np.int64)
    for i in range(lo, hi):
        counts[top - np.int64(impacts[i]) + 1] += 1
    for v in range(levels):
        counts[v + 1] += counts[v]
    order = np.empty(hi - lo, dtype=np.int64)
    for i in range(lo, hi):
        bucket = top - np.int64(impacts[i])
        order[counts[bucket]] = i
        counts[bucket] += 1
    return order[:n]


@njit(nogil=True, cache=True)
def _split_by_similarity(order, start, size, parts, block_size, docs, sig_terms, sig_impacts, seed_weights):
    """Cut a cluster (order[start:start + size], in impact order) into `parts` blocks of at most block_size
    documents: its first `parts` documents seed the blocks; every other document, in impact order, joins the
    seed whose signature it shares most with (signature dot product) among the blocks with room. Reorders the
    cluster's slice of `order` block by block (impact order within a block); returns the block sizes."""
    m = sig_terms.shape[1]
    dots = np.zeros((size, parts), dtype=np.int64)
    for p in range(parts):
        d = docs[order[start + p]]
        for j in range(m):
            t = sig_terms[d, j]
            if t != 0xFFFF:
                seed_weights[t] = sig_impacts[d, j]
        for i in range(parts, size):
            e = docs[order[start + i]]
            total = 0
            for j in range(m):
                t = sig_terms[e, j]
                if t != 0xFFFF:
                    total += seed_weights[t] * np.int64(sig_impacts[e, j])
            dots[i, p] = total
        for j in range(m):
            t = sig_terms[d, j]
            if t != 0xFFFF:
                seed_weights[t] = 0
    group = np.empty(size, dtype=np.int64)
    group_sizes = np.zeros(parts, dtype=np.int64)
    for p in range(parts):
        group[p] = p
        group_sizes[p] = 1
    for i in range(parts, size):
        best = -1
        for p in range(parts):
            if group_sizes[p] < block_size and (best < 0 or dots[i, p] > dots[i, best]):
                best = p
        group[i] = best
        group_sizes[best] += 1
    members = order[start:start + size].copy()
    cursor = np.zeros(parts + 1, dtype=np.int64)
    for p in range(parts):
        cursor[p + 1] = cursor[p] + group_sizes[p]
    for i in range(size):
        order[start + cursor[group[i]]] = members[i]
        cursor[group[i]] += 1
    return group_sizes


@njit(nogil=True, cache=True)
def _cluster_terms(offsets, doc_numbers, impacts, levels, doc_offsets, fwd_terms, fwd_impacts, sig_terms, sig_impacts,
                   t0, t1, kept, block_size, cluster_size, summary_terms, summary_energy, seed, max_docs, max_blocks,
                   max_entries):
    vocab = offsets.shape[0] - 1
    seed_weights = np.zeros(vocab, dtype=np.int64)
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
    term_count = np.zeros(vocab, dtype=np.int64)  # the centroids' mini-index: entries a term (0 between terms)
    term_start = np.empty(vocab, dtype=np.int64)
    term_cursor = np.empty(vocab, dtype=np.int64)
    centroid_terms = np.empty(vocab, dtype=np.int64)
    dense_max = np.zeros(vocab, dtype=np.uint8)
    touched_terms = np.empty(vocab, dtype=np.int64)
    key_count = np.zeros(vocab, dtype=np.int64)  # a list's entries by summary term (0 between terms)
    key_cursor = np.empty(vocab, dtype=np.int64)
    for term in range(t0, t1):
        lo, hi = offsets[term], offsets[term + 1]
        df = hi - lo
        if df == 0:
            continue
        n = kept[term]
        if n == 0:
            continue
        top = _top_postings(doc_numbers, impacts, levels, lo, hi, n)
        docs = np.empty(n, dtype=np.int64)
        for i in range(n):
            docs[i] = doc_numbers[top[i]]
        clusters = -(-n // max(cluster_size, block_size))  # never more clusters than blocks
        assign = np.zeros(n, dtype=np.int64)
        if clusters > 1:
            np.random.seed(seed * 1000003 + term)
            centroids = np.random.permutation(n)[:clusters]
            # Inverted mini-index over the centroids' full vectors, each term's (centroid, value) entries
            # contiguous (read in sequence: linked chains cost 2.3x the whole build in pointer chasing); a
            # document meets it with its signature only (Seismic's approximation of the same k-means step).
            row_total = 0
            distinct = 0
            for c in range(clusters):
                d = docs[centroids[c]]
                row_total += doc_offsets[d + 1] - doc_offsets[d]
                for j in range(doc_offsets[d], doc_offsets[d + 1]):
                    t = fwd_terms[j]
                    if t == term:
                        continue
                    if term_count[t] == 0:
                        centroid_terms[distinct] = t
                        distinct += 1
                    term_count[t] += 1
            running = 0
            for u in range(distinct):
                t = centroid_terms[u]
                term_start[t] = running
                term_cursor[t] = running
                running += term_count[t]
            entry_centroid = np.empty(row_total, dtype=np.int32)
            entry_value = np.empty(row_total, dtype=np.int64)
            for c in range(clusters):
                d = docs[centroids[c]]
                for j in range(doc_offsets[d], doc_offsets[d + 1]):
                    t = fwd_terms[j]
                    if t == term:
                        continue
                    p = term_cursor[t]
                    entry_centroid[p] = c
                    entry_value[p] = fwd_impacts[j]
                    term_cursor[t] = p + 1
            sums = np.zeros(clusters, dtype=np.int64)
            hit = np.empty(clusters, dtype=np.int64)
            for i in range(n):
                d = docs[i]
                hits = 0
                for j in range(m):
                    t = sig_terms[d, j]
                    if t == 0xFFFF or t == term:
                        continue
                    weight = np.int64(sig_impacts[d, j])
                    first = term_start[t]
                    for e in range(first, first + term_count[t]):
                        c = entry_centroid[e]
                        if sums[c] == 0:
                            hit[hits] = c
                            hits += 1
                        sums[c] += entry_value[e] * weight
                best = clusters  # the leftover bucket: shares no signature term with any centroid
                best_sum = 0
                for h in range(hits):
                    c = hit[h]
                    if sums[c] > best_sum or (sums[c] == best_sum and c < best):
                        best = c
                        best_sum = sums[c]
                    sums[c] = 0
                assign[i] = best
            for u in range(distinct):
                term_count[centroid_terms[u]] = 0
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
        # Blocks: each cluster cut into ceil(size / block_size) parts.
        term_blocks = 0
        block_start_in_list = np.empty(-(-n // block_size) + clusters + 2, dtype=np.int64)
        for c in range(clusters + 1):
            size = starts[c + 1] - starts[c]
            if size == 0:
                continue
            parts = -(-size // block_size)
            if parts > 1 and c < clusters:
                part_sizes = _split_by_similarity(order, starts[c], size, parts, block_size, docs, sig_terms,
                                                  sig_impacts, seed_weights)
            else:  # one block, or the leftover bucket (it shares nothing): near-equal parts in impact order
                part_sizes = np.empty(parts, dtype=np.int64)
                for p in range(parts):
                    part_sizes[p] = (size * (p + 1)) // parts - (size * p) // parts
            a = starts[c]
            for p in range(parts):  # every part holds at least one document (a seed, or >= size // parts)
                block_start_in_list[term_blocks] = a
                block_sizes[nb + term_blocks] = part_sizes[p]
                a += part_sizes[p]
                term_blocks += 1
        block_start_in_list[term_blocks] = n
        for i in range(n):
            block_docs[nd + i] = docs[order[i]]
        # Summaries: component-wise max over the block's documents, cut to the summary_terms largest.
        row_entries = 0
        for i in range(n):
            row_entries += doc_offsets[docs[i] + 1] - doc_offsets[docs[i]]
        triple_terms = np.empty(min(term_blocks * summary_terms, row_entries), dtype=np.int64)
        triple_values = np.empty(triple_terms.shape[0], dtype=np.uint8)
        triple_blocks = np.empty(triple_terms.shape[0], dtype=np.uint16)
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
            # How many of the largest components carry `summary_energy` of the summary's mass (capped at
            # summary_terms): a histogram of the uint8 values, walked from the top.
            hist = np.zeros(256, dtype=np.int64)
            mass = 0
            for h in range(touched):
                hist[dense_max[touched_terms[h]]] += 1
                mass += dense_max[touched_terms[h]]
            keep = 0
            kept_mass = 0
            goal = summary_energy * mass
            for v in range(255, 0, -1):
                if kept_mass >= goal or keep >= summary_terms:
                    break
                take = min(hist[v], max(1, np.int64(np.ceil((goal - kept_mass) / v))), summary_terms - keep)
                keep += take
                kept_mass += take * v
            if keep >= touched:
                for h in range(touched):
                    t = touched_terms[h]
                    triple_terms[triples] = t
                    triple_values[triples] = dense_max[t]
                    triple_blocks[triples] = blk
                    triples += 1
            else:
                # The `keep` largest values: a threshold from the histogram, then ties by term order.
                cut = 255
                total = hist[255]
                while total < keep:
                    cut -= 1
                    total += hist[cut]
                room_at_cut = keep - (total - hist[cut])
                for h in range(touched):
                    t = touched_terms[h]
                    v = dense_max[t]
                    if v > cut or (v == cut and room_at_cut > 0):
                        if v == cut:
                            room_at_cut -= 1
                        triple_terms[triples] = t
                        triple_values[triples] = v
                        triple_blocks[triples] = blk
                        triples += 1
            for h in range(touched):
                dense_max[touched_terms[h]] = 0
        # Entries grouped by summary term (ascending), blocks ascending within a term: the triples come block
        # by block, so a stable counting sort by term is enough (an argsort of packed (term, block) keys took
        # ~1/3 of the build).
        term_keys = 0
        for i in range(triples):
            t = triple_terms[i]
            if key_count[t] == 0:
                touched_terms[term_keys] = t
                term_keys += 1
            key_count[t] += 1
        summary_terms_sorted = np.sort(touched_terms[:term_keys])
        running = ne
        for u in range(term_keys):
            t = summary_terms_sorted[u]
            keys[nk + u] = t
            key_sizes[nk + u] = key_count[t]
            key_cursor[t] = running
            running += key_count[t]
            key_count[t] = 0
        for i in range(triples):
            t = triple_terms[i]
            e = key_cursor[t]
            key_cursor[t] = e + 1
            entry_blocks[e] = triple_blocks[i]
            entry_values[e] = triple_values[i]
        blocks_per_term[term - t0] = term_blocks
        keys_per_term[term - t0] = term_keys
        nb += term_blocks
        nd += n
        nk += term_keys
        ne += triples
    return (blocks_per_term, block_sizes, block_docs, nb, nd, keys_per_term, keys, key_sizes, entry_blocks,
            entry_values, nk, ne)


def new_scratch(num_documents: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread scratch for search_clustered: (query positions, engine/kernels/forward_scoring.py, dense query
    float32[V] = 0, visited bitmap uint8[N/8] = 0)."""
    return (new_query_positions(vocab_size), np.zeros(vocab_size, dtype=np.float32),
            np.zeros((num_documents + 7) // 8, dtype=np.uint8))


def search(index: ClusteredIndex, term_ids: np.ndarray, term_weights: np.ndarray, scale: float, k: int,
           query_cut: int = DEFAULT_QUERY_CUT, heap_factor: float = DEFAULT_HEAP_FACTOR, scratch=None,
           max_documents: int = 0):
    """Convenience wrapper around search_clustered (checks the knobs; allocates scratch when none is given)."""
    check_knobs(query_cut, heap_factor)
    _check_range("max_documents", max_documents, MAX_DOCUMENTS_RANGE)
    if scratch is None:
        scratch = new_scratch(index.num_documents, len(index.list_block_offsets) - 1)
    return search_clustered(*index, np.asarray(term_ids, dtype=np.int32), np.asarray(term_weights, np.float32),
                            np.float32(scale), int(k), int(query_cut), np.float32(heap_factor), *scratch, NO_MASK,
                            int(max_documents))


@njit(nogil=True, cache=True, inline="always")
def _sift_down_max(order, keys, size, i):
    """Restore the max-heap (by keys[order[.]]) below position i."""
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and keys[order[child + 1]] > keys[order[child]]:
            child += 1
        if keys[order[child]] <= keys[order[i]]:
            return
        order[i], order[child] = order[child], order[i]
        i = child


@njit(nogil=True, cache=True, inline="always")
def _pop_max(order, keys, size):
    """(the index with the largest key, the heap's new size)."""
    top = order[0]
    size -= 1
    order[0] = order[size]
    _sift_down_max(order, keys, size, 0)
    return top, size


@njit(nogil=True, cache=True)
def search_clustered(doc_offsets, forward_terms, forward_impacts, list_block_offsets, block_doc_offsets, block_docs,
                     list_key_offsets, summary_keys, list_entry_offsets, key_group_starts, key_entry_ends,
                     entry_stream,
                     list_value_levels, term_ids, term_weights, scale, k, query_cut, heap_factor, query_positions,
                     dense_query, visited, allowed=NO_MASK, max_documents=0):
    """Approximate top-k: (document numbers int64, exact float32 scores, stats int64[4] = blocks summarized,
    blocks visited, documents scored, forward entries read). Term ids must be unique (the Searcher's queries
    are); ids outside the vocabulary are ignored. The scratch arrays (new_scratch) are left as found.

    Documents are ranked by a dense-query dot product over their forward rows (one gather a row entry, no
    branch); the k kept ones are rescored with the oracle's formula at the end, so every returned score is
    bit-for-bit the exact scorer's score of that document. `allowed`: bool[num_documents] of the documents
    that may be returned, or empty for all; excluded documents are skipped before they are scored.
    `max_documents` (0: no cap): the walk also stops once that many documents were scored, which bounds the
    slowest queries (those whose k-th score rises slowly against their summaries) at a small cost in recall."""
    masked = allowed.shape[0] > 0
    num_documents = doc_offsets.shape[0] - 1
    vocab = list_block_offsets.shape[0] - 1
    terms, raw, weights, num_terms = register_query(term_ids, term_weights, scale, vocab, query_positions)
    for i in range(num_terms):
        dense_query[terms[i]] = weights[i]
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
        # Summary scores, term-major: a list's summary keys (its distinct summary terms, ascending) are merged
        # with the query's terms (ascending) by galloping, so only the query's own entries are read.
        by_id = np.sort(terms[:num_terms])
        for h in range(cut):
            t = terms[heaviest[h]]
            first = list_block_offsets[t]
            blocks = list_block_offsets[t + 1] - first
            if blocks == 0:
                continue
            for b in range(blocks):
                cand_blocks[filled + b] = first + b
            lo, hi = list_key_offsets[t], list_key_offsets[t + 1]
            first_key = lo
            levels = list_value_levels[VALUE_LEVELS * t:VALUE_LEVELS * (t + 1)]
            for i in range(num_terms):
                qt = by_id[i]
                step = 1  # gallop to the first key >= qt, then bisect
                while lo + step < hi and summary_keys[lo + step] < qt:
                    step *= 2
                a, b = lo, min(lo + step, hi)
                while a < b:
                    mid = (a + b) >> 1
                    if summary_keys[mid] < qt:
                        a = mid + 1
                    else:
                        b = mid
                lo = a
                if lo >= hi:
                    break
                if summary_keys[lo] != qt:
                    continue
                w = dense_query[qt]
                position, end = key_span(list_entry_offsets, key_group_starts, key_entry_ends, t, first_key, lo)
                candidate = np.int64(filled)
                while position < end:  # decode_entries, without the copies
                    level, gap, position = read_entry(entry_stream, position)
                    candidate += gap
                    cand_scores[candidate] += w * np.float32(levels[level])
            filled += blocks
        stats[0] = filled
        # Blocks are taken best summary first from a max-heap (built in linear time, popped only as far as the
        # walk goes: most blocks are never visited, so a full sort would be wasted).
        order = np.arange(filled)
        for i in range(filled // 2 - 1, -1, -1):
            _sift_down_max(order, cand_scores, filled, i)
        remaining = filled
        scored_count = 0
        capacity = 0
        for h in range(cut):
            t = terms[heaviest[h]]
            capacity += block_doc_offsets[list_block_offsets[t + 1]] - block_doc_offsets[list_block_offsets[t]]
        scored = np.empty(capacity, dtype=np.int64)
        threshold = np.float32(0)
        impact_bytes = forward_impacts.itemsize
        # A uint16 index's summary scores are in UINT16_SUMMARY_UNITs of its impacts: the unit folds into the bar.
        bar = np.float32(heap_factor) / np.float32(UINT16_SUMMARY_UNIT if impact_bytes == 2 else 1)
        terms_address = forward_terms.ctypes.data
        impacts_address = forward_impacts.ctypes.data
        # The walk reads a chain of scattered places a block: its document range, its documents, their row
        # offsets, their rows. Each is prefetched a step earlier than the next (blocks popped PREFETCH_DEPTH
        # ahead), so the misses of several coming blocks overlap instead of following one another.
        queue = np.empty(filled, dtype=np.int64)  # candidates in the order they are popped
        popped = 0
        block_offsets_address = block_doc_offsets.ctypes.data
        block_docs_address = block_docs.ctypes.data
        doc_offsets_address = doc_offsets.ctypes.data
        position = -PREFETCH_DEPTH  # the queue position of the block to score now
        while True:
            ahead = position + PREFETCH_DEPTH
            if ahead < filled and popped == ahead:
                following, remaining = _pop_max(order, cand_scores, remaining)
                queue[popped] = following
                popped += 1
                prefetch_address(block_offsets_address + 8 * cand_blocks[following])
            if 0 <= ahead - 1 < popped:
                prefetch_address(block_docs_address + 4 * block_doc_offsets[cand_blocks[queue[ahead - 1]]])
            if 0 <= ahead - 2 < popped:
                nb = cand_blocks[queue[ahead - 2]]
                for j in range(block_doc_offsets[nb], block_doc_offsets[nb + 1]):
                    prefetch_address(doc_offsets_address + 8 * np.int64(block_docs[j]))
            if 0 <= position + 1 < popped:
                nb = cand_blocks[queue[position + 1]]
                for j in range(block_doc_offsets[nb], block_doc_offsets[nb + 1]):
                    prefetch_rows(np.int64(block_docs[j]), doc_offsets, terms_address, impacts_address, impact_bytes)
            if position < 0:  # still filling the pipeline
                position += 1
                continue
            if position >= popped:
                break
            current = queue[position]
            position += 1
            summary = cand_scores[current]
            if size == k and summary <= bar * threshold:
                break
            if 0 < max_documents <= scored_count:
                break
            stats[1] += 1
            b = cand_blocks[current]
            for j in range(block_doc_offsets[b], block_doc_offsets[b + 1]):
                doc = np.int64(block_docs[j])
                if masked and not allowed[doc]:
                    continue
                byte = doc >> 3
                bit = np.uint8(1 << (doc & 7))
                if visited[byte] & bit:
                    continue
                visited[byte] |= bit
                scored[scored_count] = doc
                scored_count += 1
                lo, hi = doc_offsets[doc], doc_offsets[doc + 1]
                stats[3] += hi - lo
                score = np.float32(0)  # a dense-query dot product: one gather a row entry, no branch
                for e in range(lo, hi):
                    score += dense_query[forward_terms[e]] * np.float32(forward_impacts[e])
                if score > 0 and could_enter(heap_scores, size, k, score):
                    size = offer(heap_scores, heap_docs, size, k, score, doc)
                    if size == k:
                        threshold = heap_scores[0]
        stats[2] = scored_count
        for i in range(scored_count):
            visited[scored[i] >> 3] = 0
    docs, scores = sorted_hits(heap_scores, heap_docs, size)
    rescore_in_order(docs, scores, doc_offsets, forward_terms, forward_impacts, query_positions, weights[:num_terms])
    clear_query(terms, num_terms, query_positions)
    for i in range(num_terms):
        dense_query[terms[i]] = 0
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
                       "summary_keys": int(len(index.summary_keys)),
                       "summary_entries": count_entries(index),
                       "key_end_bits": 8 * int(np.asarray(index.key_entry_ends).itemsize),
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

