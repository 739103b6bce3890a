"""The engine's domain errors. Callers map them to their own surface: the HTTP layer to status codes and the
error JSON (service/errors.py), the command-line tools to one line on stderr and exit code 2."""
from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class IndexFormatError(EngineError):
    """An index directory that is missing, incomplete, corrupted or of another format version."""


class IncompatibleArtifactsError(EngineError):
    """The index was built with another vocabulary or tokenizer than the query encoder's."""


class InvalidQueryError(EngineError, ValueError):
    """A query the engine cannot run; `field` names the offending request field, `limit` the rule broken."""

    def __init__(self, field: str, message: str, limit: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.limit = limit


class UnknownTokenError(InvalidQueryError):
    """A vector query names a token that is not in the vocabulary."""

    def __init__(self, token: str, field: str = "vector") -> None:
        super().__init__(field, f"unknown token {token!r}: not in the model's vocabulary")
        self.token = token


class OverloadedError(EngineError):
    """More work is waiting than the configured limit: retry later."""

    def __init__(self, pending: int, limit: int) -> None:
        super().__init__(f"the encoder queue is full ({pending} waiting, limit {limit}); retry shortly")
        self.pending = pending
        self.limit = limit


class DeadlineExceededError(EngineError):
    """The query did not finish within its deadline."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(f"the search did not finish within {limit_s} s")
        self.limit_s = limit_s
