"""Which limit a pydantic validation error broke: shared by request errors (errors.py) and settings errors."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# pydantic error context keys that carry the violated limit, in order of preference.
LIMIT_KEYS = ("le", "lt", "ge", "gt", "max_length", "min_length")


def limit_of(error: Mapping[str, Any]) -> Any:
    ctx = error.get("ctx") or {}
    return next((ctx[key] for key in LIMIT_KEYS if key in ctx), None)
