"""The on-disk index format: the only module that writes, opens or validates an index directory.

Layout (every array is a `.npy` file that `numpy.load(mmap_mode="r")` maps without copying):

    manifest.json            format version, vocabulary fingerprint, counts, quantization, per-file size + sha256
    offsets.npy              int64 [vocab_size + 1]: postings of term t are [offsets[t], offsets[t+1])
    doc_numbers.npy          uint32 [num_postings]: ascending within each term
    impacts.npy              uint8 (default) or uint16 [num_postings]: weight = impact * scale
    ids.bin, ids.offsets.npy external document ids, UTF-8, concatenated; int64 [num_documents + 1] byte offsets
    documents.bin, documents.offsets.npy   optional store: one JSON object {"title", "text"} per document

Opening checks the manifest, every file's size and every array's dtype and shape against the counts, which is
cheap and catches truncation; `verify_checksums=True` also hashes every file and checks each posting list.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import mmap
import os
import shutil
import tempfile
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
OFFSETS = "offsets.npy"
DOC_NUMBERS = "doc_numbers.npy"
IMPACTS = "impacts.npy"
IDS = "ids"
DOCUMENTS = "documents"
IMPACT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
# Document numbers are uint32: the format cannot hold more documents than this.
MAX_DOCUMENTS = int(np.iinfo(np.uint32).max)


class IndexFormatError(Exception):
    """An index directory that is missing, incomplete, corrupted or of another format version."""


def _fail(path: Path, message: str) -> IndexFormatError:
    return IndexFormatError(f"{path}: {message}")


class StringTable:
    """A read-only, memory-mapped table of UTF-8 strings: `<name>.bin` + `<name>.offsets.npy`."""

    def __init__(self, directory: Path, name: str, count: int) -> None:
        self.blob_path = directory / f"{name}.bin"
        self.offsets_path = directory / f"{name}.offsets.npy"
        offsets = _load_array(self.offsets_path, np.int64, count + 1)
        blob_size = self.blob_path.stat().st_size
        if offsets[0] != 0 or int(offsets[-1]) != blob_size:
            raise _fail(self.offsets_path,
                        f"offsets end at {int(offsets[-1])} but {self.blob_path.name} has {blob_size} bytes")
        self.offsets = offsets
        # mmap slicing returns bytes directly (a numpy memmap slice costs microseconds per string).
        # An empty file cannot be mapped; an empty table has nothing to read anyway.
        if blob_size:
            with open(self.blob_path, "rb") as handle:
                self.blob: mmap.mmap | bytes = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            self.blob = b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, number: int) -> str:
        if not 0 <= number < len(self):
            raise IndexError(f"document number {number} out of range [0, {len(self)})")
        start, end = int(self.offsets[number]), int(self.offsets[number + 1])
        return self.blob[start:end].decode("utf-8")

    def get_many(self, numbers: np.ndarray) -> list[str]:
        numbers = np.asarray(numbers, dtype=np.int64)
        if len(numbers) and (numbers.min() < 0 or numbers.max() >= len(self)):
            raise IndexError(f"document numbers out of range [0, {len(self)})")
        blob = self.blob
        starts, ends = self.offsets[numbers].tolist(), self.offsets[numbers + 1].tolist()
        return [blob[start:end].decode("utf-8") for start, end in zip(starts, ends)]


class StringTableWriter:
    """Appends strings to `<name>.bin` and records their byte offsets; `close()` writes the offsets array."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self._blob = open(self.directory / f"{name}.bin", "wb")
        self._offsets = array("q", [0])

    def append(self, text: str) -> None:
        data = text.encode("utf-8")
        self._blob.write(data)
        self._offsets.append(self._offsets[-1] + len(data))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def close(self) -> None:
        self._blob.close()
        np.save(self.directory / f"{self.name}.offsets.npy", np.frombuffer(self._offsets, dtype=np.int64))


def create_array(directory: Path, name: str, dtype: Any, length: int) -> np.memmap:
    """A writable, memory-mapped `.npy` array of the given length (zero-filled), for building without RAM."""
    return np.lib.format.open_memmap(Path(directory) / name, mode="w+", dtype=dtype, shape=(int(length),))


