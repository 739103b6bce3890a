"""The scorer registry: every scorer by name. The index manifest names its default; `available(index)` lists
the scorers whose required parts the index has."""
from __future__ import annotations

from typing import Any

from engine.errors import InvalidQueryError
from engine.index_format import InvertedIndex
from engine.scorers.base import OptionSpec, Scorer, TopK
from engine.scorers.blocked import BlockedExactScorer
from engine.scorers.clustered import ClusteredScorer
from engine.scorers.exact import ExactScorer
from engine.scorers.pruned import PrunedRescoreScorer

_REGISTRY: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Add a scorer class (usable as a decorator); a name can be registered once."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a scorer named {cls.name!r} is already registered")
    if not cls.safe and cls.recall_floor is None:
        raise ValueError(f"approximate scorer {cls.name!r} must declare its recall_floor")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered() -> dict[str, type[Scorer]]:
    return dict(_REGISTRY)


def available(index: InvertedIndex) -> list[str]:
    """Names of the scorers this index can serve (it has every part they require)."""
    return sorted(name for name, cls in _REGISTRY.items() if cls.requires <= set(index.parts))


def choices(index: InvertedIndex) -> list[str]:
    """What a request may name as `scorer` on this index: its servable scorers and its tuned configurations."""
    servable = available(index)
    tuned = [name for name, config in index.typed_manifest.configs.items() if config.scorer in servable]
    return servable + sorted(tuned)


def resolve(name: str, index: InvertedIndex, field: str = "scorer") -> tuple[type[Scorer], dict[str, Any]]:
    """A scorer or tuned-configuration name -> (scorer class, the configuration's options); InvalidQueryError
    naming `field` and the allowed values when the index cannot serve it."""
    config = index.typed_manifest.configs.get(name)
    if config is not None and name not in _REGISTRY:
        cls = _REGISTRY.get(config.scorer)
        if cls is not None and config.scorer in available(index):
            return cls, dict(config.options)
        allowed = choices(index)
        raise InvalidQueryError(field, f"configuration {name!r} needs scorer {config.scorer!r}, which this index "
                                       f"cannot serve; it serves {allowed}", allowed)
    return scorer_class(name, index, field), {}


def scorer_class(name: str, index: InvertedIndex, field: str = "scorer") -> type[Scorer]:
    """The class registered as `name`, if `index` can serve it; else InvalidQueryError naming the choices."""
    cls = _REGISTRY.get(name)
    if cls is None or name not in available(index):
        allowed = choices(index)
        why = "unknown scorer" if cls is None else f"the index lacks the parts it needs ({sorted(cls.requires)})"
        raise InvalidQueryError(field, f"{why}: {name!r}; this index serves {allowed}", allowed)
    return cls


register(ExactScorer)
register(BlockedExactScorer)
register(PrunedRescoreScorer)
register(ClusteredScorer)

__all__ = ["BlockedExactScorer", "ClusteredScorer", "ExactScorer", "PrunedRescoreScorer", "OptionSpec", "Scorer", "TopK", "available", "choices", "register", "registered",
           "resolve", "scorer_class", "unregister"]
