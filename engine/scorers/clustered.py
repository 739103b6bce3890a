"""`clustered`: approximate, Seismic's ideas in our layout (engine/kernels/clustered.py). Each term keeps its
highest-impact postings (a global impact threshold, lists capped), clustered into blocks of similar documents
with a summary each; a query walks the blocks of its `query_cut` heaviest terms best summary first and stops
where a block's summary falls below `heap_factor` x the current k-th best score; visited documents are scored
from a forward index, and the returned ones carry their exact scores. Knobs trade recall for time; `tune` picks
them for a recall target."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import IndexFormatError
from engine.index_format import InvertedIndex, PartWriter
from engine.kernels import clustered as kernel
from engine.kernels.exact import score_exact
from engine.manifest import PartInfo
from engine.query import SparseQuery
from engine.scorers import masking
from engine.scorers.base import OptionSpec, Scorer, TopK, check_forward_index_source

PART = "clustered"
PREFIX = f"{PART}."
PART_VERSION = 5  # 5: key ends in 16 bits from 16-key group starts; 4: summary entries as a nibble stream
# (4-bit value levels, varint gaps), key ends in 32 bits from the list; 3: a byte stream
# (varint block gaps, uint8 values); 2: uint16 blocks + uint8 values; 1: global int64 key offsets
_DTYPES = {"doc_offsets": np.int64, "forward_terms": np.uint16,  # forward_impacts: the index's impact dtype
           "list_block_offsets": np.int64, "block_doc_offsets": np.int64, "block_docs": np.uint32,
           "list_key_offsets": np.int64, "summary_keys": np.uint16, "list_entry_offsets": np.int64,
           "key_group_starts": np.int64, "entry_stream": np.uint8, "list_value_levels": np.uint8}
# key_entry_ends: uint16, or uint32 where the part's `key_end_bits` says so (kernel.key_end_offsets)
# Build parameters a user may set (`add-parts --param NAME=VALUE`), with the part's defaults.
BUILD_DEFAULTS = {"n_postings": kernel.DEFAULT_N_POSTINGS, "max_fraction": kernel.DEFAULT_MAX_FRACTION,
                  "block_size": kernel.DEFAULT_BLOCK_SIZE, "cluster_size": kernel.DEFAULT_CLUSTER_SIZE,
                  "summary_energy": kernel.DEFAULT_SUMMARY_ENERGY,
                  "summary_terms": kernel.DEFAULT_SUMMARY_TERMS, "signature_terms": kernel.DEFAULT_SIGNATURE_TERMS}
_INTEGER_PARAMS = {"n_postings", "block_size", "cluster_size", "summary_terms", "signature_terms"}


def write_part(index: InvertedIndex, staged: Path, params: Mapping[str, Any], progress: bool = True,
               threads: int = 1) -> tuple[str, PartInfo]:
    check_forward_index_source(PART, index, ClusteredScorer.impact_dtypes)
    built = kernel.build_clustered(index.offsets, index.doc_numbers, index.impacts, index.num_documents,
                                   progress=progress, threads=threads, **params)
    written = kernel.write_clustered(built, staged, PREFIX, **params)
    return PART, PartInfo(version=PART_VERSION, files=sorted(written["files"].values()),
                          params={**params, **written["counts"]})


def build_params(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part's build parameters: defaults overlaid with `given`, each checked (ValueError naming it)."""
    unknown = set(given or {}) - set(BUILD_DEFAULTS)
    if unknown:
        raise ValueError(f"{PART}: unknown build parameters {sorted(unknown)} (known: {sorted(BUILD_DEFAULTS)})")
    params = dict(BUILD_DEFAULTS)
    for name, value in (given or {}).items():
        number = float(value)
        if name in _INTEGER_PARAMS:
            if number != int(number):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            number = int(number)
        params[name] = number
    kernel.check_build_params(**params)
    return params


