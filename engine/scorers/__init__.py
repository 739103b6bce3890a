"""The scorer registry: every scorer by name. The index manifest names its default; `available(index)` lists
the scorers whose required parts the index has."""
from __future__ import annotations

from engine.errors import InvalidQueryError
from engine.index_format import InvertedIndex
from engine.scorers.base import OptionSpec, Scorer, TopK
from engine.scorers.exact import ExactScorer

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


def scorer_class(name: str, index: InvertedIndex, field: str = "scorer") -> type[Scorer]:
    """The class registered as `name`, if `index` can serve it; else InvalidQueryError naming the choices."""
    choices = available(index)
    cls = _REGISTRY.get(name)
    if cls is None or name not in choices:
        why = "unknown scorer" if cls is None else f"the index lacks the parts it needs ({sorted(cls.requires)})"
        raise InvalidQueryError(field, f"{why}: {name!r}; this index serves {choices}", choices)
    return cls


register(ExactScorer)

__all__ = ["ExactScorer", "OptionSpec", "Scorer", "TopK", "available", "register", "registered", "scorer_class",
           "unregister"]
