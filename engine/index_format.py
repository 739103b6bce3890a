"""The on-disk index format: the only module that writes, opens or validates an index directory.

Layout (every array is a `.npy` file that `numpy.load(mmap_mode="r")` maps without copying):

    manifest.json            typed by engine.manifest: format version, vocabulary fingerprint, counts,
                             quantization, optional parts, default scorer, per-file size + sha256
    offsets.npy              int64 [vocab_size + 1]: postings of term t are [offsets[t], offsets[t+1])
    doc_numbers.npy          uint32 [num_postings]: ascending within each term
    impacts.npy              uint8 (default) or uint16 [num_postings]: weight = impact * scale
    ids.bin, ids.offsets.npy external document ids, UTF-8, concatenated; int64 [num_documents + 1] byte offsets
    documents.bin, documents.offsets.npy   optional store: one JSON object {"title", "text"} per document
    <part>.*.npy             files of optional parts, listed under the manifest's `parts`

Opening checks the manifest, every file's size and every array's dtype and shape against the counts, which is
cheap and catches truncation; `verify_checksums=True` also hashes every file and checks each posting list.
Writes go through `atomic_index_dir` (storage.atomic_directory): a build that dies leaves the previous index.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import storage
from engine.arrays import create_array, load_array
from engine.errors import IndexFormatError
from engine.manifest import FORMAT_VERSION, IndexManifest, PartInfo, parse_manifest
from engine.string_table import StringTable, StringTableWriter

MANIFEST = "manifest.json"
OFFSETS = "offsets.npy"
DOC_NUMBERS = "doc_numbers.npy"
IMPACTS = "impacts.npy"
IDS = "ids"
DOCUMENTS = "documents"
IMPACT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
# Document numbers are uint32: the format cannot hold more documents than this.
MAX_DOCUMENTS = int(np.iinfo(np.uint32).max)
# Postings checked at a time by verify_checksums (about 24 bytes each while checked: ~12 MiB).
VERIFY_CHUNK = 1 << 19

__all__ = [
    "DOCUMENTS", "DOC_NUMBERS", "FORMAT_VERSION", "IDS", "IMPACTS", "IMPACT_DTYPES", "MANIFEST", "MAX_DOCUMENTS",
    "OFFSETS", "VERIFY_CHUNK", "IndexFormatError", "InvertedIndex", "StringTable", "StringTableWriter", "add_parts",
    "atomic_index_dir", "create_array", "load_array", "open_index", "read_manifest", "write_manifest",
]


class InvertedIndex:
    """An opened index: memory-mapped postings, ids, the optional document store and optional parts."""

    def __init__(self, path: Path, manifest: IndexManifest, offsets: np.ndarray, doc_numbers: np.ndarray,
                 impacts: np.ndarray, ids: StringTable, documents: StringTable | None) -> None:
        self.path = path
        self.typed_manifest = manifest
        self.manifest = manifest.to_json()  # plain JSON for /info and reports
        self.offsets = offsets
        self.doc_numbers = doc_numbers
        self.impacts = impacts
        self._ids = ids
        self._documents = documents
        self.scale = float(manifest.quantization.scale)
        self.num_documents = int(manifest.counts.documents)
        self.num_postings = int(manifest.counts.postings)
        self.vocab_size = int(manifest.vocab_size)
        self.tokenizer_sha256 = manifest.tokenizer_sha256

    @property
    def parts(self) -> Mapping[str, PartInfo]:
        return self.typed_manifest.parts

    def part_array(self, part: str, file_name: str, dtype: Any, length: int) -> np.ndarray:
        """A memory-mapped array of an optional part (IndexFormatError when the part or file is absent)."""
        info = self.parts.get(part)
        if info is None or file_name not in info.files:
            raise IndexFormatError(f"{self.path}: the index has no part {part!r} with file {file_name!r}")
        return load_array(self.path / file_name, dtype, length)

    def external_id(self, doc_number: int) -> str:
        return self._ids.get(int(doc_number))

    def external_ids(self, doc_numbers: np.ndarray) -> list[str]:
        """Ids of many documents at once (what a search result needs)."""
        return self._ids.get_many(doc_numbers)

    def document(self, doc_number: int) -> dict[str, str] | None:
        if self._documents is None:
            return None
        return json.loads(self._documents.get(int(doc_number)))

    def postings(self, term_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(document numbers, impacts) of one term: views into the mapped arrays."""
        start, end = int(self.offsets[term_id]), int(self.offsets[term_id + 1])
        return self.doc_numbers[start:end], self.impacts[start:end]

    def close(self) -> None:
        """Unmap the string tables (the arrays are unmapped when their last view is dropped)."""
        self._ids.close()
        if self._documents is not None:
            self._documents.close()

    def __repr__(self) -> str:
        return (f"InvertedIndex({str(self.path)!r}, documents={self.num_documents}, postings={self.num_postings}, "
                f"impacts={self.impacts.dtype.name}, scale={self.scale:.6g})")


