"""Writing the BM25 field (engine.bm25): analyse each document's text, invert, weigh, quantize into the part.

The index builder (`index_builder.build`, the `bm25` verb) and every segment writer (engine.lifecycle: offline
`add`, the service's writes, merges) use this one implementation, so a segment's field is built as a whole
index's is.

Memory: bounded like the SPLADE postings. BM25 weights need the collection's document frequencies and mean length
before any weight is known, so the analysed (document, term, count) triples go through the same chunked
inversion (engine.inversion): buffered up to the builder's share of --memory-budget-mb, written as sorted
runs, and merged range by range at the end, where each posting's count becomes its weight (`ChunkedInverter.
finish(weigh=...)`). Document lengths are appended to a scratch file and read back through a read-only map (page
cache, not the builder's own memory). What stays in memory grows with the distinct analysed words, not with
the documents: the vocabulary (a dictionary of terms, listed in the build's memory report) and per-term counts.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from engine import bm25
from engine.index_format import InvertedIndex, PartWriter
from engine.inversion import ChunkedInverter
from engine.manifest import PartInfo

# The `bm25` verb's default --memory-budget-mb (its postings buffer; the index build gives the field a share).
DEFAULT_MEMORY_BUDGET = 256 << 20
# Documents analysed between two hand-overs to the inverter (a small fixed buffer of term ids and counts).
FEED_DOCUMENTS = 256


class Bm25PartBuilder:
    """`open` a scratch directory, feed texts in document-number order (`add`), then `write` the part's files.

    A builder that is never opened opens a scratch directory of its own at the first `add`.
    """

    def __init__(self, k1: float = bm25.DEFAULT_K1, b: float = bm25.DEFAULT_B, analyzer: bm25.Analyzer | None = None,
                 impact_bits: int = 16) -> None:
        if not (k1 >= 0 and np.isfinite(k1)):
            raise ValueError(f"--bm25-k1 must be finite and >= 0, got {k1}")
        if not 0 <= b <= 1:
            raise ValueError(f"--bm25-b must be in [0, 1], got {b}")
        self.k1, self.b = float(k1), float(b)
        self.analyzer = analyzer or bm25.Analyzer()
        self.impact_bits = impact_bits
        self.vocabulary: dict[str, int] = {}
        self.num_documents = 0
        self.runs = 0            # inversion runs written (known once `write` is done)
        self._total_length = 0   # analysed terms over all documents (for avgdl)
        self._empty = 0          # documents without any analysed term
        self._inverter: ChunkedInverter | None = None
        self._lengths: _Int64File | None = None
        self._own_scratch: tempfile.TemporaryDirectory | None = None
        # Documents analysed since the last hand-over to the inverter: flat, no Python object per document.
        self._term_ids = array("I")
        self._counts = array("f")
        self._per_doc = array("q", [0])

    def open(self, scratch_dir: Path, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> Bm25PartBuilder:
        """Spill runs and document lengths under `scratch_dir`, buffering at most `memory_budget_bytes`."""
        scratch_dir = Path(scratch_dir)
        self._inverter = ChunkedInverter(scratch_dir / "runs", 1, memory_budget_bytes)
        self._lengths = _Int64File(scratch_dir / "lengths.i64")
        self._scratch_dir = scratch_dir
        return self

    @property
    def memory_budget_bytes(self) -> int:
        return self._inverter.memory_budget_bytes if self._inverter is not None else 0

    def add(self, text: str) -> None:
        if self._inverter is None:
            self._own_scratch = tempfile.TemporaryDirectory(prefix="bm25-build-")
            self.open(Path(self._own_scratch.name))
        counts = Counter(self.analyzer.terms(text)) if text else {}
        vocab = self.vocabulary
        self._term_ids.extend(vocab.setdefault(t, len(vocab)) for t in counts)
        self._counts.extend(counts.values())
        self._per_doc.append(self._per_doc[-1] + len(counts))
        length = sum(counts.values())
        self._lengths.append(length)
        self._total_length += length
        self._empty += length == 0
        self.num_documents += 1
        if len(self._per_doc) > FEED_DOCUMENTS:
            self._feed()

    def _feed(self) -> None:
        """Hand the documents analysed since the last call to the inverter (which buffers and spills runs)."""
        if len(self._per_doc) == 1:
            return
        self._inverter.extend_vocabulary(max(1, len(self.vocabulary)))
        self._inverter.add_csr(np.frombuffer(self._per_doc, dtype=np.int64),
                               np.frombuffer(self._term_ids, dtype=np.uint32).astype(np.int32),
                               np.frombuffer(self._counts, dtype=np.float32))
        self._term_ids, self._counts, self._per_doc = array("I"), array("f"), array("q", [0])

    def flush(self) -> None:
        """Spill what is buffered now (frees the buffer before another phase of the build needs the memory)."""
        if self._inverter is not None:
            self._feed()
            self._inverter.flush()

    def vocabulary_bytes(self) -> int:
        """An estimate of the vocabulary's memory: the dictionary and its term strings (the ids are small ints)."""
        return sys.getsizeof(self.vocabulary) + sum(map(sys.getsizeof, self.vocabulary))

    def discard(self) -> None:
        """Remove the scratch files (a build that writes no field)."""
        if self._inverter is not None:
            self._inverter.discard()
            self._lengths.close()
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
        if self._own_scratch is not None:
            self._own_scratch.cleanup()

    def write(self, directory: Path) -> tuple[str, PartInfo]:
        directory = Path(directory)
        if self._inverter is None:
            self.open(directory / "_bm25")
        self.flush()
        num_docs, vocab_size = self.num_documents, len(self.vocabulary)
        self._inverter.extend_vocabulary(max(1, vocab_size))
        lengths = self._lengths.close()
        try:
            avgdl = self._total_length / num_docs if num_docs and self._total_length > 0 else 1.0
            # Each (document, term) pair is one posting: a term's postings are its document frequency.
            idf = bm25.idf(num_docs, self._inverter.postings_per_term[:vocab_size])
            doc_lengths = np.memmap(lengths, dtype=np.int64, mode="r") if num_docs else np.zeros(0, np.int64)
            k1, b = self.k1, self.b

            def weigh(term_ids: np.ndarray, doc_numbers: np.ndarray, counts: np.ndarray) -> np.ndarray:
                return bm25.term_weights(counts, doc_lengths[doc_numbers], idf[term_ids], avgdl, k1, b)

            result = self._inverter.finish(directory, self.impact_bits, weigh=weigh,
                                           names=(bm25.OFFSETS, bm25.DOC_NUMBERS, bm25.IMPACTS))
            self.runs = result.runs
        finally:
            self.discard()
        if vocab_size == 0:  # no text at all: finish wrote one empty term; the field has none
            np.save(directory / bm25.OFFSETS, np.zeros(1, dtype=np.int64))
        terms_by_id = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (directory / bm25.VOCABULARY).write_text(json.dumps(terms_by_id, ensure_ascii=False), encoding="utf-8")
        plan = result.quantization
        params = {"k1": self.k1, "b": self.b, **self.analyzer.params(), "idf": "lucene",
                  "documents": num_docs, "avgdl": avgdl, "vocab_size": vocab_size, "postings": result.num_postings,
                  "dtype": plan.dtype, "scale": plan.scale, "max_weight": plan.max_weight,
                  "empty_documents": int(self._empty)}
        return bm25.PART, PartInfo(version=bm25.PART_VERSION, files=list(bm25.FILES), params=params)


