"""Corpus readers: BEIR folders, JSONL or TSV of (id, text), and pre-encoded vectors JSONL.

Every reader yields `CorpusDocument`s in file order and raises `CorpusError` naming the file, the line and the
field at fault. Formats:

- BEIR folder: `<dir>/corpus.jsonl`, lines `{"_id", "title", "text", "metadata"?}`.
- JSONL: lines `{"_id" | "id", "text", "title"?, "metadata"?}`; the text to encode is BEIR's
  `(title + " " + text).strip()`. `metadata` (JSONL and vectors) is an object of filterable fields
  (engine.metadata, docs/filters.md).
- TSV: `id<TAB>text` or `id<TAB>title<TAB>text`; a first line `id<TAB>...` (or `_id`) is a header and skipped.
- Vectors JSONL: lines `{"id" | "_id", "vector": {token: weight}, "title"?, "text"?, "metadata"?}` (the exchange format of
  other learned-sparse tools). Zero weights are dropped; negative or non-finite weights are errors.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("auto", "beir", "jsonl", "tsv", "vectors")


class CorpusError(ValueError):
    """A corpus that cannot be read as the detected or requested format."""


@dataclass(frozen=True)
class CorpusDocument:
    id: str
    title: str
    text: str
    vector: dict[str, float] | None = None
    metadata: dict | None = None  # the record's `metadata` object, as read (typed by engine.metadata)

    @property
    def encoder_text(self) -> str:
        """What the document encoder reads, joined as BEIR does."""
        return (self.title + " " + self.text).strip()


def corpus_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        inner = path / "corpus.jsonl"
        if not inner.is_file():
            raise CorpusError(f"{path}: a directory corpus must be a BEIR folder holding corpus.jsonl")
        return inner
    if not path.is_file():
        raise CorpusError(f"{path}: corpus not found")
    return path


def detect_format(path: str | os.PathLike) -> str:
    path = Path(path)
    if path.is_dir():
        return "beir"
    file = corpus_file(path)
    if file.suffix.lower() in (".tsv", ".tab"):
        return "tsv"
    with open(file, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError as exc:
                    raise CorpusError(f"{file}:1: not JSON ({exc}); use .tsv for tab-separated corpora") from exc
                return "vectors" if isinstance(first, dict) and "vector" in first else "jsonl"
    return "jsonl"


def count_lines(path: str | os.PathLike) -> int:
    """Non-empty-ish line count, for progress bars (counts newlines, plus a last unterminated line)."""
    count, last = 0, b"\n"
    with open(corpus_file(path), "rb") as handle:
        while block := handle.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def read_corpus(path: str | os.PathLike, fmt: str = "auto") -> Iterator[CorpusDocument]:
    if fmt not in FORMATS:
        raise CorpusError(f"unknown corpus format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path)
    file = corpus_file(path)
    if fmt == "tsv":
        return _read_tsv(file)
    if fmt == "vectors":
        return _read_vectors(file)
    return _read_jsonl(file)


def _json_lines(file: Path) -> Iterator[tuple[int, dict]]:
    with open(file, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise CorpusError(f"{file}:{lineno}: invalid JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise CorpusError(f"{file}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def _doc_id(file: Path, lineno: int, record: dict) -> str:
    doc_id = record.get("_id", record.get("id"))
    if doc_id is None:
        raise CorpusError(f"{file}:{lineno}: missing field '_id' (or 'id')")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise CorpusError(f"{file}:{lineno}: field 'id' must be a string or an integer, got {doc_id!r}")
    doc_id = str(doc_id)
    if not doc_id:
        raise CorpusError(f"{file}:{lineno}: field 'id' is empty")
    return doc_id


def _string_field(file: Path, lineno: int, record: dict, name: str, required: bool) -> str:
    value = record.get(name)
    if value is None:
        if required:
            raise CorpusError(f"{file}:{lineno}: missing field '{name}'")
        return ""
    if not isinstance(value, str):
        raise CorpusError(f"{file}:{lineno}: field '{name}' must be a string, got {type(value).__name__}")
    return value


def _metadata_field(file: Path, lineno: int, record: dict) -> dict | None:
    value = record.get("metadata")
    if value is not None and not isinstance(value, dict):
        raise CorpusError(f"{file}:{lineno}: field 'metadata' must be an object {{field: value}}, "
                          f"got {type(value).__name__}")
    return value or None


def _read_jsonl(file: Path) -> Iterator[CorpusDocument]:
    for lineno, record in _json_lines(file):
        yield CorpusDocument(
            id=_doc_id(file, lineno, record),
            title=_string_field(file, lineno, record, "title", required=False),
            text=_string_field(file, lineno, record, "text", required=True),
            metadata=_metadata_field(file, lineno, record),
        )


def _read_tsv(file: Path) -> Iterator[CorpusDocument]:
    with open(file, encoding="utf-8", newline="") as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if lineno == 1 and fields[0].strip().lower() in ("id", "_id", "docid", "doc_id"):
                continue
            if len(fields) == 2:
                doc_id, title, text = fields[0], "", fields[1]
            elif len(fields) == 3:
                doc_id, title, text = fields
            else:
                raise CorpusError(f"{file}:{lineno}: expected 2 (id, text) or 3 (id, title, text) tab-separated "
                                  f"fields, found {len(fields)}")
            if not doc_id:
                raise CorpusError(f"{file}:{lineno}: field 'id' is empty")
            yield CorpusDocument(id=doc_id, title=title, text=text)


def _read_vectors(file: Path) -> Iterator[CorpusDocument]:
    for lineno, record in _json_lines(file):
        doc_id = _doc_id(file, lineno, record)
        vector = record.get("vector")
        if not isinstance(vector, dict):
            raise CorpusError(f"{file}:{lineno}: field 'vector' must be an object {{token: weight}}")
        clean: dict[str, float] = {}
        for token, weight in vector.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise CorpusError(f"{file}:{lineno}: weight of token {token!r} must be a number, got {weight!r}")
            weight = float(weight)
            if not math.isfinite(weight) or weight < 0:
                raise CorpusError(f"{file}:{lineno}: weight of token {token!r} must be finite and >= 0, "
                                  f"got {weight}")
            if weight > 0:
                clean[token] = weight
        yield CorpusDocument(
            id=doc_id,
            title=_string_field(file, lineno, record, "title", required=False),
            text=_string_field(file, lineno, record, "text", required=False),
            vector=clean,
            metadata=_metadata_field(file, lineno, record),
        )
