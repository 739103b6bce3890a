"""The request's query mode and fusion (`mode`, `fusion`, `fusion_weights`, `normalization`, `rank_constant`),
resolved against the server's defaults (SPLADE_MODE, SPLADE_FUSION, ...; see engine.hybrid and engine.fusion)."""
from __future__ import annotations

from typing import Any

from engine import Searcher
from engine.fusion import METHODS, NORMALIZATIONS, FusionSpec
from engine import query_pruning
from engine.hybrid import available_modes


def hybrid_options(searcher: Searcher, request: Any) -> tuple[str, FusionSpec]:
    """(mode, fusion) of one request: its fields where given, the searcher's defaults otherwise (validated)."""
    mode = getattr(request, "mode", None) or searcher.mode
    weights = getattr(request, "fusion_weights", None)
    fusion = searcher.fusion.with_overrides(
        method=getattr(request, "fusion", None),
        weights=weights.model_dump(exclude_none=True) if hasattr(weights, "model_dump") else weights,
        normalization=getattr(request, "normalization", None),
        rank_constant=getattr(request, "rank_constant", None),
    ).checked()
    return mode, fusion


def pruning_options(settings: Any, request: Any) -> tuple[float | None, float | None, float | None]:
    """(query_weight_mass, query_weight_ratio, two_phase_ratio) of a request, within the server's limits
    (engine.query_pruning, engine.two_phase)."""
    mass, ratio = getattr(request, "query_weight_mass", None), getattr(request, "query_weight_ratio", None)
    two_phase = getattr(request, "two_phase_ratio", None)
    query_pruning.check(mass, ratio, settings.min_query_weight_mass, settings.max_query_weight_ratio,
                        two_phase, settings.max_two_phase_ratio)
    return mass, ratio, two_phase


def fusion_from_settings(settings: Any) -> FusionSpec:
    return FusionSpec(settings.fusion, {"splade": settings.fusion_weight_splade, "bm25": settings.fusion_weight_bm25},
                      settings.fusion_normalization, settings.fusion_rank_constant).checked()


def modes_first_default(index: Any, default: str) -> list[str]:
    """The modes this index serves, the server's default first (the workbench takes the first as default)."""
    modes = available_modes(index)
    return [default] + [m for m in modes if m != default]


def fusion_info(spec: FusionSpec) -> dict:
    """The server's default fusion, and how deep each retriever goes, for GET /info."""
    return {"default": {"fusion": spec.method, "fusion_weights": dict(spec.weights),
                        "normalization": spec.normalization, "rank_constant": spec.rank_constant},
            "methods": list(METHODS), "normalizations": list(NORMALIZATIONS),
            "retriever_depth": "max(2k, 100) documents, at most the collection"}
