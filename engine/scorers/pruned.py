"""`pruned-rescore`: approximate. Each term keeps its `n_postings` highest-impact postings (an index part built
by `add-parts`); the `query_cut` heaviest query terms give partial scores; the best `candidates` documents are
rescored exactly from a forward index (engine/kernels/pruned_rescore.py), so every returned score is the exact
score of that document. Knobs trade recall for time; `tune` picks them for a recall target."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.index_format import InvertedIndex, PartWriter
from engine.kernels import pruned_rescore as kernel
from engine.kernels.exact import score_exact
from engine.manifest import PartInfo
from engine.query import SparseQuery
from engine.scorers import masking
from engine.scorers.base import OptionSpec, Scorer, TopK, check_forward_index_source

PART = "pruned_rescore"
PREFIX = f"{PART}."
PART_VERSION = 1
_DTYPES = {"doc_offsets": np.int64, "forward_terms": np.uint16, "forward_impacts": np.uint8,
           "pruned_offsets": np.int64, "pruned_docs": np.uint32, "pruned_impacts": np.uint8}


def write_part(index: InvertedIndex, staged: Path, n_postings: int = kernel.DEFAULT_N_POSTINGS,
               progress: bool = True) -> tuple[str, PartInfo]:
    check_forward_index_source(PART, index, PrunedRescoreScorer.impact_dtypes)
    built = kernel.build_pruned(index.offsets, index.doc_numbers, index.impacts, index.num_documents,
                                n_postings=int(n_postings), progress=progress)
    written = kernel.write_pruned(built, staged, PREFIX, n_postings=int(n_postings))
    return PART, PartInfo(version=PART_VERSION, files=sorted(written["files"].values()),
                          params={"n_postings": int(n_postings), **written["counts"]})


class PrunedRescoreScorer(Scorer):
    name = "pruned-rescore"
    requires = frozenset({PART})
    safe = False
    impact_dtypes = ("uint8",)  # its pruned lists and forward rows are uint8
    recall_floor = 0.9  # recall@k at the default knobs in the shared differential test; `tune` for a target
    build_parameters = frozenset({"n_postings"})
    part_versions = {PART: PART_VERSION}
    options = {
        "query_cut": OptionSpec(kernel.DEFAULT_QUERY_CUT, *kernel.QUERY_CUT_RANGE, integer=True,
                                description="heaviest query terms whose pruned lists are walked"),
        "candidates": OptionSpec(kernel.DEFAULT_CANDIDATES, *kernel.CANDIDATES_RANGE, integer=True,
                                 description="documents rescored exactly from the forward index"),
    }
    description = ("Statically pruned posting lists walked for the heaviest query terms, the best candidates "
                   "rescored exactly from a forward index.")

    def __init__(self, index: InvertedIndex) -> None:
        super().__init__(index)
        lengths = {"doc_offsets": index.num_documents + 1, "forward_terms": index.num_postings,
                   "forward_impacts": index.num_postings, "pruned_offsets": index.vocab_size + 1}
        arrays = {}
        for name in kernel.FILES:
            if name not in lengths:  # the kept postings: as many as the pruned offsets say
                lengths[name] = int(arrays["pruned_offsets"][-1])
            arrays[name] = index.part_array(PART, f"{PREFIX}{name}.npy", _DTYPES[name], lengths[name])
        self.arrays = kernel.PrunedIndex(*(arrays[name] for name in kernel.FILES))

    @classmethod
    def part_writers(cls, params: Mapping[str, Any] | None = None, threads: int = 1) -> list[PartWriter]:
        n_postings = int((params or {}).get("n_postings", kernel.DEFAULT_N_POSTINGS))
        lo, hi = kernel.N_POSTINGS_RANGE
        if not lo <= n_postings <= hi:
            raise ValueError(f"n_postings must be in [{lo}, {hi}], got {n_postings}")
        unknown = set(params or {}) - {"n_postings"}
        if unknown:
            raise ValueError(f"{PART}: unknown build parameters {sorted(unknown)} (known: ['n_postings'])")
        return [lambda index, staged: write_part(index, staged, n_postings)]

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        return [{"query_cut": cut, "candidates": cand} for cut in (5, 10, 20, 30, 45, 64)
                for cand in (50, 100, 200, 500, 1000, 2000, 5000)]

    def new_scratch(self) -> tuple[np.ndarray, np.ndarray]:
        return kernel.new_scratch(self.index.num_documents, self.index.vocab_size)

    def search(self, query: SparseQuery, k: int, scratch: tuple[np.ndarray, np.ndarray],
               options: Mapping[str, Any], allowed: np.ndarray | None = None) -> TopK:
        index = self.index
        allowed = masking.checked(allowed, index.num_documents)
        selected = masking.selected_documents(index.offsets, query, allowed)
        if selected is not None:  # few documents allowed: their exact scores are cheaper than candidates
            return TopK(*masking.score_documents(index, query, k, selected))
        docs, scores, stats = kernel.search_pruned(*self.arrays, query.term_ids, query.weights,
                                                   np.float32(index.scale), int(k), int(options["query_cut"]),
                                                   int(options["candidates"]), *scratch,
                                                   masking.kernel_mask(allowed))
        counters = {"postings_traversed": int(stats[0]), "documents_touched": int(stats[1]),
                    "documents_rescored": int(stats[2]), "forward_entries": int(stats[3])}
        if allowed is not None and len(docs) < k:
            # A mask can leave the pruned lists with fewer than k allowed documents while more exist in the
            # full lists: an exact traversal (the accumulator scratch is all zeros between searches) keeps the
            # promise of k hits whenever k allowed documents score above 0.
            docs, scores, postings = score_exact(index.offsets, index.doc_numbers, index.impacts, query.term_ids,
                                                 query.weights, np.float32(index.scale), int(k), scratch[1],
                                                 allowed)
            counters["postings_traversed"] += int(postings)
            counters["exact_fallback"] = 1
        return TopK(docs, scores, counters)
