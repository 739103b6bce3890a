"""`pruned-rescore`: approximate. Each term keeps its `n_postings` highest-impact postings (an index part built
by `add-parts`, in impact tiers, in document ranges with 16-bit document numbers); the heaviest query terms (at
most `query_cut`, no more than `query_mass` of the query's weight) are walked range by range with the
cache-blocked exact kernel, each down to the tiers whose best contribution reaches `tier_cut` of the query's
largest, into the best `candidates` partial scores, which are rescored from a forward index
(engine/kernels/pruned_rescore.py), so every returned score is the exact score of that document. Knobs trade
recall for time; `tune` picks them for a recall target."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.index_format import InvertedIndex, PartWriter
from engine.kernels import pruned_rescore as kernel
from engine.kernels.blocked_exact import num_ranges
from engine.kernels.exact import score_exact
from engine.manifest import PartInfo
from engine.query import SparseQuery
from engine.scorers import masking
from engine.scorers.base import OptionSpec, Scorer, TopK, check_forward_index_source

PART = "pruned_rescore"
PREFIX = f"{PART}."
PART_VERSION = 3  # 1: uint32 documents, uint8 impacts, no ranges; 2: one tier
BUILD_PARAMETERS = ("n_postings", "range_size", "tiers")
_DTYPES = {"doc_offsets": np.int64, "forward_terms": np.uint16, "range_starts": np.int64, "pruned_docs": np.uint16}


def parse_tiers(value: Any) -> tuple[int, ...]:
    """Tier starts from a build parameter: a list of integers, or their text "10000,50000" ("" or "none": one
    tier). Raises ValueError naming the parameter."""
    if isinstance(value, str):
        text = value.strip().lower()
        items = [] if text in ("", "none") else text.split(",")
    elif isinstance(value, (int, float)):
        items = [value]  # one tier start (add-parts --param tiers=10000)
    else:
        items = list(value)
    try:
        return tuple(int(item) for item in items)
    except (TypeError, ValueError):
        raise ValueError(f"tiers must be comma-separated posting counts, e.g. 10000,50000; got {value!r}") from None


def write_part(index: InvertedIndex, staged: Path, n_postings: int = kernel.DEFAULT_N_POSTINGS,
               range_size: int = kernel.DEFAULT_RANGE_SIZE, tiers=kernel.DEFAULT_TIERS,
               progress: bool = True) -> tuple[str, PartInfo]:
    check_forward_index_source(PART, index, PrunedRescoreScorer.impact_dtypes)
    built = kernel.build_pruned(index.offsets, index.doc_numbers, index.impacts, index.num_documents,
                                n_postings=int(n_postings), range_size=int(range_size), tiers=tiers,
                                progress=progress)
    written = kernel.write_pruned(built, staged, PREFIX, n_postings=int(n_postings), tiers=list(tiers))
    return PART, PartInfo(version=PART_VERSION, files=sorted(written["files"].values()),
                          params={**written["parameters"], **written["counts"]})


class PrunedRescoreScorer(Scorer):
    name = "pruned-rescore"
    requires = frozenset({PART})
    safe = False
    impact_dtypes = ("uint8", "uint16")  # its pruned lists and forward rows keep the index's impacts
    recall_floor = 0.9  # recall@k at the default knobs in the shared differential test; `tune` for a target
    build_parameters = frozenset(BUILD_PARAMETERS)
    list_build_parameters = frozenset({"tiers"})
    work_cap = ("max_postings", "postings_traversed")
    part_versions = {PART: PART_VERSION}
    options = {
        "query_cut": OptionSpec(kernel.DEFAULT_QUERY_CUT, *kernel.QUERY_CUT_RANGE, integer=True,
                                description="heaviest query terms whose pruned lists are walked"),
        "query_mass": OptionSpec(kernel.DEFAULT_QUERY_MASS, *kernel.QUERY_MASS_RANGE,
                                 description="fraction of the query's weight whose heaviest terms are walked"),
        "candidates": OptionSpec(kernel.DEFAULT_CANDIDATES, *kernel.CANDIDATES_RANGE, integer=True,
                                 description="documents rescored exactly from the forward index"),
        "max_postings": OptionSpec(0, *kernel.MAX_POSTINGS_RANGE, integer=True,
                                   description="work cap: pruned postings a query may walk (0: no cap)"),
        "range_quota": OptionSpec(kernel.DEFAULT_RANGE_QUOTA, *kernel.RANGE_QUOTA_RANGE,
                                  description="candidates a document range may hold, in multiples of its even "
                                              "share (0: no quota; for collections sorted by topic)"),
        "tier_cut": OptionSpec(kernel.DEFAULT_TIER_CUT, *kernel.TIER_CUT_RANGE,
                               description="a term's lower impact tier is walked when its best contribution reaches "
                                           "this fraction of the query's largest (0: every tier)"),
    }
    description = ("Statically pruned posting lists of the heaviest query terms walked range by range (the "
                   "accumulator in L2), the best candidates rescored exactly from a forward index.")

    def __init__(self, index: InvertedIndex) -> None:
        super().__init__(index)
        params = index.parts[PART].params
        range_size = int(params.get("range_size", kernel.DEFAULT_RANGE_SIZE))
        tiers = int(params.get("tier_count", 1))
        columns = num_ranges(index.num_documents, range_size) + 1
        kept = int(params.get("kept_postings", -1))
        lengths = {"doc_offsets": index.num_documents + 1, "forward_terms": index.num_postings,
                   "forward_impacts": index.num_postings, "range_starts": index.vocab_size * tiers * columns,
                   "pruned_docs": kept, "pruned_impacts": kept, "tier_max_impacts": index.vocab_size * tiers}
        arrays = [index.part_array(PART, f"{PREFIX}{name}.npy", _DTYPES.get(name, index.impacts.dtype),
                                   lengths[name]) for name in kernel.FILES]
        self.arrays = kernel.bound(*arrays, range_size, index.vocab_size, tiers)
        self.range_size = range_size
        self.tiers = tiers

    @classmethod
    def part_writers(cls, params: Mapping[str, Any] | None = None, threads: int = 1) -> list[PartWriter]:
        unknown = set(params or {}) - set(BUILD_PARAMETERS)
        if unknown:
            raise ValueError(f"{PART}: unknown build parameters {sorted(unknown)} (known: {list(BUILD_PARAMETERS)})")
        n_postings = int((params or {}).get("n_postings", kernel.DEFAULT_N_POSTINGS))
        range_size = int((params or {}).get("range_size", kernel.DEFAULT_RANGE_SIZE))
        tiers = parse_tiers((params or {}).get("tiers", kernel.DEFAULT_TIERS))
        for name, value, (lo, hi) in (("n_postings", n_postings, kernel.N_POSTINGS_RANGE),
                                      ("range_size", range_size, kernel.RANGE_SIZE_RANGE)):
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
        kernel.tier_bounds(n_postings, tiers)  # refused here, before any build starts
        return [lambda index, staged: write_part(index, staged, n_postings, range_size, tiers)]

    @classmethod
    def tuning_grid(cls, index: InvertedIndex | None = None) -> list[dict[str, Any]]:
        # Cut by weight mass (long and short queries alike), with the count cap left wide open; on a part with
        # impact tiers, the tier cut at the values that measured best for k=10 and k=1000 at 1M, and 0.
        grid = [{"query_mass": mass, "candidates": cand} for mass in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
                for cand in (50, 100, 200, 300, 500, 1000, 2000)]
        part = index.parts.get(PART) if index is not None else None
        if part is None or int(part.params.get("tier_count", 1)) == 1:
            return grid
        return [{**options, "tier_cut": cut} for cut in (0.3, 0.1, 0.0) for options in grid]

    def new_scratch(self) -> tuple[np.ndarray, np.ndarray]:
        return kernel.new_scratch(self.index.num_documents, self.index.vocab_size, self.range_size)

    def search(self, query: SparseQuery, k: int, scratch: tuple[np.ndarray, np.ndarray],
               options: Mapping[str, Any], allowed: np.ndarray | None = None) -> TopK:
        index = self.index
        allowed = masking.checked(allowed, index.num_documents)
        selected = masking.selected_documents(index.offsets, query, allowed)
        if selected is not None:  # few documents allowed: their exact scores are cheaper than candidates
            return TopK(*masking.score_documents(index, query, k, selected))
        docs, scores, stats = kernel.search_pruned(*self.arrays.arrays(), self.range_size, self.tiers,
                                                   query.term_ids, query.weights, np.float32(index.scale), int(k),
                                                   int(options["query_cut"]), np.float64(options["query_mass"]),
                                                   int(options["candidates"]), *scratch,
                                                   masking.kernel_mask(allowed), int(options.get("max_postings", 0)),
                                                   np.float64(options.get("range_quota", kernel.DEFAULT_RANGE_QUOTA)),
                                                   np.float64(options.get("tier_cut", kernel.DEFAULT_TIER_CUT)))
        counters = {"postings_traversed": int(stats[0]), "terms_walked": int(stats[1]),
                    "documents_rescored": int(stats[2]), "forward_entries": int(stats[3])}
        if allowed is not None and len(docs) < k:
            # A mask can leave the pruned lists with fewer than k allowed documents while more exist in the
            # full lists: an exact traversal keeps the promise of k hits whenever k allowed documents score above
            # 0 (its document-sized accumulator is allocated here: the path is rare).
            docs, scores, postings = score_exact(index.offsets, index.doc_numbers, index.impacts, query.term_ids,
                                                 query.weights, np.float32(index.scale), int(k),
                                                 np.zeros(index.num_documents, dtype=np.float32), allowed)
            counters["postings_traversed"] += int(postings)
            counters["exact_fallback"] = 1
        return TopK(docs, scores, counters)
