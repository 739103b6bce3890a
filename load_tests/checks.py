"""Shape checks of the service's answers (docs/design.md, HTTP contract). A load-test response that fails any
check counts as a failure, not a success: a fast wrong answer is not a served request."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# The stage names of the HTTP contract (timings_ms); load tests import nothing of ours, so this copy is
# checked against engine.STAGES by tests/load_tests/test_bounds_and_checks.py.
STAGES = ("tokenize", "queue", "encode", "score", "total")


def search_problems(body: Any, k: int, include_text: bool = False) -> list[str]:
    """What is wrong with one /search response body (empty when it is well-formed)."""
    if not isinstance(body, Mapping):
        return ["body is not a JSON object"]
    problems: list[str] = []
    hits = body.get("hits")
    if not isinstance(hits, list):
        return ["'hits' is missing or not a list"]
    if len(hits) > k:
        problems.append(f"{len(hits)} hits for k={k}")
    previous = math.inf
    for i, hit in enumerate(hits):
        if not isinstance(hit, Mapping) or not isinstance(hit.get("id"), str):
            problems.append(f"hit {i} has no string 'id'")
            continue
        score = hit.get("score")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            problems.append(f"hit {i} has no finite 'score'")
            continue
        if score > previous:
            problems.append(f"hit {i} scores above the hit before it: not sorted")
        previous = score
        if include_text and not isinstance(hit.get("text"), str):
            problems.append(f"hit {i} has no 'text' although include_text was asked")
    postings = body.get("postings_traversed")
    if not isinstance(postings, int) or isinstance(postings, bool) or postings < 0:
        problems.append("'postings_traversed' is not a non-negative integer")
    timings = body.get("timings_ms")
    if not isinstance(timings, Mapping) or any(not isinstance(timings.get(s), (int, float)) for s in STAGES):
        problems.append(f"'timings_ms' lacks one of {STAGES}")
    return problems


def batch_problems(body: Any, k: int, expected_results: int) -> list[str]:
    """What is wrong with one /search/batch response body."""
    if not isinstance(body, Mapping) or not isinstance(body.get("results"), list):
        return ["'results' is missing or not a list"]
    results = body["results"]
    if len(results) != expected_results:
        return [f"{len(results)} results for {expected_results} queries"]
    problems: list[str] = []
    for i, result in enumerate(results):
        problems += [f"result {i}: {p}" for p in search_problems(result, k)]
    return problems
