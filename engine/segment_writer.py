"""Writing segments: a new segment from document vectors, and a merged segment from adjacent segments.

Both write today's index format (engine.index_format) through `atomic_index_dir`, so a segment is complete,
fsynced and checksum-validated before its directory exists under its name, and every reader, part writer and
scorer works on it unchanged. Both quantize with the index's fixed plan (engine.impacts.fixed_quantization):
impact = clip(rint(weight / scale), 1, max_impact), the same rule `build --impact-scale` uses, so a segment's
impacts equal those a from-scratch build with that scale gives the same documents.

Memory: `write_segment` holds its documents' postings (~32 bytes each while sorting); the writer (engine.lifecycle)
cuts a new segment whenever its buffer reaches the memory budget. `merge_segments` streams term ranges of at
most `memory_budget_bytes / 32` postings and holds 8 bytes per source document (the renumbering), never the
postings of a whole segment.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engine import index_format
from engine.arrays import open_for_append
from engine.impacts import Quantization, quantize_saturating
from engine.index_format import InvertedIndex
from engine.manifest import DEFAULT_SCORER

BYTES_PER_MERGED_POSTING = 32
IDS_CHUNK = 1 << 16


def _manifest(*, started: float, vocab_size: int, tokenizer_sha256: str, documents: int, postings: int,
              terms: int, empty: int, plan: Quantization, max_weight: float, document_store: bool,
              default_scorer: str, **fields: Any) -> dict[str, Any]:
    quantization = {"dtype": plan.dtype, "scale": plan.scale, "max_impact": plan.max_impact,
                    "max_weight": float(max_weight), "method": "fixed", "min_impact": plan.min_impact}
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.time() - started, 3),
        "vocab_size": int(vocab_size), "tokenizer_sha256": tokenizer_sha256,
        "counts": {"documents": int(documents), "postings": int(postings), "terms_with_postings": int(terms),
                   "empty_documents": int(empty),
                   "mean_terms_per_document": round(postings / max(documents, 1), 3)},
        "quantization": quantization, "document_store": bool(document_store), "parts": {},
        "default_scorer": default_scorer, **fields,
    }


def write_segment(out: Path, vectors: Sequence[tuple[np.ndarray, np.ndarray]], ids: Sequence[str],
                  documents: Sequence[dict[str, str] | None] | None, *, vocab_size: int, tokenizer_sha256: str,
                  plan: Quantization, default_scorer: str = DEFAULT_SCORER, **fields: Any) -> tuple[dict, int]:
    """Write one segment of `vectors` (term ids int32, weights float32 > 0, per document, in order) with `ids`
    and optional stored {"title", "text"}; returns (manifest, postings saturated by the fixed scale)."""
    started = time.time()
    lengths = np.fromiter((len(t) for t, _ in vectors), dtype=np.int64, count=len(vectors))
    term_ids = (np.concatenate([np.asarray(t, np.int32) for t, _ in vectors]) if lengths.sum()
                else np.zeros(0, np.int32))
    weights = (np.concatenate([np.asarray(w, np.float32) for _, w in vectors]) if lengths.sum()
               else np.zeros(0, np.float32))
    if len(term_ids) and (term_ids.min() < 0 or term_ids.max() >= vocab_size):
        raise ValueError(f"term id outside the vocabulary [0, {vocab_size})")
    doc_numbers = np.repeat(np.arange(len(vectors), dtype=np.uint32), lengths)
    order = np.argsort(term_ids, kind="stable")  # documents stay ascending within a term
    counts = np.bincount(term_ids, minlength=vocab_size).astype(np.int64)
    offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    impacts, saturated = quantize_saturating(weights[order], plan)
    store = documents is not None and any(d and (d.get("title") or d.get("text")) for d in documents)
    with index_format.atomic_index_dir(out) as staged:
        np.save(staged / index_format.OFFSETS, offsets)
        np.save(staged / index_format.DOC_NUMBERS, doc_numbers[order])
        np.save(staged / index_format.IMPACTS, impacts)
        id_writer = index_format.StringTableWriter(staged, index_format.IDS)
        for doc_id in ids:
            id_writer.append(doc_id)
        id_writer.close()
        if store:
            writer = index_format.StringTableWriter(staged, index_format.DOCUMENTS)
            for doc in documents:
                doc = doc or {}
                writer.append(json.dumps({"title": doc.get("title", ""), "text": doc.get("text", "")},
                                         ensure_ascii=False))
            writer.close()
        manifest = _manifest(started=started, vocab_size=vocab_size, tokenizer_sha256=tokenizer_sha256,
                             documents=len(vectors), postings=len(term_ids), terms=int(np.count_nonzero(counts)),
                             empty=int(np.count_nonzero(lengths == 0)), plan=plan,
                             max_weight=float(weights.max()) if len(weights) else 0.0, document_store=store,
                             default_scorer=default_scorer, **fields)
        manifest = index_format.write_manifest(staged, manifest)
    return manifest, saturated


def merge_segments(out: Path, sources: Sequence[tuple[InvertedIndex, np.ndarray | None]], *, plan: Quantization,
                   default_scorer: str = DEFAULT_SCORER, memory_budget_bytes: int = 256 << 20,
                   **fields: Any) -> tuple[dict, int]:
    """Merge adjacent segments (in order) into one at `out`, dropping deleted documents (`deleted` mask per
    source, None: none). Impacts are copied when a source's scale and dtype are the index's, re-quantized
    (weight = impact x source scale) otherwise. Returns (manifest, postings saturated by re-quantization)."""
    started = time.time()
    first = sources[0][0]
    vocab_size = first.vocab_size
    renumber, base = [], 0
    for index, deleted in sources:
        live = np.ones(index.num_documents, dtype=bool) if deleted is None else ~deleted
        new = np.cumsum(live, dtype=np.int64) - 1 + base
        new[~live] = -1
        renumber.append(new)
        base += int(live.sum())
    num_docs = base
    capacity = max(1024, memory_budget_bytes // BYTES_PER_MERGED_POSTING)

    def ranges():
        """Term ranges [lo, hi) whose postings (over all sources) fit the budget; at least one term each."""
        total = sum(np.asarray(index.offsets, dtype=np.int64) for index, _ in sources)
        lo = 0
        while lo < vocab_size:
            hi = int(np.searchsorted(total, total[lo] + capacity, side="right")) - 1
            hi = min(max(hi, lo + 1), vocab_size)
            yield lo, hi
            lo = hi

    def range_postings(lo: int, hi: int):
        """(term, new doc, impact) of live postings of terms [lo, hi), term-major, documents ascending."""
        terms, docs, impacts = [], [], []
        saturated = 0
        for (index, _), new in zip(sources, renumber):
            start, end = int(index.offsets[lo]), int(index.offsets[hi])
            if start == end:
                continue
            local = np.asarray(index.doc_numbers[start:end])
            mapped = new[local]
            keep = mapped >= 0
            term = np.repeat(np.arange(lo, hi, dtype=np.int32), np.diff(np.asarray(index.offsets[lo:hi + 1])))
            imp = np.asarray(index.impacts[start:end])[keep]
            if index.scale != plan.scale or imp.dtype != np.dtype(plan.dtype):
                imp, more = quantize_saturating(imp.astype(np.float64) * index.scale, plan)
                saturated += more
            terms.append(term[keep])
            docs.append(mapped[keep])
            impacts.append(imp)
        if not terms:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, plan.dtype), 0
        term = np.concatenate(terms)
        order = np.argsort(term, kind="stable")  # sources in order: documents ascending within a term
        return term[order], np.concatenate(docs)[order], np.concatenate(impacts)[order].astype(plan.dtype), saturated

    counts = np.zeros(vocab_size, dtype=np.int64)
    for lo, hi in ranges():
        term, _, _, _ = range_postings(lo, hi)
        counts += np.bincount(term, minlength=vocab_size)
    offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    num_postings = int(offsets[-1])
    saturated = 0
    max_impact = 0
    with index_format.atomic_index_dir(out) as staged:
        np.save(staged / index_format.OFFSETS, offsets)
        doc_out = open_for_append(staged, index_format.DOC_NUMBERS, np.uint32, num_postings)
        impact_out = open_for_append(staged, index_format.IMPACTS, np.dtype(plan.dtype), num_postings)
        try:
            for lo, hi in ranges():
                _, docs, impacts, more = range_postings(lo, hi)
                saturated += more
                if len(impacts):
                    max_impact = max(max_impact, int(impacts.max()))
                doc_out.write(memoryview(docs.astype(np.uint32)))
                impact_out.write(memoryview(np.ascontiguousarray(impacts)))
        finally:
            doc_out.close()
            impact_out.close()
        store = any(index.typed_manifest.document_store for index, _ in sources)
        id_writer = index_format.StringTableWriter(staged, index_format.IDS)
        doc_writer = index_format.StringTableWriter(staged, index_format.DOCUMENTS) if store else None
        empty = 0
        for (index, deleted), new in zip(sources, renumber):
            live = np.flatnonzero(new >= 0)
            lengths = np.zeros(index.num_documents, np.int64)
            for lo in range(0, index.num_postings, capacity):  # postings per document, read in chunks
                lengths += np.bincount(np.asarray(index.doc_numbers[lo:lo + capacity]), minlength=index.num_documents)
            empty += int(np.count_nonzero(lengths[live] == 0))
            for lo in range(0, len(live), IDS_CHUNK):
                chunk = live[lo:lo + IDS_CHUNK]
                for doc_id in index.external_ids(chunk):
                    id_writer.append(doc_id)
                if doc_writer is not None:
                    for doc in chunk.tolist():
                        stored = index.document(doc) or {"title": "", "text": ""}
                        doc_writer.append(json.dumps(stored, ensure_ascii=False))
        id_writer.close()
        if doc_writer is not None:
            doc_writer.close()
        manifest = _manifest(started=started, vocab_size=vocab_size, tokenizer_sha256=first.tokenizer_sha256,
                             documents=num_docs, postings=num_postings, terms=int(np.count_nonzero(counts)),
                             empty=empty, plan=plan, max_weight=max_impact * plan.scale, document_store=store,
                             default_scorer=default_scorer, **fields)
        manifest = index_format.write_manifest(staged, manifest)
    return manifest, saturated

