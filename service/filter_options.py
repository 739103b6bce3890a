"""A request's `filter` (engine.filters) within the server's limits (SPLADE_FILTER_*), and what GET /info says
about the index's filterable metadata (docs/filters.md)."""
from __future__ import annotations

from typing import Any

from engine import filters
from engine import metadata as md


def filter_limits_from_settings(settings: Any) -> filters.FilterLimits:
    return filters.FilterLimits(max_depth=settings.filter_max_depth, max_clauses=settings.filter_max_clauses,
                                max_in_values=settings.filter_max_in_values)


def metadata_info(index: Any, limits: filters.FilterLimits) -> dict:
    """{"schema": {field: type}, "limits": {...}, "operators": [...]} for GET /info."""
    return {"schema": md.schema_of(index), "limits": {"max_depth": limits.max_depth,
                                                      "max_clauses": limits.max_clauses,
                                                      "max_in_values": limits.max_in_values},
            "operators": [*filters.BOOLEAN_OPERATORS, *filters.FIELD_OPERATORS]}