def _load_array(path: Path, dtype: Any, length: int) -> np.ndarray:
    if not path.exists():
        raise _fail(path, "missing")
    try:
        if length == 0:
            arr = np.load(path, allow_pickle=False)  # numpy cannot memory-map a zero-length array
        else:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"unreadable or truncated array ({exc})") from exc
    if arr.dtype != np.dtype(dtype) or arr.ndim != 1 or arr.shape[0] != length:
        raise _fail(path, f"expected {np.dtype(dtype).name}[{length}], found {arr.dtype.name}{list(arr.shape)}")
    return arr


def sha256_file(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


class InvertedIndex:
    """An opened index: memory-mapped postings plus ids and the optional document store."""

    def __init__(self, path: Path, manifest: dict[str, Any], offsets: np.ndarray, doc_numbers: np.ndarray,
                 impacts: np.ndarray, ids: StringTable, documents: StringTable | None) -> None:
        self.path = path
        self.manifest = manifest
        self.offsets = offsets
        self.doc_numbers = doc_numbers
        self.impacts = impacts
        self._ids = ids
        self._documents = documents
        quantization = manifest["quantization"]
        self.scale = float(quantization["scale"])
        self.num_documents = int(manifest["counts"]["documents"])
        self.num_postings = int(manifest["counts"]["postings"])
        self.vocab_size = int(manifest["vocab_size"])
        self.tokenizer_sha256 = str(manifest["tokenizer_sha256"])

    @property
    def has_documents(self) -> bool:
        return self._documents is not None

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

    def __repr__(self) -> str:
        return (f"InvertedIndex({str(self.path)!r}, documents={self.num_documents}, postings={self.num_postings}, "
                f"impacts={self.impacts.dtype.name}, scale={self.scale:.6g})")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    directory = Path(path)
    manifest_path = directory / MANIFEST
    if not directory.is_dir():
        raise IndexFormatError(f"{directory}: not an index directory (does not exist or is not a directory)")
    if not manifest_path.exists():
        raise _fail(manifest_path, "missing: not an index directory, or an unfinished build")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(manifest_path, f"not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise _fail(manifest_path, f"format_version {found!r} is not the supported version {FORMAT_VERSION}")
    for key in ("vocab_size", "tokenizer_sha256", "counts", "quantization", "files"):
        if key not in manifest:
            raise _fail(manifest_path, f"missing key {key!r}")
    return manifest


def open_index(path: str | os.PathLike, verify_checksums: bool = False) -> InvertedIndex:
    """Open (memory-map) and validate an index directory; raises IndexFormatError naming the faulty file."""
    directory = Path(path)
    manifest = read_manifest(directory)
    for name, entry in manifest["files"].items():
        file_path = directory / name
        if not file_path.exists():
            raise _fail(file_path, "missing")
        size = file_path.stat().st_size
        if size != entry["size"]:
            raise _fail(file_path, f"size {size} bytes, manifest says {entry['size']} (truncated or corrupted)")
        if verify_checksums and sha256_file(file_path) != entry["sha256"]:
            raise _fail(file_path, "sha256 does not match the manifest (corrupted)")

    counts = manifest["counts"]
    vocab_size, num_docs, num_postings = int(manifest["vocab_size"]), int(counts["documents"]), int(counts["postings"])
    dtype_name = manifest["quantization"]["dtype"]
    if dtype_name not in IMPACT_DTYPES:
        raise _fail(directory / MANIFEST,
                    f"unsupported impact dtype {dtype_name!r} (expected one of {sorted(IMPACT_DTYPES)})")
    offsets = _load_array(directory / OFFSETS, np.int64, vocab_size + 1)
    doc_numbers = _load_array(directory / DOC_NUMBERS, np.uint32, num_postings)
    impacts = _load_array(directory / IMPACTS, IMPACT_DTYPES[dtype_name], num_postings)
    if offsets[0] != 0 or offsets[-1] != num_postings or np.any(np.diff(offsets) < 0):
        raise _fail(directory / OFFSETS, "offsets must start at 0, never decrease and end at the number of postings")
    ids = StringTable(directory, IDS, num_docs)
    documents = StringTable(directory, DOCUMENTS, num_docs) if manifest.get("document_store") else None
    if verify_checksums:
        _verify_postings(directory, offsets, doc_numbers, impacts, num_docs)
    return InvertedIndex(directory, manifest, offsets, doc_numbers, impacts, ids, documents)


def _verify_postings(directory: Path, offsets: np.ndarray, doc_numbers: np.ndarray, impacts: np.ndarray,
                     num_docs: int, chunk: int = 1 << 24) -> None:
    """Every document number in range and ascending within its term; every impact non-zero (O(postings))."""
    term_starts = np.zeros(len(doc_numbers), dtype=bool)
    starts = offsets[:-1][np.diff(offsets) > 0]
    term_starts[starts] = True
    for lo in range(0, len(doc_numbers), chunk):
        hi = min(lo + chunk, len(doc_numbers))
        docs = np.asarray(doc_numbers[lo:hi], dtype=np.int64)
        if len(docs) and docs.max() >= num_docs:
            raise _fail(directory / DOC_NUMBERS, f"document number {int(docs.max())} >= {num_docs} documents")
        prev = np.asarray(doc_numbers[max(lo - 1, 0):hi - 1], dtype=np.int64) if lo else np.concatenate(
            ([-1], docs[:-1]))
        ascending = (docs > prev) | term_starts[lo:hi]
        if not ascending.all():
            raise _fail(directory / DOC_NUMBERS, "document numbers not strictly ascending within a term")
        if np.any(np.asarray(impacts[lo:hi]) == 0):
            raise _fail(directory / IMPACTS, "zero impact stored")


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Record size and sha256 of every data file in the directory, then write manifest.json (fsynced)."""
    directory = Path(directory)
    full = dict(manifest)
    full["format_version"] = FORMAT_VERSION
    full["files"] = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST
    }
    manifest_path = directory / MANIFEST
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(full, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return full


def _fsync_tree(directory: Path) -> None:
    for p in directory.iterdir():
        if p.is_file():
            with open(p, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE) where the kernel and libc offer it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _replace_directory(staged: Path, target: Path) -> None:
    """Put `staged` at `target`; the old target, if any, is removed only once the new one is in place."""
    if not target.exists():
        os.rename(staged, target)
    elif _exchange(staged, target):
        shutil.rmtree(staged)  # `staged` now holds the previous index
    else:
        # Fallback: two renames. A crash between them leaves the previous index at `<target>.previous-*`.
        previous = target.with_name(f"{target.name}.previous-{os.getpid()}")
        os.rename(target, previous)
        try:
            os.rename(staged, target)
        except OSError:
            os.rename(previous, target)
            raise
        shutil.rmtree(previous)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_index_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory beside `target`, in the same filesystem.

    On normal exit the staged files are fsynced, validated with full checksums (`open_index`) and the directory
    is renamed onto `target`. On an exception, or if the process dies, `target` is untouched and still serves;
    the staging directory is removed on exception (a killed build leaves a `.<name>.building-*` dir behind,
    which the next build of the same target removes).
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise IndexFormatError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).exists():
        # Never replace (and so delete) a directory that is not an index: a mistyped --out must not cost data.
        raise IndexFormatError(f"{target}: exists, is not empty and holds no {MANIFEST}; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(target)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-{os.getpid()}-", dir=target.parent))
    staged.chmod(0o755)  # mkdtemp's 0700 would hide the index from a service running as another user
    try:
        yield staged
        _fsync_tree(staged)
        open_index(staged, verify_checksums=True)
        _replace_directory(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _remove_stale_staging(target: Path) -> None:
    """Remove staging directories left by killed builds of `target` (their pid is in the name)."""
    for candidate in target.parent.glob(f".{target.name}.building-*"):
        try:
            pid = int(candidate.name.rsplit(".building-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
            continue  # that build is still running
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue
