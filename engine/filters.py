"""The filter language: a JSON expression over document metadata (engine.metadata) -> a document mask.

    {"lang": "en"}                           equality (for a keyword_list field: the list contains the value)
    {"lang": {"in": ["en", "de"]}}           any of the values
    {"year": {"gte": 2019, "lt": 2023}}      range (gt, gte, lt, lte; integer and float fields only)
    {"and": [f, ...]}, {"or": [f, ...]}, {"not": f}
    {"lang": "en", "year": {"gte": 2019}}    several keys in one object: all must hold (an implicit "and")
    {}                                       every document

A document without a value for the field (missing, null, empty list) matches no equality, `in` or range
condition; `not` inverts, so `{"not": {"lang": "en"}}` also passes documents without a `lang`.

`parse` checks the syntax and the server's limits (depth, clauses, `in` length) without an index; `check`
checks every field against an index's schema (indexed? the right type?); `mask` evaluates to a numpy bool array
over the index's documents with whole-column numpy operations (no Python per document). Every problem is an
InvalidQueryError whose field is the path of the offending part, e.g. `filter.and[1].year.gte`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import metadata as md
from engine.errors import InvalidQueryError

BOOLEAN_OPERATORS = ("and", "or", "not")
RANGE_OPERATORS = ("gt", "gte", "lt", "lte")
FIELD_OPERATORS = ("in", *RANGE_OPERATORS)


@dataclass(frozen=True)
class FilterLimits:
    """What one filter may ask for (the service's SPLADE_FILTER_* settings)."""

    max_depth: int = 8           # nesting of and / or / not
    max_clauses: int = 64        # field conditions in the whole filter
    max_in_values: int = 1024    # values in one `in` list


# -- the typed expression -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchAll:
    path: str


@dataclass(frozen=True)
class Equals:
    path: str   # of the field, e.g. filter.and[0].lang
    field: str
    value: Any


@dataclass(frozen=True)
class AnyOf:
    path: str
    field: str
    values: tuple


@dataclass(frozen=True)
class Range:
    path: str
    field: str
    bounds: tuple  # ((operator, number), ...)


@dataclass(frozen=True)
class And:
    path: str
    children: tuple


@dataclass(frozen=True)
class Or:
    path: str
    children: tuple


@dataclass(frozen=True)
class Not:
    path: str
    child: Any


Node = MatchAll | Equals | AnyOf | Range | And | Or | Not
FieldCondition = Equals | AnyOf | Range


# -- parsing ------------------------------------------------------------------------------------------------------
def parse(raw: Any, limits: FilterLimits = FilterLimits(), path: str = "filter") -> Node:
    """The typed expression of a filter's JSON, or InvalidQueryError naming the path and the limit broken."""
    parser = _Parser(limits)
    return parser.node(raw, path, 0)


class _Parser:
    def __init__(self, limits: FilterLimits) -> None:
        self.limits = limits
        self.clauses = 0

    def node(self, raw: Any, path: str, depth: int) -> Node:
        if not isinstance(raw, Mapping):
            raise InvalidQueryError(path, f"must be an object (a condition, or and / or / not), got {_kind(raw)}")
        if not raw:
            return MatchAll(path)
        parts = [self.key(key, value, path, depth) for key, value in raw.items()]
        return parts[0] if len(parts) == 1 else And(path, tuple(parts))

    def key(self, key: Any, value: Any, path: str, depth: int) -> Node:
        if not isinstance(key, str) or not key:
            raise InvalidQueryError(path, "field names must be non-empty strings")
        here = f"{path}.{key}"
        if key in BOOLEAN_OPERATORS:
            if depth + 1 > self.limits.max_depth:
                raise InvalidQueryError(here, f"nested deeper than {self.limits.max_depth} and / or / not levels",
                                        self.limits.max_depth)
            if key == "not":
                return Not(here, self.node(value, here, depth + 1))
            if not isinstance(value, list) or not value:
                raise InvalidQueryError(here, f"must be a non-empty list of filters, got {_kind(value)}")
            children = tuple(self.node(child, f"{here}[{i}]", depth + 1) for i, child in enumerate(value))
            return (And if key == "and" else Or)(here, children)
        self.clauses += 1
        if self.clauses > self.limits.max_clauses:
            raise InvalidQueryError(here, f"more than {self.limits.max_clauses} conditions in one filter",
                                    self.limits.max_clauses)
        if isinstance(value, Mapping):
            return self.operators(key, value, here)
        if isinstance(value, list):
            raise InvalidQueryError(here, 'a list is not a value: use {"in": [...]} to match any of several values')
        return Equals(here, key, _scalar(value, here))

    def operators(self, field: str, ops: Mapping, path: str) -> Node:
        if not ops:
            raise InvalidQueryError(path, f"an empty operator object: give one of {', '.join(FIELD_OPERATORS)}")
        conditions: list[Node] = []
        bounds = []
        for op, operand in ops.items():
            here = f"{path}.{op}"
            if op == "in":
                if not isinstance(operand, list) or not operand:
                    raise InvalidQueryError(here, f"must be a non-empty list of values, got {_kind(operand)}")
                if len(operand) > self.limits.max_in_values:
                    raise InvalidQueryError(here, f"{len(operand)} values, more than the limit of "
                                                  f"{self.limits.max_in_values}", self.limits.max_in_values)
                values = tuple(_scalar(v, f"{here}[{i}]") for i, v in enumerate(operand))
                conditions.append(AnyOf(path, field, values))
            elif op in RANGE_OPERATORS:
                if isinstance(operand, bool) or not isinstance(operand, (int, float)) or (
                        isinstance(operand, float) and not math.isfinite(operand)):
                    raise InvalidQueryError(here, f"must be a finite number, got {_kind(operand)}")
                bounds.append((op, operand))
            else:
                raise InvalidQueryError(here, f"unknown operator {op!r}: use one of {', '.join(FIELD_OPERATORS)} "
                                              "(and / or / not go above field conditions)", list(FIELD_OPERATORS))
        if bounds:
            conditions.append(Range(path, field, tuple(bounds)))
        return conditions[0] if len(conditions) == 1 else And(path, tuple(conditions))


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidQueryError(path, "must be a finite number")
    if value is None or not isinstance(value, (str, bool, int, float)):
        raise InvalidQueryError(path, f"must be a string, number or boolean, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{type(value).__name__} {value!r}"


# -- checking against an index's schema -----------------------------------------------------------------------
def check(node: Node, schema: Mapping[str, str]) -> None:
    """InvalidQueryError naming the path of a condition on a field the index does not index, or of a value
    of the wrong type for its field."""
    for condition in _conditions(node):
        type_name = schema.get(condition.field)
        if type_name is None:
            indexed = sorted(schema)
            shown = ", ".join(indexed[:20]) + (", ..." if len(indexed) > 20 else "") if indexed else "none"
            raise InvalidQueryError(condition.path, f"field {condition.field!r} is not an indexed metadata field "
                                                    f"(indexed: {shown}; GET /info lists them with their types)",
                                    indexed[:20])
        if isinstance(condition, Equals):
            _check_value(type_name, condition.value, condition.path, condition.field)
        elif isinstance(condition, AnyOf):
            for i, value in enumerate(condition.values):
                _check_value(type_name, value, f"{condition.path}.in[{i}]", condition.field)
        elif type_name not in (md.INTEGER, md.FLOAT):
            op = condition.bounds[0][0]
            raise InvalidQueryError(f"{condition.path}.{op}", f"range operators ({', '.join(RANGE_OPERATORS)}) "
                                    f"apply to integer and float fields; {condition.field!r} is {type_name}",
                                    [md.INTEGER, md.FLOAT])


def _check_value(type_name: str, value: Any, path: str, field: str) -> None:
    expected = {md.KEYWORD: str, md.KEYWORD_LIST: str, md.BOOLEAN: bool}.get(type_name)
    if expected is not None:
        ok = isinstance(value, expected)
    elif type_name == md.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # float: any number
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        wanted = "a keyword (string)" if type_name == md.KEYWORD_LIST else md.describe(type_name)
        raise InvalidQueryError(path, f"field {field!r} is {type_name}: the value must be {wanted}, got "
                                      f"{_kind(value)}", type_name)


def _conditions(node: Node):
    if isinstance(node, (And, Or)):
        for child in node.children:
            yield from _conditions(child)
    elif isinstance(node, Not):
        yield from _conditions(node.child)
    elif not isinstance(node, MatchAll):
        yield node


# -- evaluation -----------------------------------------------------------------------------------------------
def mask(node: Node, index) -> np.ndarray:
    """The documents of `index` that pass `node` (numpy bool [documents]); checks the node against the index's
    schema first (InvalidQueryError naming the path). For a generation of a segmented index (engine.segments),
    the per-segment masks over its global document numbers, against the schema of its first segment (every
    segment written later carries that schema; a segment without the part has no values)."""
    segments = getattr(index, "segments", None)
    if segments is not None:
        first = md.metadata_of(segments[0].index)
        check(node, first.schema if first is not None else {})
        parts = []
        for segment in segments:
            opened = md.metadata_of(segment.index)
            parts.append(_evaluate(node, opened, segment.num_slots) if opened is not None
                         else _evaluate(node, _NO_VALUES, segment.num_slots))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    opened = md.metadata_of(index)
    check(node, opened.schema if opened is not None else {})
    return _evaluate(node, opened, index.num_documents)


_NO_VALUES = object()  # a segment without the metadata part: no document has a value for any field


def _evaluate(node: Node, opened: md.Metadata | None, num_documents: int) -> np.ndarray:
    if isinstance(node, MatchAll):
        return np.ones(num_documents, dtype=bool)
    if opened is _NO_VALUES and not isinstance(node, (Not, And, Or)):
        return np.zeros(num_documents, dtype=bool)  # no value matches no condition
    if isinstance(node, Not):
        return ~_evaluate(node.child, opened, num_documents)
    if isinstance(node, (And, Or)):
        combine = np.logical_and if isinstance(node, And) else np.logical_or
        result = _evaluate(node.children[0], opened, num_documents)
        for child in node.children[1:]:
            combine(result, _evaluate(child, opened, num_documents), out=result)
        return result
    column = opened.fields[node.field]
    if isinstance(node, Range):
        return _range(column, node.bounds)
    values = (node.value,) if isinstance(node, Equals) else node.values
    return _any_of(column, values)


def _any_of(column: md.MetadataField, values: tuple) -> np.ndarray:
    if column.type in (md.KEYWORD, md.KEYWORD_LIST):
        codes = column.dictionary.codes(values)
        hit = _member(column.codes, codes, len(column.dictionary))
        if column.type == md.KEYWORD:
            return hit
        result = np.zeros(column.num_documents, dtype=bool)
        result[column.rows()[hit]] = True
        return result
    if column.type == md.BOOLEAN:
        return _member(column.values, np.unique(np.asarray([int(v) for v in values], dtype=np.int8)))
    if column.type == md.INTEGER:
        wanted = np.unique(np.asarray([v for v in values if md.INT64_MIN <= v <= md.INT64_MAX], dtype=np.int64))
    else:
        wanted = np.unique(np.asarray([_as_float(v) for v in values], dtype=np.float64))
    return _member(column.values, wanted) & column.present


# Up to this many values, `in` is an OR of equality passes (each one streamed compare); beyond, a lookup table
# (keyword codes) or np.isin (numbers). np.isin costs ~20x one equality pass, so it is kept for long lists.
FEW_VALUES = 4


def _member(column: np.ndarray, wanted: np.ndarray, codes: int | None = None) -> np.ndarray:
    """column[i] in wanted, for every i (codes: the dictionary size of a keyword column, whose missing is -1)."""
    column = np.asarray(column)  # a plain ndarray view: numpy's memmap subclass adds per-operation overhead
    if len(wanted) == 0:
        return np.zeros(column.shape[0], dtype=bool)
    if len(wanted) <= FEW_VALUES:
        result = column == wanted[0]
        for value in wanted[1:]:
            result |= column == value
        return result
    if codes is not None:
        table = np.zeros(codes + 1, dtype=bool)  # the last entry (False) is what code -1 indexes
        table[wanted] = True
        return table[column]
    return np.isin(column, wanted)


def _range(column: md.MetadataField, bounds: tuple) -> np.ndarray:
    result = np.asarray(column.present).copy()
    values = np.asarray(column.values)
    for op, bound in bounds:
        if column.type == md.FLOAT:
            bound = _as_float(bound)
        else:
            op, bound = _integer_bound(op, bound)
            if bound is None:  # a bound no int64 can meet, or one every int64 meets
                if op == "none":
                    result[:] = False
                continue
        if op == "gt":
            result &= values > bound
        elif op == "gte":
            result &= values >= bound
        elif op == "lt":
            result &= values < bound
        else:
            result &= values <= bound
    return result


def _as_float(value: int | float) -> float:
    """A JSON number as float64; an integer beyond float64's range is +-inf (it matches no stored value)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _integer_bound(op: str, bound: int | float) -> tuple[str, int | None]:
    """An exact int64 comparison for a numeric bound (no float rounding of large integers): a fractional bound
    becomes the nearest integer on the right side; a bound outside int64 matches all ("all", None) or none."""
    if isinstance(bound, float):
        bound = math.ceil(bound) if op in ("gte", "lt") else math.floor(bound)  # gt 2.5 == gt 2, lt 2.5 == lt 3
    if bound > md.INT64_MAX:
        return ("none", None) if op in ("gt", "gte") else ("all", None)
    if bound < md.INT64_MIN:
        return ("all", None) if op in ("gt", "gte") else ("none", None)
    return op, int(bound)


def allowed(index, node: Node | None) -> np.ndarray | None:
    """The mask a scorer gets (`Scorer.search(..., allowed=...)`): None when there is no filter or it passes
    every document (the scorer then runs unfiltered: measured 1.55x faster than with an all-true mask)."""
    if node is None or isinstance(node, MatchAll):
        return None
    result = mask(node, index)
    return None if result.all() else result  # an all-pass mask would only slow the kernels down
