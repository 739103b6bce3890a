"""`python -m index_builder shard`: split a built index into N shards by document range, atomically.

Each shard is a complete index (engine.open_index opens it, every scorer that needs no optional part serves it)
holding the documents [first_document, first_document + documents) of the source, numbered from 0. Impacts and
the quantization scale are copied unchanged, so a shard scores its documents exactly as the whole index does;
a merge that breaks score ties by the global number (first_document + local number) therefore reproduces the
whole index's ranking, tie rule included (engine/topk.py: score descending, then the lower document number).

Layout of the output directory (written as one unit: a failed split leaves the previous one):

    shards.json       {"partition": "range", "count": N, "total_documents": D, "source": {...},
                       "shards": [{"dir": "shard-0", "number": 0, "first_document": 0, "documents": n0}, ...]}
    shard-<i>/        an index; its manifest's `shard` key repeats its own entry plus count and total

Optional parts (BM25 field, scorer parts) and tuned configurations describe the whole collection (BM25's
statistics, recall measured on all documents), so they are not copied: shards serve the SPLADE field.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import storage
from engine import passages, scorers
from engine.commit import COMMIT, read_commit
from engine.errors import IndexFormatError
from engine.index_format import (DOC_NUMBERS, IMPACTS, OFFSETS, InvertedIndex, StringTableWriter, atomic_index_dir,
                                 create_array, open_index, write_manifest)
from engine.manifest import DEFAULT_SCORER

SHARDS_FILE = "shards.json"
PARTITION = "range"
# Postings copied at a time: memory stays O(chunk) per array, whatever the index size.
COPY_CHUNK = 1 << 22


def shard_bounds(num_documents: int, count: int) -> list[tuple[int, int]]:
    """[first, end) document ranges of `count` shards, sizes differing by at most one document."""
    if count < 1:
        raise ValueError(f"--shards must be >= 1, got {count}")
    if count > max(num_documents, 1):
        raise ValueError(f"--shards {count} exceeds the {num_documents} documents of the index (limit {num_documents})")
    edges = [num_documents * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _shard_postings(index: InvertedIndex, first: int, end: int, staged: Path) -> tuple[np.ndarray, int]:
    """Write offsets/doc_numbers/impacts of documents [first, end) renumbered from 0; (per-document term
    counts, postings written)."""
    in_range_per_term = np.zeros(index.vocab_size + 1, dtype=np.int64)
    total = index.num_postings
    # Pass 1: how many postings of each term fall in the range (chunked over the postings).
    term_starts = np.asarray(index.offsets)
    for lo in range(0, total, COPY_CHUNK):
        hi = min(lo + COPY_CHUNK, total)
        docs = np.asarray(index.doc_numbers[lo:hi])
        keep = np.flatnonzero((docs >= first) & (docs < end)) + lo
        terms = np.searchsorted(term_starts, keep, side="right") - 1
        np.add.at(in_range_per_term, terms + 1, 1)
    offsets = np.cumsum(in_range_per_term)
    count = int(offsets[-1])
    np.save(staged / OFFSETS, offsets.astype(np.int64))
    out_docs = create_array(staged, DOC_NUMBERS, np.uint32, count)
    out_impacts = create_array(staged, IMPACTS, index.impacts.dtype, count)
    terms_per_document = np.zeros(end - first, dtype=np.int64)
    # Pass 2: copy them in the same order (term by term, documents ascending within a term).
    written = 0
    for lo in range(0, total, COPY_CHUNK):
        hi = min(lo + COPY_CHUNK, total)
        docs = np.asarray(index.doc_numbers[lo:hi])
        keep = (docs >= first) & (docs < end)
        local = (docs[keep] - first).astype(np.uint32)
        n = len(local)
        out_docs[written:written + n] = local
        out_impacts[written:written + n] = np.asarray(index.impacts[lo:hi])[keep]
        terms_per_document += np.bincount(local, minlength=end - first)
        written += n
    out_docs.flush()
    out_impacts.flush()
    del out_docs, out_impacts
    return terms_per_document, count


def _copy_strings(index: InvertedIndex, first: int, end: int, staged: Path) -> None:
    ids = StringTableWriter(staged, "ids")
    for doc_id in index.external_ids(np.arange(first, end)):
        ids.append(doc_id)
    ids.close()
    if index.typed_manifest.document_store:
        documents = StringTableWriter(staged, "documents")
        for number in range(first, end):
            documents.append(json.dumps(index.document(number), ensure_ascii=False))
        documents.close()


def _shard_manifest(index: InvertedIndex, entry: Mapping[str, Any], terms_per_document: np.ndarray,
                    postings: int, offsets_path: Path) -> dict[str, Any]:
    source = index.manifest
    manifest = {key: value for key, value in source.items() if key not in ("files", "parts", "configs", "shard")}
    offsets = np.load(offsets_path)
    documents = len(terms_per_document)
    manifest["counts"] = {
        "documents": documents,
        "postings": postings,
        "terms_with_postings": int(np.count_nonzero(np.diff(offsets))),
        "empty_documents": int(np.count_nonzero(terms_per_document == 0)),
        "mean_terms_per_document": round(postings / documents, 3) if documents else 0.0,
    }
    default = source.get("default_scorer", DEFAULT_SCORER)
    registered = scorers.registered().get(default)
    manifest["default_scorer"] = default if registered is not None and not registered.requires else DEFAULT_SCORER
    manifest["parts"] = {}
    manifest["configs"] = {}
    manifest["shard"] = dict(entry)
    return manifest


def split_index(source_dir: str | Path, out: str | Path, count: int) -> dict[str, Any]:
    """Split the index at `source_dir` into `count` range shards under `out` (atomically); the shards.json."""
    if read_commit(source_dir) is not None:  # its top-level files are only its first segment
        raise IndexFormatError(f"{source_dir}: a segmented index (it has {COMMIT}); merge it into one segment "
                               "first (python -m index_builder merge --max-segments 1), then shard the merged "
                               "segment directory")
    index = open_index(source_dir)
    if passages.PART in index.parts:
        index.close()
        raise IndexFormatError(f"{source_dir}: a passage index cannot be sharded (shards split documents, its rows "
                               "are passages)")
    try:
        bounds = shard_bounds(index.num_documents, count)
        source_info = {"path": str(Path(source_dir).absolute()),
                       "manifest_sha256": storage.file_sha256(Path(source_dir) / "manifest.json"),
                       "documents": index.num_documents, "postings": index.num_postings}
        layout = {"partition": PARTITION, "count": count, "total_documents": index.num_documents,
                  "source": source_info, "shards": []}
        with storage.atomic_directory(out, marker=SHARDS_FILE, what="sharded index",
                                      validate=lambda staged: open_shards(staged)) as staged:
            for number, (first, end) in enumerate(bounds):
                entry = {"dir": f"shard-{number}", "number": number, "first_document": first,
                         "documents": end - first}
                with atomic_index_dir(staged / entry["dir"]) as shard_dir:
                    terms_per_document, postings = _shard_postings(index, first, end, shard_dir)
                    _copy_strings(index, first, end, shard_dir)
                    manifest = _shard_manifest(
                        index, {**entry, "count": count, "partition": PARTITION,
                                "total_documents": index.num_documents, "source": source_info},
                        terms_per_document, postings, shard_dir / OFFSETS)
                    write_manifest(shard_dir, manifest)
                layout["shards"].append(entry)
            (staged / SHARDS_FILE).write_text(json.dumps(layout, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return layout
    finally:
        index.close()


def read_shards(directory: str | Path) -> dict[str, Any]:
    """The shards.json of a sharded index (IndexFormatError naming the file when absent or unreadable)."""
    path = Path(directory) / SHARDS_FILE
    if not path.is_file():
        raise IndexFormatError(f"{path}: missing: not a sharded index (make one with `python -m index_builder shard`)")
    try:
        layout = json.loads(path.read_text(encoding="utf-8"))
        entries = layout["shards"]
        if layout["partition"] != PARTITION or len(entries) != layout["count"]:
            raise ValueError("partition must be 'range' and `shards` must list `count` entries")
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"{path}: not a valid shard layout ({exc})") from None
    return layout


def open_shards(directory: str | Path) -> dict[str, Any]:
    """Check a sharded index: every shard opens, its manifest's `shard` entry agrees with shards.json and
    the ranges tile [0, total_documents) in order. Returns the layout."""
    directory = Path(directory)
    layout = read_shards(directory)
    expected_first = 0
    for entry in layout["shards"]:
        shard = open_index(directory / entry["dir"], verify_checksums=False)
        recorded = shard.manifest.get("shard") or {}
        try:
            if (recorded.get("first_document") != entry["first_document"] or entry["first_document"] != expected_first
                    or shard.num_documents != entry["documents"]):
                raise IndexFormatError(f"{directory / entry['dir']}: shard range does not match {SHARDS_FILE}")
        finally:
            shard.close()
        expected_first += entry["documents"]
    if expected_first != layout["total_documents"]:
        raise IndexFormatError(f"{directory / SHARDS_FILE}: shards hold {expected_first} documents, "
                               f"total_documents says {layout['total_documents']}")
    return layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", type=Path, required=True, help="the built index to split")
    parser.add_argument("--shards", type=int, required=True, help="number of shards (document ranges), >= 1")
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced atomically)")


def run(args: argparse.Namespace) -> int:
    layout = split_index(args.index, args.out, args.shards)
    sizes = ", ".join(str(entry["documents"]) for entry in layout["shards"])
    print(f"wrote {layout['count']} shards to {args.out} (documents per shard: {sizes})")
    return 0