def read_manifest(path: str | os.PathLike) -> IndexManifest:
    directory = Path(path)
    manifest_path = directory / MANIFEST
    if not directory.is_dir():
        raise IndexFormatError(f"{directory}: not an index directory (does not exist or is not a directory)")
    if not manifest_path.exists():
        raise IndexFormatError(f"{manifest_path}: missing: not an index directory, or an unfinished build")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{manifest_path}: not valid JSON ({exc})") from exc
    return parse_manifest(raw, str(manifest_path))


def open_index(path: str | os.PathLike, verify_checksums: bool = False) -> InvertedIndex:
    """Open (memory-map) and validate an index directory; raises IndexFormatError naming the faulty file."""
    directory = Path(path)
    manifest = read_manifest(directory)
    for name, entry in manifest.files.items():
        file_path = directory / name
        if not file_path.exists():
            raise IndexFormatError(f"{file_path}: missing")
        size = file_path.stat().st_size
        if size != entry.size:
            raise IndexFormatError(
                f"{file_path}: size {size} bytes, manifest says {entry.size} (truncated or corrupted)")
        if verify_checksums and storage.file_sha256(file_path) != entry.sha256:
            raise IndexFormatError(f"{file_path}: sha256 does not match the manifest (corrupted)")

    vocab_size, num_docs = manifest.vocab_size, manifest.counts.documents
    num_postings = manifest.counts.postings
    offsets = load_array(directory / OFFSETS, np.int64, vocab_size + 1)
    doc_numbers = load_array(directory / DOC_NUMBERS, np.uint32, num_postings)
    impacts = load_array(directory / IMPACTS, IMPACT_DTYPES[manifest.quantization.dtype], num_postings)
    if offsets[0] != 0 or offsets[-1] != num_postings or np.any(np.diff(offsets) < 0):
        raise IndexFormatError(
            f"{directory / OFFSETS}: offsets must start at 0, never decrease and end at the number of postings")
    ids = StringTable(directory, IDS, num_docs)
    documents = StringTable(directory, DOCUMENTS, num_docs) if manifest.document_store else None
    if verify_checksums:
        _verify_postings(directory, offsets, doc_numbers, impacts, posting_rows(manifest))
    return InvertedIndex(directory, manifest, offsets, doc_numbers, impacts, ids, documents)


def posting_rows(manifest: IndexManifest) -> int:
    """Rows the postings address: documents, or passages in an index with the `passages` part (engine.passages)."""
    passages = manifest.parts.get("passages")
    return int(passages.params["passages"]) if passages is not None else manifest.counts.documents


