"""Build an index straight from a CSR matrix of document vectors (no encoder): benchmarks and tests use it.

The same inversion, quantization, format and atomic write as `build`; ids default to the row numbers.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine import index_format, passages
from index_builder.build import index_manifest
from engine.inversion import ChunkedInverter
from index_builder.metadata_part import BUDGET_SHARE, metadata_writer


def build_index_from_csr(out: str | Path, indptr: np.ndarray, term_ids: np.ndarray, weights: np.ndarray, *,
                         vocab_size: int, tokenizer_sha256: str = "none", ids: Sequence[str] | None = None,
                         documents: Sequence[dict[str, str]] | None = None, impact_bits: int = 8,
                         impact_scale: float | None = None, memory_budget_mb: int = 1024, chunk_documents: int = 65536,
                         metadata: Sequence[Mapping[str, Any] | None] | None = None,
                         metadata_schema: dict[str, str] | None = None,
                         document_of_row: np.ndarray | None = None, **fields: Any) -> dict[str, Any]:
    """`metadata` (one object or None per document) adds the `metadata` part (engine.metadata).
    `document_of_row` (non-decreasing, every document at least once) makes the rows passages of a passage
    index (engine.passages): ids and `documents` are then per document, and the passages part is written."""
    started = time.time()
    indptr = np.asarray(indptr, dtype=np.int64)
    num_rows = len(indptr) - 1
    num_docs = num_rows if document_of_row is None else int(np.max(document_of_row, initial=-1)) + 1
    if ids is not None and len(ids) != num_docs:
        raise ValueError(f"{len(ids)} ids for {num_docs} documents")
    if ids is not None and len(set(ids)) != num_docs:
        raise ValueError("duplicate document ids")
    with index_format.atomic_index_dir(out) as staged:
        inverter = ChunkedInverter(staged / "_runs", vocab_size, memory_budget_mb << 20)
        id_writer = index_format.StringTableWriter(staged, index_format.IDS)
        store = index_format.StringTableWriter(staged, index_format.DOCUMENTS) if documents is not None else None
        for lo in range(0, num_rows, chunk_documents):
            hi = min(lo + chunk_documents, num_rows)
            start, end = indptr[lo], indptr[hi]
            inverter.add_csr(indptr[lo:hi + 1] - start, term_ids[start:end], weights[start:end])
        for i in range(num_docs):
            id_writer.append(str(i) if ids is None else ids[i])
            if store is not None:
                store.append(json.dumps(documents[i], ensure_ascii=False))
        id_writer.close()
        if store is not None:
            store.close()
        result = inverter.finish(staged, impact_bits, impact_scale)
        if metadata is not None:
            if len(metadata) != num_docs:
                raise ValueError(f"{len(metadata)} metadata objects for {num_docs} documents")
            writer = metadata_writer(staged, metadata_schema, (memory_budget_mb << 20) // BUDGET_SHARE)
            for i, values in enumerate(metadata):
                writer.add(str(i) if ids is None else ids[i], values)
            name, info = writer.write(staged)
            fields.setdefault("parts", {})[name] = info.model_dump(mode="json")
        empty = int(np.count_nonzero(np.diff(indptr) == 0))
        fields.setdefault("build", {"memory_budget_mb": memory_budget_mb, "inversion_runs": result.runs})
        manifest = index_manifest(result, started, vocab_size, tokenizer_sha256, empty,
                                  document_store=store is not None, **fields)
        if document_of_row is not None:
            rows = np.arange(num_rows)
            name, info = passages.write_part(staged, document_of_row, rows, rows + 1, num_docs, {"source": "csr"})
            manifest["parts"] = {**manifest["parts"], name: info.model_dump(mode="json")}
            manifest["counts"].update(documents=num_docs, passages=num_rows)
        return index_format.write_manifest(staged, manifest)