class ClusteredScorer(Scorer):
    name = "clustered"
    requires = frozenset({PART})
    safe = False
    # recall@k at the default knobs (query_cut 10) on the shared differential test's collections and on small
    # segmented generations of random documents (tests/engine/test_segments.py); `tune` for a target.
    recall_floor = 0.8
    build_parameters = frozenset(BUILD_DEFAULTS)
    part_versions = {PART: PART_VERSION}
    work_cap = ("max_documents", "documents_scored")
    options = {
        "query_cut": OptionSpec(kernel.DEFAULT_QUERY_CUT, *kernel.QUERY_CUT_RANGE, integer=True,
                                description="heaviest query terms whose block lists are walked"),
        "heap_factor": OptionSpec(kernel.DEFAULT_HEAP_FACTOR, *kernel.HEAP_FACTOR_RANGE,
                                  description="a block is visited while its summary score exceeds heap_factor x "
                                              "the current k-th best score (lower: more blocks, more recall)"),
        "max_documents": OptionSpec(0, *kernel.MAX_DOCUMENTS_RANGE, integer=True,
                                    description="the walk also stops after scoring this many documents (0: no "
                                                "cap): bounds the slowest queries at some recall"),
    }
    description = ("Statically pruned posting lists clustered into blocks with summaries; blocks of the heaviest "
                   "query terms visited best summary first, documents scored from a forward index.")

    def __init__(self, index: InvertedIndex) -> None:
        super().__init__(index)
        count = {"doc_offsets": index.num_documents + 1, "list_block_offsets": index.vocab_size + 1,
                 "list_key_offsets": index.vocab_size + 1, "list_entry_offsets": index.vocab_size + 1,
                 "list_value_levels": kernel.VALUE_LEVELS * index.vocab_size}
        derived = {"forward_terms": ("doc_offsets", 0), "forward_impacts": ("doc_offsets", 0),
                   "block_doc_offsets": ("list_block_offsets", 1), "block_docs": ("block_doc_offsets", 0),
                   "summary_keys": ("list_key_offsets", 0), "key_entry_ends": ("list_key_offsets", 0),
                   "entry_stream": ("list_entry_offsets", kernel.STREAM_PADDING)}
        arrays: dict[str, np.ndarray] = {}
        end_bits = int(index.parts[PART].params.get("key_end_bits", 16)) if PART in index.parts else 16
        if end_bits not in (16, 32):
            raise IndexFormatError(f"{index.path}: the {PART} part records key_end_bits {end_bits}; expected 16 "
                                   f"or 32: rebuild it (python -m index_builder add-parts --scorer {self.name})")
        for name in kernel.FILES:
            if name in derived:  # a length given by the last offset of the array it hangs off
                source, extra = derived[name]
                count[name] = int(arrays[source][-1]) + extra
            if name == "key_group_starts":
                count[name] = -(-int(arrays["list_key_offsets"][-1]) // kernel.KEY_GROUP)
            dtype = (index.impacts.dtype if name == "forward_impacts" else
                     np.dtype(f"uint{end_bits}") if name == "key_entry_ends" else _DTYPES[name])
            arrays[name] = index.part_array(PART, f"{PREFIX}{name}.npy", dtype, count[name])
        self.arrays = kernel.ClusteredIndex(*(arrays[name] for name in kernel.FILES))

    @classmethod
    def part_writers(cls, params: Mapping[str, Any] | None = None, threads: int = 1) -> list[PartWriter]:
        checked = build_params(params)
        return [lambda index, staged: write_part(index, staged, checked, threads=threads)]

    @classmethod
    def tuning_grid(cls, index: InvertedIndex | None = None) -> list[dict[str, Any]]:
        return [{"query_cut": cut, "heap_factor": factor} for cut in (5, 10, 15, 20, 30, 50)
                for factor in (1.0, 0.8, 0.6, 0.4, 0.2)]

    def new_scratch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return kernel.new_scratch(self.index.num_documents, self.index.vocab_size)

    def search(self, query: SparseQuery, k: int, scratch: tuple[np.ndarray, np.ndarray, np.ndarray],
               options: Mapping[str, Any], allowed: np.ndarray | None = None) -> TopK:
        index = self.index
        allowed = masking.checked(allowed, index.num_documents)
        selected = masking.selected_documents(index.offsets, query, allowed)
        if selected is not None:  # few documents allowed: their exact scores are cheaper than a block walk
            return TopK(*masking.score_documents(index, query, k, selected))
        docs, scores, stats = kernel.search_clustered(*self.arrays, query.term_ids, query.weights,
                                                      np.float32(index.scale), int(k), int(options["query_cut"]),
                                                      np.float32(options["heap_factor"]), *scratch,
                                                      masking.kernel_mask(allowed),
                                                      int(options.get("max_documents", 0)))
        counters = {"postings_traversed": int(stats[2]), "blocks_summarized": int(stats[0]),
                    "blocks_visited": int(stats[1]), "documents_scored": int(stats[2]),
                    "forward_entries": int(stats[3])}
        if allowed is not None and len(docs) < k:
            # A mask can leave the kept lists with fewer than k allowed documents while more exist in the full
            # lists: an exact traversal keeps the promise of k hits whenever k allowed documents score above 0.
            accumulator = np.zeros(index.num_documents, dtype=np.float32)
            docs, scores, postings = score_exact(index.offsets, index.doc_numbers, index.impacts, query.term_ids,
                                                 query.weights, np.float32(index.scale), int(k), accumulator,
                                                 allowed)
            counters["postings_traversed"] += int(postings)
            counters["exact_fallback"] = 1
        return TopK(docs, scores, counters)
