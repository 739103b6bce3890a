"""Document-ordered sparse vectors -> term-ordered postings, in memory bounded by a budget.

Documents arrive in document-number order as CSR batches. Postings are buffered until the buffer would exceed
the memory budget, then sorted by term (stably, so document numbers stay ascending within a term) and written
as a run: per-term counts, document numbers and float weights. `finish` sums the per-term counts into the final
offsets, plans the quantization from the collection's maximum weight, and scatters each run into its place in
the memory-mapped output arrays. Runs hold consecutive document ranges in order, so appending each run's
segment of a term after the previous runs' keeps the term's document numbers ascending.
Peak memory is about `BYTES_PER_BUFFERED_POSTING` x the run size, set by `memory_budget_bytes`.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import index_format
from engine.impacts import Quantization, plan_quantization, quantize

# Buffered term id + doc number + weight (12 B), the argsort permutation (8 B) and the sorted copies (12 B).
BYTES_PER_BUFFERED_POSTING = 32


@dataclass(frozen=True)
class _Run:
    counts: Path
    doc_numbers: Path
    weights: Path
    postings: int


@dataclass(frozen=True)
class InversionResult:
    num_documents: int
    num_postings: int
    terms_with_postings: int
    quantization: Quantization
    runs: int


class ChunkedInverter:
    def __init__(self, scratch_dir: Path, vocab_size: int, memory_budget_bytes: int = 1 << 30) -> None:
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be > 0, got {vocab_size}")
        self.scratch_dir = Path(scratch_dir)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        self.vocab_size = int(vocab_size)
        self.run_capacity = max(1024, int(memory_budget_bytes) // BYTES_PER_BUFFERED_POSTING)
        self.num_documents = 0
        self.max_weight = 0.0
        self._term_ids: list[np.ndarray] = []
        self._doc_numbers: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._buffered = 0
        self._runs: list[_Run] = []

    def add_documents(self, vectors: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Append documents (term ids, weights) in order; they get the next document numbers."""
        lengths = np.fromiter((len(ids) for ids, _ in vectors), dtype=np.int64, count=len(vectors))
        indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if indptr[-1]:
            term_ids = np.concatenate([np.asarray(ids, dtype=np.int32) for ids, _ in vectors])
            weights = np.concatenate([np.asarray(w, dtype=np.float32) for _, w in vectors])
        else:
            term_ids, weights = np.zeros(0, np.int32), np.zeros(0, np.float32)
        self.add_csr(indptr, term_ids, weights)

    def add_csr(self, indptr: np.ndarray, term_ids: np.ndarray, weights: np.ndarray) -> None:
        """Append a CSR batch of documents: document i has term_ids[indptr[i]:indptr[i+1]]."""
        indptr = np.asarray(indptr, dtype=np.int64)
        term_ids = np.asarray(term_ids, dtype=np.int32)
        weights = np.asarray(weights, dtype=np.float32)
        num_docs = len(indptr) - 1
        if len(term_ids) != len(weights) or indptr[-1] != len(term_ids):
            raise ValueError("CSR batch: indptr, term_ids and weights disagree in length")
        if self.num_documents + num_docs > index_format.MAX_DOCUMENTS:
            raise ValueError(f"more than {index_format.MAX_DOCUMENTS} documents: the index format's limit")
        if len(term_ids):
            if term_ids.min() < 0 or term_ids.max() >= self.vocab_size:
                bad = int(term_ids[(term_ids < 0) | (term_ids >= self.vocab_size)][0])
                raise ValueError(f"term id {bad} outside the vocabulary [0, {self.vocab_size})")
            if not np.all(np.isfinite(weights)) or weights.min() <= 0:
                raise ValueError("document weights must be finite and > 0")
            self.max_weight = max(self.max_weight, float(weights.max()))
        doc_numbers = np.repeat(np.arange(self.num_documents, self.num_documents + num_docs, dtype=np.uint32),
                                np.diff(indptr))
        self.num_documents += num_docs
        # Split the batch so that no run exceeds its capacity, whatever the batch size.
        start = 0
        while start < len(term_ids):
            take = min(len(term_ids) - start, self.run_capacity - self._buffered)
            self._term_ids.append(term_ids[start:start + take])
            self._doc_numbers.append(doc_numbers[start:start + take])
            self._weights.append(weights[start:start + take])
            self._buffered += take
            start += take
            if self._buffered >= self.run_capacity:
                self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        term_ids = np.concatenate(self._term_ids)
        order = np.argsort(term_ids, kind="stable")
        counts = np.bincount(term_ids, minlength=self.vocab_size).astype(np.int64)
        stem = self.scratch_dir / f"run-{len(self._runs):05d}"
        run = _Run(Path(f"{stem}.counts.npy"), Path(f"{stem}.docs.npy"), Path(f"{stem}.weights.npy"), len(term_ids))
        np.save(run.counts, counts)
        np.save(run.doc_numbers, np.concatenate(self._doc_numbers)[order])
        np.save(run.weights, np.concatenate(self._weights)[order])
        self._runs.append(run)
        self._term_ids, self._doc_numbers, self._weights, self._buffered = [], [], [], 0

    def finish(self, out_dir: Path, impact_bits: int = 8) -> InversionResult:
        """Merge the runs into offsets.npy, doc_numbers.npy and impacts.npy in `out_dir`; remove the runs."""
        self._flush()
        plan = plan_quantization(self.max_weight, impact_bits)
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for run in self._runs:
            counts += np.load(run.counts)
        offsets = np.zeros(self.vocab_size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        num_postings = int(offsets[-1])
        np.save(Path(out_dir) / index_format.OFFSETS, offsets)
        doc_numbers = index_format.create_array(out_dir, index_format.DOC_NUMBERS, np.uint32, num_postings)
        impacts = index_format.create_array(out_dir, index_format.IMPACTS, plan.dtype, num_postings)
        written = np.zeros(self.vocab_size, dtype=np.int64)  # postings of each term placed by earlier runs
        for run in self._runs:
            run_counts = np.load(run.counts)
            run_offsets = np.zeros(self.vocab_size + 1, dtype=np.int64)
            np.cumsum(run_counts, out=run_offsets[1:])
            # Posting i of the run, of term t, goes to offsets[t] + written[t] + (i - run_offsets[t]).
            shift = offsets[:-1] + written - run_offsets[:-1]
            destination = np.repeat(shift, run_counts) + np.arange(run.postings, dtype=np.int64)
            doc_numbers[destination] = np.load(run.doc_numbers)
            impacts[destination] = quantize(np.load(run.weights), plan)
            written += run_counts
            del destination
            for path in (run.counts, run.doc_numbers, run.weights):
                path.unlink()
        doc_numbers.flush()
        impacts.flush()
        del doc_numbers, impacts
        shutil.rmtree(self.scratch_dir, ignore_errors=True)
        return InversionResult(self.num_documents, num_postings, int(np.count_nonzero(counts)), plan,
                               len(self._runs))
