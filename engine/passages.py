"""Long documents by passages: the optional `passages` part and the passage -> document collapse.

An index built with `--passage-tokens N --passage-stride S` (index_builder.passages) encodes each document as
overlapping passages of at most N tokens. Its SPLADE postings are over *passage rows* (the rows of one
document are contiguous and in order, so row order follows document order); everything else stays per
document: ids, the document store, the BM25 field, `counts.documents`, hits. The part maps the two:

    passages.document.npy   uint32 [passages]        the document of each row
    passages.first.npy      int64  [documents + 1]   rows of document d: [first[d], first[d + 1])
    passages.start.npy      int64  [passages]        character offsets of each passage in the text the encoder
    passages.end.npy        int64  [passages]        read, `(title + " " + text).strip()` (a tokenizer's offsets)

A document's score is the maximum over its passages. The scorers are not changed: they are bound to a view of
the index whose `num_documents` is the number of rows (`rows_view`) and return top passages; `top_documents`
collapses them, fetching k x 4 rows and doubling until k distinct documents are found or the rows run out.
Ties: score descending, then the lower document number (for rows: the lower row, which is the same order,
since rows ascend with documents). So for a safe scorer the result is exactly the top-k documents by maximum
passage score, and each comes with the row (passage) that reached it.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.arrays import create_array
from engine.errors import IndexFormatError
from engine.index_format import InvertedIndex
from engine.manifest import PartInfo
from engine.scorers import masking
from engine.scorers.base import TopK

PART = "passages"
VERSION = 1
FILES = {"document": "passages.document.npy", "first": "passages.first.npy", "start": "passages.start.npy",
         "end": "passages.end.npy"}
# First fetch k x OVERFETCH rows: a document's best passage usually ranks with its neighbours.
OVERFETCH = 4


@dataclass(frozen=True, slots=True)
class DocumentTopK(TopK):
    """A TopK over documents of a passage index: `passage_rows[i]` is the row that gave hit i its score."""

    passage_rows: np.ndarray = None  # type: ignore[assignment]


class PassageMap:
    """The opened `passages` part of an index (memory-mapped arrays)."""

    def __init__(self, index: InvertedIndex) -> None:
        info = index.parts[PART]
        self.num_passages = int(info.params["passages"])
        self.num_documents = index.num_documents
        self.params = dict(info.params)
        self.document = index.part_array(PART, FILES["document"], np.uint32, self.num_passages)
        self.first = index.part_array(PART, FILES["first"], np.int64, self.num_documents + 1)
        self.start = index.part_array(PART, FILES["start"], np.int64, self.num_passages)
        self.end = index.part_array(PART, FILES["end"], np.int64, self.num_passages)

    def passage(self, row: int) -> dict[str, int]:
        """What a hit says about the passage that matched: its number within the document and its offsets."""
        doc = int(self.document[row])
        return {"index": int(row - self.first[doc]), "start": int(self.start[row]), "end": int(self.end[row])}

    def rows_of(self, doc: int) -> range:
        return range(int(self.first[doc]), int(self.first[doc + 1]))

    def allowed_rows(self, allowed_documents: np.ndarray) -> np.ndarray:
        """A document mask (bool[num_documents], checked) as the row mask the scorers take (bool[num_passages]):
        each passage is allowed when its document is."""
        return masking.checked(allowed_documents, self.num_documents)[self.document]


def has_passages(index: InvertedIndex) -> bool:
    return PART in index.parts


def map_of(index: InvertedIndex) -> PassageMap | None:
    return PassageMap(index) if has_passages(index) else None


def rows_view(index: InvertedIndex, passages: PassageMap) -> InvertedIndex:
    """The same index seen by the scorers: the postings' rows are passages, so `num_documents` counts them.

    A shallow copy sharing every array; ids and the document store stay per document and are not used
    through it.
    """
    view = copy.copy(index)
    view.num_documents = passages.num_passages
    return view


def top_documents(search_rows: Callable[[int], TopK], k: int, passages: PassageMap) -> DocumentTopK:
    """The top-k documents by maximum passage score, from a scorer's top rows (`search_rows(depth)`)."""
    depth = min(passages.num_passages, max(1, k) * OVERFETCH)
    fetches = 0
    while True:
        top = search_rows(depth)
        fetches += 1
        rows = np.asarray(top.doc_numbers, dtype=np.int64)
        docs = passages.document[rows].astype(np.int64)
        # The rows come best first; a document's first row is its best passage (ties: its earlier passage).
        _, first = np.unique(docs, return_index=True)
        exhausted = len(rows) < depth or depth >= passages.num_passages
        if len(first) >= k or exhausted:
            break
        depth = min(passages.num_passages, depth * 2)
    best = np.sort(first)[:k]
    stats = dict(top.stats)
    stats["passages_fetched"] = int(len(rows))
    stats["passage_fetches"] = fetches
    return DocumentTopK(docs[best], np.asarray(top.scores)[best], stats, rows[best])


def write_part(staged: Path, document_of_row: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               num_documents: int, params: dict[str, Any]) -> tuple[str, PartInfo]:
    """Write the part's files into a staging directory (the builder's side)."""
    document_of_row = np.asarray(document_of_row, dtype=np.uint32)
    if len(document_of_row) and np.any(np.diff(document_of_row.astype(np.int64)) < 0):
        raise IndexFormatError("passage rows must follow document order")
    counts = np.bincount(document_of_row, minlength=num_documents)
    if len(counts) != num_documents or np.any(counts == 0):
        raise IndexFormatError("every document needs at least one passage row")
    first = np.zeros(num_documents + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    for key, array in (("document", document_of_row), ("first", first), ("start", np.asarray(starts, np.int64)),
                       ("end", np.asarray(ends, np.int64))):
        out = create_array(staged, FILES[key], array.dtype, len(array))
        out[:] = array
        out.flush()
        del out
    params = {**params, "documents": int(num_documents), "passages": int(len(document_of_row))}
    return PART, PartInfo(version=VERSION, files=sorted(FILES.values()), params=params)