def _verify_postings(directory: Path, offsets: np.ndarray, doc_numbers: np.ndarray, impacts: np.ndarray,
                     num_docs: int, chunk: int = VERIFY_CHUNK) -> None:
    """Every document number in range and ascending within its term; every impact non-zero (O(postings) time).

    Memory is O(chunk + vocabulary), whatever the index size: chunks are read, not mapped, so a build's
    validation does not leave the whole index resident in the builder's process.
    """
    starts = offsets[:-1][np.diff(offsets) > 0]  # positions where a term's postings begin
    previous = -1
    for lo in range(0, len(doc_numbers), chunk):
        hi = min(lo + chunk, len(doc_numbers))
        docs = _read_slice(doc_numbers, lo, hi).astype(np.int64)
        if docs.max() >= num_docs:
            raise IndexFormatError(f"{directory / DOC_NUMBERS}: document number {int(docs.max())} >= {num_docs} "
                                   "documents")
        term_starts = np.zeros(hi - lo, dtype=bool)
        term_starts[starts[(starts >= lo) & (starts < hi)] - lo] = True
        prev = np.concatenate(([previous], docs[:-1]))
        if not ((docs > prev) | term_starts).all():
            raise IndexFormatError(f"{directory / DOC_NUMBERS}: document numbers not strictly ascending within a term")
        previous = int(docs[-1])
        del docs, prev, term_starts
        if np.any(_read_slice(impacts, lo, hi) == 0):
            raise IndexFormatError(f"{directory / IMPACTS}: zero impact stored")


def _read_slice(array: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """array[lo:hi] as an in-memory copy; a memory-mapped file is read rather than paged in through the map."""
    if isinstance(array, np.memmap) and array.filename is not None:
        return np.fromfile(array.filename, dtype=array.dtype, count=hi - lo, offset=array.offset + lo * array.itemsize)
    return np.asarray(array[lo:hi])


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Record size and sha256 of every data file in the directory, validate, then write manifest.json."""
    directory = Path(directory)
    full = dict(manifest)
    full["format_version"] = FORMAT_VERSION
    full["files"] = {
        p.name: {"size": p.stat().st_size, "sha256": storage.file_sha256(p)}
        for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST
    }
    full = parse_manifest(full, str(directory / MANIFEST)).to_json()  # never write a manifest we cannot read
    with open(directory / MANIFEST, "w", encoding="utf-8") as handle:
        json.dump(full, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return full


@contextlib.contextmanager
def atomic_index_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory beside `target`, in the same filesystem.

    On normal exit the staged files are fsynced, validated with full checksums (`open_index`) and the directory
    takes `target`'s place in one step. On an exception, or if the process dies, `target` is untouched and still
    serves. A non-empty directory without manifest.json is never replaced (storage.atomic_directory).
    """
    try:
        with storage.atomic_directory(target, marker=MANIFEST, what="index",
                                      validate=lambda staged: open_index(staged, verify_checksums=True)) as staged:
            yield staged
    except storage.NotReplaceableError as exc:
        raise IndexFormatError(str(exc)) from None


PartWriter = Callable[[InvertedIndex, Path], tuple[str, PartInfo]]


def add_parts(index_dir: str | os.PathLike, writers: list[PartWriter],
              manifest_updates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Add (or rebuild) optional parts of an existing index, and/or update manifest keys, atomically.

    The existing files are hard-linked into a staging directory (no copy; they are never written in place),
    each writer gets the opened index and the staging directory, writes its files there and returns
    (part name, PartInfo); the manifest is rewritten with the parts and the new directory replaces the old one
    (validated, fsynced). Requests on the old directory keep reading their open files.
    """
    index = open_index(index_dir)
    with atomic_index_dir(index_dir) as staged:
        parts = {name: info.model_dump(mode="json") for name, info in index.parts.items()}
        dropped: set[str] = set()
        for writer in writers:
            name, info = writer(index, staged)
            dropped |= set(parts.get(name, {}).get("files", [])) - set(info.files)
            parts[name] = info.model_dump(mode="json")
        written = {p.name for p in staged.iterdir()}
        for source in Path(index_dir).iterdir():
            if source.is_file() and source.name not in written | dropped | {MANIFEST}:
                os.link(source, staged / source.name)
        for name, info in parts.items():
            if any(not (staged / f).is_file() for f in info["files"]):
                raise IndexFormatError(f"part {name!r}: a file it lists was not written")
        manifest = dict(index.manifest)
        manifest["parts"] = parts
        manifest.update(manifest_updates or {})
        index.close()
        return write_manifest(staged, manifest)
