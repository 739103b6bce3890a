"""Document-ordered sparse vectors -> term-ordered postings, in memory bounded by a budget.

Documents arrive in document-number order as CSR batches. Postings are buffered until the buffer would exceed
the memory budget, then sorted by term (stably, so document numbers stay ascending within a term) and written
as a run: per-term counts, document numbers and float weights, as raw files. `finish` plans the quantization
from the collection's maximum weight and writes the output term range by term range: each range holds at most
a budget's worth of postings, gathered from every run (runs hold consecutive document ranges in order, so
appending each run's segment of a term after the previous runs' keeps its document numbers ascending),
quantized, and appended to doc_numbers.npy and impacts.npy with plain sequential writes. Nothing is memory-
mapped for writing, so the output files never count in the process's resident memory; a term with more
postings than a range holds is streamed run by run.
Peak memory is about `BYTES_PER_BUFFERED_POSTING` x the run size, set by `memory_budget_bytes`, plus
O(vocabulary) (the per-term counts) and O(runs) (one cursor per run), in both phases.

Two uses: the SPLADE postings (a fixed vocabulary, weights known as they arrive) and the BM25 field
(index_builder.bm25_part: a vocabulary that grows as texts are analysed, `extend_vocabulary`, and weights that
need the whole collection's statistics: the runs hold term counts and `finish(weigh=...)` turns them into
weights once every document is in, in slices of `WEIGH_SLICE` postings).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import index_format
from engine.arrays import open_for_append
from engine.impacts import IMPACT_BITS, Quantization, fixed_quantization, plan_quantization, quantize, quantize_saturating

# Buffering: term id + doc number + weight (12 B), the argsort permutation (8 B) and the sorted copies (12 B).
# Merging: the range's doc numbers + weights (8 B), and per run its destinations (16 B) and segment (8 B), or
# while quantizing the float64 levels (16 B) and the impacts (<= 2 B). That is 32 B; measured peaks of builds
# with several runs were 40-45 B per buffered posting (the heap does not reuse every freed block), hence 40.
BYTES_PER_BUFFERED_POSTING = 40
# Postings weighed at once by `finish(weigh=...)`: its float64 temporaries (~50 B a posting for BM25) stay at a
# few MiB whatever the range size.
WEIGH_SLICE = 1 << 16

# weigh(term_ids, doc_numbers, values) -> float64 weights of those postings (values as they were added).
Weigh = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Run:
    counts: Path
    doc_numbers: Path
    weights: Path
    postings: int
    terms: int  # length of the counts file: the vocabulary size when the run was written


@dataclass(frozen=True)
class InversionResult:
    num_documents: int
    num_postings: int
    terms_with_postings: int
    quantization: Quantization
    runs: int
    saturated_postings: int = 0  # only with a fixed impact scale: weights above its range, stored at the top


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
        self._weigh: Weigh | None = None
        self._counts = np.zeros(self.vocab_size, dtype=np.int64)  # postings per term over all runs

    def extend_vocabulary(self, vocab_size: int) -> None:
        """Allow term ids up to `vocab_size` - 1 from now on (a vocabulary that grows as documents arrive)."""
        if vocab_size > self.vocab_size:
            self._counts = np.concatenate([self._counts, np.zeros(vocab_size - self.vocab_size, np.int64)])
            self.vocab_size = int(vocab_size)

    @property
    def postings_per_term(self) -> np.ndarray:
        """Postings of each term in the runs written so far (call `flush` first to count every document)."""
        return self._counts

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

    @property
    def memory_budget_bytes(self) -> int:
        return self.run_capacity * BYTES_PER_BUFFERED_POSTING

    def flush(self) -> None:
        """Write the buffered postings as a run now (e.g. to free the buffer before another phase needs memory)."""
        self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        term_ids = np.concatenate(self._term_ids)
        self._term_ids = []
        order = np.argsort(term_ids, kind="stable")
        counts = np.bincount(term_ids, minlength=self.vocab_size).astype(np.int64)
        del term_ids
        stem = self.scratch_dir / f"run-{len(self._runs):05d}"
        run = _Run(Path(f"{stem}.counts"), Path(f"{stem}.docs"), Path(f"{stem}.weights"), int(counts.sum()),
                   self.vocab_size)
        counts.tofile(run.counts)
        np.concatenate(self._doc_numbers)[order].tofile(run.doc_numbers)
        self._doc_numbers = []
        np.concatenate(self._weights)[order].tofile(run.weights)
        self._counts += counts
        self._runs.append(run)
        self._weights, self._buffered = [], 0

    def finish(self, out_dir: Path, impact_bits: int = 8, impact_scale: float | None = None, *,
               weigh: Weigh | None = None,
               names: tuple[str, str, str] = (index_format.OFFSETS, index_format.DOC_NUMBERS, index_format.IMPACTS)
               ) -> InversionResult:
        """Merge the runs into the offsets, doc numbers and impacts files (`names`) in `out_dir`; remove the runs.

        `weigh` turns the added values into the weights that are quantized (default: the values themselves);
        with it, a first pass over the runs finds the largest weight for the quantization plan.
        `impact_scale` fixes the scale (`build --impact-scale`, what a segmented index's added segments use):
        weights above its range saturate at the largest impact and are counted, instead of an error.
        """
        self._flush()
        self._weigh = weigh
        self.saturated = 0
        if impact_scale is None:
            plan = plan_quantization(self.max_weight if weigh is None else self._largest_weight(), impact_bits)
        else:
            if impact_bits not in IMPACT_BITS:
                raise ValueError(f"impact bits must be one of {sorted(IMPACT_BITS)}, got {impact_bits}")
            plan = fixed_quantization(impact_scale, np.dtype(IMPACT_BITS[impact_bits]).name)
        counts = self._counts
        offsets = np.zeros(self.vocab_size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        num_postings = int(offsets[-1])
        offsets_name, doc_numbers_name, impacts_name = names
        np.save(Path(out_dir) / offsets_name, offsets)
        doc_out = open_for_append(out_dir, doc_numbers_name, np.uint32, num_postings)
        impact_out = open_for_append(out_dir, impacts_name, plan.dtype, num_postings)
        try:
            cursors = [0] * len(self._runs)  # postings of each run already merged
            capacity = self.run_capacity
            first = 0
            while first < self.vocab_size:
                # The largest term range [first, last) whose postings fit one range buffer; at least one term.
                last = int(np.searchsorted(offsets, offsets[first] + capacity, side="right")) - 1
                last = min(max(last, first + 1), self.vocab_size)
                if offsets[last] - offsets[first] > capacity:
                    self._stream_term(first, cursors, plan, doc_out, impact_out)
                else:
                    self._merge_range(first, last, offsets, cursors, plan, doc_out, impact_out)
                first = last
        finally:
            doc_out.close()
            impact_out.close()
        for run in self._runs:
            for path in (run.counts, run.doc_numbers, run.weights):
                path.unlink()
        shutil.rmtree(self.scratch_dir, ignore_errors=True)
        return InversionResult(self.num_documents, num_postings, int(np.count_nonzero(counts)), plan,
                               len(self._runs), self.saturated)

    def _quantize(self, weights: np.ndarray, plan: Quantization) -> np.ndarray:
        if plan.method != "fixed":
            return quantize(weights, plan)
        impacts, saturated = quantize_saturating(weights, plan)
        self.saturated += saturated
        return impacts

    def discard(self) -> None:
        """Remove the runs without writing anything (nothing to finish)."""
        self._term_ids, self._doc_numbers, self._weights, self._buffered = [], [], [], 0
        shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def _largest_weight(self) -> float:
        """The largest `weigh`ed weight over every run, read a slice at a time."""
        largest = 0.0
        for run in self._runs:
            starts = np.zeros(run.terms + 1, dtype=np.int64)
            np.cumsum(_read(run.counts, np.int64, 0, run.terms), out=starts[1:])
            for start in range(0, run.postings, WEIGH_SLICE):
                take = min(WEIGH_SLICE, run.postings - start)
                terms = np.searchsorted(starts, np.arange(start, start + take), side="right") - 1
                weights = self._weigh(terms, _read(run.doc_numbers, np.uint32, start, take),
                                      _read(run.weights, np.float32, start, take))
                largest = max(largest, float(weights.max()))
        return largest

    def _impacts(self, terms_from: int, starts: np.ndarray | None, doc_numbers: np.ndarray, values: np.ndarray,
                 plan: Quantization) -> np.ndarray:
        """Quantized impacts of consecutive postings; `starts` (cumulative, from 0) gives each posting's term
        as `terms_from` + its index, or None for postings of the one term `terms_from`."""
        if self._weigh is None:
            return self._quantize(values, plan)
        impacts = np.empty(len(values), dtype=plan.dtype)
        for start in range(0, len(values), WEIGH_SLICE):
            stop = min(start + WEIGH_SLICE, len(values))
            if starts is None:
                terms = np.full(stop - start, terms_from, dtype=np.int64)
            else:
                terms = terms_from + np.searchsorted(starts, np.arange(start, stop), side="right") - 1
            impacts[start:stop] = self._quantize(self._weigh(terms, doc_numbers[start:stop], values[start:stop]),
                                                 plan)
        return impacts

    def _merge_range(self, first: int, last: int, offsets: np.ndarray, cursors: list[int], plan: Quantization,
                     doc_out, impact_out) -> None:
        """Terms [first, last): gather every run's segment into place, quantize, append to the outputs."""
        size = int(offsets[last] - offsets[first])
        if size == 0:
            return
        range_offsets = offsets[first:last] - offsets[first]
        doc_numbers = np.empty(size, dtype=np.uint32)
        weights = np.empty(size, dtype=np.float32)
        written = np.zeros(last - first, dtype=np.int64)  # postings of each term placed by earlier runs
        for r, run in enumerate(self._runs):
            run_counts = _run_counts(run, first, last - first)
            taken = int(run_counts.sum())
            if not taken:
                continue
            run_offsets = np.zeros(last - first, dtype=np.int64)
            np.cumsum(run_counts[:-1], out=run_offsets[1:])
            # Posting i of the segment, of term t, goes to range_offsets[t] + written[t] + (i - run_offsets[t]).
            destination = np.arange(taken, dtype=np.int64)
            destination += np.repeat(range_offsets + written - run_offsets, run_counts)
            doc_numbers[destination] = _read(run.doc_numbers, np.uint32, cursors[r], taken)
            weights[destination] = _read(run.weights, np.float32, cursors[r], taken)
            del destination
            written += run_counts
            cursors[r] += taken
        doc_out.write(memoryview(doc_numbers))
        if self._weigh is None:
            del doc_numbers
            impact_out.write(memoryview(self._quantize(weights, plan)))
            return
        range_starts = np.zeros(last - first + 1, dtype=np.int64)
        range_starts[1:] = offsets[first + 1:last + 1] - offsets[first]
        impact_out.write(memoryview(self._impacts(first, range_starts, doc_numbers, weights, plan)))

    def _stream_term(self, term: int, cursors: list[int], plan: Quantization, doc_out, impact_out) -> None:
        """One term with more postings than a range holds: each run's segment in order, in pieces."""
        for r, run in enumerate(self._runs):
            remaining = int(_run_counts(run, term, 1)[0])
            while remaining:
                take = min(remaining, self.run_capacity)
                doc_numbers = _read(run.doc_numbers, np.uint32, cursors[r], take)
                doc_out.write(memoryview(doc_numbers))
                values = _read(run.weights, np.float32, cursors[r], take)
                impact_out.write(memoryview(self._impacts(term, None, doc_numbers, values, plan)))
                cursors[r] += take
                remaining -= take


def _run_counts(run: _Run, first: int, count: int) -> np.ndarray:
    """Postings of terms [first, first + count) in a run; 0 for terms the vocabulary gained after it was written."""
    available = max(0, min(count, run.terms - first))
    counts = _read(run.counts, np.int64, first, available)
    return counts if available == count else np.concatenate([counts, np.zeros(count - available, np.int64)])


def _read(path: Path, dtype, start: int, count: int) -> np.ndarray:
    """Elements [start, start + count) of a raw scratch file (a plain read: nothing stays mapped)."""
    dtype = np.dtype(dtype)
    values = np.fromfile(path, dtype=dtype, count=count, offset=start * dtype.itemsize)
    if len(values) != count:
        raise OSError(f"{path}: truncated inversion run ({len(values)} of {count} values at {start})")
    return values