class _Int64File:
    """Append-only int64 values on disk, written in blocks (one per document: its analysed length)."""

    BLOCK = 1 << 16

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "wb")
        self._block = array("q")

    def append(self, value: int) -> None:
        self._block.append(value)
        if len(self._block) >= self.BLOCK:
            self._write_block()

    def _write_block(self) -> None:
        self._handle.write(memoryview(self._block))
        self._block = array("q")

    def close(self) -> Path:
        if not self._handle.closed:
            self._write_block()
            self._handle.close()
        return self.path


def part_writer(texts_by_doc, k1: float = bm25.DEFAULT_K1, b: float = bm25.DEFAULT_B,
                memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> PartWriter:
    """A writer for engine.index_format.add_parts; `texts_by_doc(index)` yields each document's text in order."""
    def write(index: InvertedIndex, staged: Path) -> tuple[str, PartInfo]:
        builder = Bm25PartBuilder(k1, b).open(staged / "_bm25", memory_budget_bytes)
        for text in texts_by_doc(index):
            builder.add(text)
        if builder.num_documents != index.num_documents:
            builder.discard()
            raise ValueError(f"BM25: {builder.num_documents} texts for {index.num_documents} documents")
        return builder.write(staged)
    return write


def texts_from_store(index: InvertedIndex):
    if index.manifest.get("document_store") is not True:
        raise ValueError(f"{index.path}: no document store; give --corpus (the corpus the index was built from)")
    for doc in range(index.num_documents):
        stored = index.document(doc) or {}
        yield (stored.get("title", "") + " " + stored.get("text", "")).strip()
