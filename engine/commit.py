"""The commit file of a segmented index: which generation is live (the Lucene `segments_N` idea, one file).

An index directory that has been written to by `engine.lifecycle.IndexWriter` holds:

    commit.json                  the live generation (this module); replaced atomically, never edited in place
    segments/<name>/             immutable segments, each a directory in today's index format (engine.index_format)
    deletes/<name>.g<N>.npy      a segment's deleted documents as of generation N (numpy.packbits of a bool
                                 array, one bit per document, 1 = deleted); immutable like the segments
    write.lock                   the writer lock (fcntl; engine.lifecycle)
    manifest.json, *.npy, ...    only for an index that was a plain index before its first write: that original
                                 index is the segment named "." until a merge retires it

A plain index directory (no commit.json) opens as a one-segment generation 0 (engine.segments).

Commit protocol (`write_commit`): the new generation's segment directories and delete files are written and
fsynced first; then the commit JSON goes to `commit.json.tmp-<pid>`, is fsynced, renamed over `commit.json`, and
the directory is fsynced. A reader sees the old commit or the new one, never a mix; a process killed at any
point leaves either generation intact. Files of older generations are removed only after the new commit is
durable, and only those the live commit does not reference (`referenced_paths`); leftovers of a killed writer
(temp commits, staging directories, unreferenced segments) are removed by the next writer (`IndexWriter`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import IndexFormatError
from storage import fsync_dir

COMMIT = "commit.json"
SEGMENTS_DIR = "segments"
DELETES_DIR = "deletes"
LOCK = "write.lock"
COMMIT_FORMAT = "splade-serve-commit"
COMMIT_VERSION = 1
BASE_SEGMENT = "."  # the plain index a segmented one grew from (its files stay at the top level)
_TMP = ".tmp-"


class SegmentEntry(BaseModel):
    """One segment of a generation, in ordinal order (older documents first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str                       # "." (the original plain index) or "s000001", ...
    documents: int = Field(ge=0)    # document slots in the segment (live + deleted)
    deleted: int = Field(0, ge=0)   # how many of them are deleted in this generation
    deletes: str | None = None      # path of the deletes bitmap, relative to the index directory (None: none)

    @property
    def path(self) -> str:
        return self.name if self.name == BASE_SEGMENT else f"{SEGMENTS_DIR}/{self.name}"

    @property
    def live(self) -> int:
        return self.documents - self.deleted


class Commit(BaseModel):
    """The live generation: its number, the segments in ordinal order, and the index-wide quantization."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = COMMIT_FORMAT
    version: int = COMMIT_VERSION
    generation: int = Field(ge=0)
    next_segment: int = Field(ge=1)       # the number the next new segment gets (names are never reused)
    vocab_size: int = Field(ge=1)
    tokenizer_sha256: str
    impact_scale: float = Field(gt=0)     # fixed at creation: every added segment quantizes with it
    impact_dtype: str
    segments: list[SegmentEntry]
    created_at: str = ""

    @property
    def documents(self) -> int:
        return sum(s.live for s in self.segments)

    @property
    def deleted(self) -> int:
        return sum(s.deleted for s in self.segments)

    def doc_bases(self) -> list[int]:
        """Global document number of each segment's first slot: segments in order, slots in order."""
        bases, total = [], 0
        for segment in self.segments:
            bases.append(total)
            total += segment.documents
        return bases

    def referenced_paths(self) -> set[str]:
        """Paths (relative to the index directory) this generation needs: segment dirs and delete files."""
        paths = {s.path for s in self.segments if s.name != BASE_SEGMENT}
        paths |= {s.deletes for s in self.segments if s.deletes}
        return paths


def read_commit(index_dir: str | os.PathLike) -> Commit | None:
    """The live commit, or None for a plain index directory (no commit file)."""
    path = Path(index_dir) / COMMIT
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        commit = Commit.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise IndexFormatError(f"{path}: not a valid commit file ({exc})") from None
    if commit.format != COMMIT_FORMAT or commit.version != COMMIT_VERSION:
        raise IndexFormatError(f"{path}: format {commit.format!r} version {commit.version} is not "
                               f"{COMMIT_FORMAT!r} version {COMMIT_VERSION}")
    names = [s.name for s in commit.segments]
    if len(set(names)) != len(names):
        raise IndexFormatError(f"{path}: a segment is listed twice")
    return commit


def write_commit(index_dir: str | os.PathLike, commit: Commit, fault=None) -> None:
    """Make `commit` the live generation, durably: temp file, fsync, rename over commit.json, fsync the dir."""
    directory = Path(index_dir)
    tmp = directory / f"{COMMIT}{_TMP}{os.getpid()}"
    data = json.dumps(commit.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if fault is not None:
        fault("before-commit-rename")
    os.rename(tmp, directory / COMMIT)
    fsync_dir(directory)


def stale_commit_temps(index_dir: str | os.PathLike) -> list[Path]:
    return list(Path(index_dir).glob(f"{COMMIT}{_TMP}*"))


def commit_summary(commit: Commit) -> dict[str, Any]:
    """What /info and reports show: generation, segment count, live and deleted documents."""
    return {"generation": commit.generation, "segments": len(commit.segments), "documents": commit.documents,
            "deleted_documents": commit.deleted}
