"""BEIR folders: judged queries (`queries.jsonl`) and relevance judgements (`qrels/<split>.tsv`)."""
from __future__ import annotations

import csv
import json
from pathlib import Path


class EvaluationInputError(ValueError):
    """A BEIR folder missing its queries or qrels, or with malformed lines."""


def read_qrels(folder: Path, split: str) -> dict[str, dict[str, int]]:
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise EvaluationInputError(f"{path}: qrels for split {split!r} not found")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for lineno, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or (lineno == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise EvaluationInputError(f"{path}:{lineno}: expected query-id, corpus-id, score")
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError as exc:
                raise EvaluationInputError(f"{path}:{lineno}: score {row[2]!r} is not an integer") from exc
    return qrels


def read_queries(folder: Path, wanted: set[str]) -> dict[str, str]:
    path = folder / "queries.jsonl"
    if not path.is_file():
        raise EvaluationInputError(f"{path}: not found")
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                query_id, text = str(record["_id"]), record["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise EvaluationInputError(f"{path}:{lineno}: expected {{'_id', 'text'}} ({exc})") from exc
            if query_id in wanted:
                queries[query_id] = text
    missing = wanted - queries.keys()
    if missing:
        raise EvaluationInputError(f"{path}: {len(missing)} judged queries have no text (e.g. {sorted(missing)[0]!r})")
    return queries
