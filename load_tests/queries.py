"""Query texts for the load tests: a BEIR queries.jsonl (the `text` field) or a plain text file, one a line."""
from __future__ import annotations

import json
from pathlib import Path

DEFAULT_QUERIES = Path(__file__).resolve().parent / "queries" / "python-docs.txt"
MAX_QUERIES = 100_000


class QueryFileError(ValueError):
    """The queries file cannot be used; the message names the file and the line."""


def load_queries(path: str | Path | None = None) -> list[str]:
    """Non-empty query texts in file order. `.jsonl` files are read as BEIR queries; others as plain text
    (blank lines and lines starting with '#' skipped)."""
    path = Path(path) if path else DEFAULT_QUERIES
    if not path.is_file():
        raise QueryFileError(f"queries file {path} does not exist (LOAD_TEST_QUERIES / --queries)")
    queries: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if path.suffix == ".jsonl":
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise QueryFileError(f"{path}:{number}: not a BEIR query line with a 'text' field") from None
                if not isinstance(text, str):
                    raise QueryFileError(f"{path}:{number}: 'text' must be a string")
                text = text.strip()
            elif line.startswith("#"):
                continue
            else:
                text = line
            if text:
                queries.append(text)
            if len(queries) >= MAX_QUERIES:
                break
    if not queries:
        raise QueryFileError(f"{path}: no queries found")
    return queries
