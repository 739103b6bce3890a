"""The scorer seam: what every scorer declares and does.

A scorer class declares its `name`, the optional index parts it `requires`, whether it is `safe` (returns
exactly the exact scorer's top-k: same ids, same float32 scores, ties to the lower document number) or
approximate with a declared `recall_floor` (recall@k against the exact top-k at its default options), and the
request `options` it accepts with their limits; `part_writers()` builds the parts it requires on an existing
index (engine.index_format.add_parts). An instance is bound to one opened index (`for_index`): it may
derive read-only structures from it once. `new_scratch()` makes the per-thread buffers one search needs; the
caller keeps one per thread (see engine.snapshot). `search` never does I/O and raises only InvalidQueryError.
`search(..., allowed=mask)` returns only documents the bool mask allows, honoured during the search (see
engine.scorers.masking): k hits whenever k allowed documents score above 0.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from engine.errors import IndexFormatError, InvalidQueryError
from engine.index_format import InvertedIndex, PartWriter
from engine.query import SparseQuery


FORWARD_INDEX_MAX_VOCABULARY = 1 << 16  # forward indexes and summaries store 16-bit term ids


def check_forward_index_source(part: str, index: InvertedIndex, impact_dtypes: tuple[str, ...]) -> None:
    """IndexFormatError unless `index` can feed a part built on a forward index (16-bit term ids, impacts of one
    of `impact_dtypes`)."""
    if index.vocab_size > FORWARD_INDEX_MAX_VOCABULARY:
        raise IndexFormatError(f"{part}: the vocabulary has {index.vocab_size} terms; this part stores 16-bit term "
                               f"ids (at most {FORWARD_INDEX_MAX_VOCABULARY})")
    if index.impacts.dtype.name not in impact_dtypes:
        raise IndexFormatError(f"{part}: needs {' or '.join(impact_dtypes)} impacts, the index has "
                               f"{index.impacts.dtype.name}")


@dataclass(frozen=True)
class OptionSpec:
    """A numeric request option of a scorer: its default and inclusive limits. `default_from`, when given, is
    asked for the default at each use instead (a server setting, e.g. the threads a query may use)."""

    default: float
    minimum: float
    maximum: float
    integer: bool = False
    description: str = ""
    default_from: Callable[[], float] | None = None

    def current_default(self) -> float:
        return self.default if self.default_from is None else self.default_from()

    def check(self, field_name: str, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidQueryError(field_name, f"must be a number, got {value!r}")
        if self.integer and float(value) != int(value):
            raise InvalidQueryError(field_name, f"must be an integer, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            limit = [self.minimum, self.maximum]
            raise InvalidQueryError(field_name, f"must be in [{self.minimum}, {self.maximum}], got {value!r}", limit)
        return int(value) if self.integer else float(value)


@dataclass(frozen=True, slots=True)
class TopK:
    """A scorer's answer: document numbers (int64) and scores (float32), best first, plus counters."""

    doc_numbers: np.ndarray
    scores: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def postings_traversed(self) -> int:
        return int(self.stats.get("postings_traversed", 0))


class Scorer(abc.ABC):
    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    safe: ClassVar[bool]
    recall_floor: ClassVar[float | None] = None
    options: ClassVar[Mapping[str, OptionSpec]] = {}
    # Names of the build-time parameters among its parts' recorded params (the rest are counts): a new
    # segment's part is built with the same ones (engine.lifecycle).
    build_parameters: ClassVar[frozenset[str]] = frozenset()
    # Those of them that take a list of numbers (`add-parts --param NAME=1,2`); the others take one number.
    list_build_parameters: ClassVar[frozenset[str]] = frozenset()
    # The index impact dtypes it serves (a part built on another raises IndexFormatError naming them).
    impact_dtypes: ClassVar[tuple[str, ...]] = ("uint8", "uint16")
    # The layout version of each part it reads; a part of the index in another version is refused.
    part_versions: ClassVar[Mapping[str, int]] = {}
    # (option, counter): an option that caps the work a query may do, and the TopK counter that measures that
    # work; `tune` tries caps at quantiles of the counter for its chosen configuration (None: no such option).
    work_cap: ClassVar[tuple[str, str] | None] = None
    description: ClassVar[str] = ""

    def __init__(self, index: InvertedIndex) -> None:
        for part, expected in self.part_versions.items():
            info = index.parts.get(part)
            if info is not None and info.version != expected:
                raise IndexFormatError(f"{index.path}: the {part} part has layout version {info.version}; this engine "
                                       f"reads version {expected}: rebuild it (python -m index_builder add-parts "
                                       f"--scorer {self.name})")
        self.index = index

    @classmethod
    def for_index(cls, index: InvertedIndex) -> Scorer:
        return cls(index)

    @classmethod
    def tuning_grid(cls, index: InvertedIndex | None = None) -> list[dict[str, Any]]:
        """Candidate option sets for `tune`, cheapest first (an exact scorer has nothing to tune); `index`: the
        index they are for, when its parts change what is worth trying."""
        return [{}]

    @classmethod
    def part_writers(cls, params: Mapping[str, Any] | None = None, threads: int = 1) -> list[PartWriter]:
        """Writers of the optional parts this scorer requires (for engine.index_format.add_parts); `threads`: how
        many cores a writer may use (the parts do not depend on it)."""
        return []

    @classmethod
    def resolve_options(cls, given: Mapping[str, Any] | None, field_prefix: str = "scorer_options") -> dict[str, Any]:
        """Defaults overlaid with `given`, each checked against its limits (InvalidQueryError naming the field)."""
        resolved: dict[str, Any] = {name: spec.current_default() for name, spec in cls.options.items()}
        for name, value in (given or {}).items():
            spec = cls.options.get(name)
            if spec is None:
                allowed = sorted(cls.options)
                raise InvalidQueryError(f"{field_prefix}.{name}",
                                        f"scorer {cls.name!r} has no option {name!r} (options: {allowed})", allowed)
            resolved[name] = spec.check(f"{field_prefix}.{name}", value)
        return resolved

    @abc.abstractmethod
    def new_scratch(self) -> Any:
        """Per-thread buffers sized for this index."""

    @abc.abstractmethod
    def search(self, query: SparseQuery, k: int, scratch: Any, options: Mapping[str, Any],
               allowed: np.ndarray | None = None) -> TopK:
        """The top-k of `query` (term ids in [0, vocab), weights finite and >= 0; k >= 1) among the documents
        `allowed` lets through (None: all; else bool[num_documents], checked by engine.scorers.masking)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name, "safe": cls.safe, "recall_floor": cls.recall_floor, "requires": sorted(cls.requires),
            "options": {n: {"default": o.current_default(), "min": o.minimum, "max": o.maximum}
                        for n, o in cls.options.items()},
            "description": cls.description,
        }
