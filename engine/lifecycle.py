"""The index writer: add, update and delete documents, commit them durably, merge segments.

    with IndexWriter("data/indexes/x") as writer:              # takes the index's write lock (one writer)
        writer.add([NewDocument("d1", term_ids, weights, title="...", text="...")])
        writer.add([NewDocument("d2", ...)], replace=True)     # update: the old version is deleted
        unknown = writer.delete(["d9"])                         # ids with no live document
        generation = writer.commit()                            # durable and visible when it returns
        writer.maybe_merge()                                    # the merge policy (engine.merge_policy)

Documents come pre-encoded (term ids int32 and float32 weights > 0, e.g. from the index's own model): the
offline verbs (index_builder.lifecycle) and the service encode; the writer never loads a model. Nothing a writer
does is visible before `commit()`, which writes the new segment(s) and delete bitmaps, then the commit file
(engine.commit: temp, fsync, rename, fsync dir) and only then removes the files no generation needs any more.
`close()` (or leaving the `with`) without a commit drops the pending changes.

One writer at a time: `write.lock` in the index directory is held with fcntl.flock for the writer's life; a
second writer gets WriterBusyError at once. Readers never take the lock (engine.segments.open_generation).

Fault injection: when SPLADE_FAULT_POINT names a point (FAULT_POINTS) the process kills itself with SIGKILL
there (tests/engine/test_lifecycle_faults.py): a real crash, not an exception.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engine import scorers
from engine.commit import (BASE_SEGMENT, COMMIT, DELETES_DIR, LOCK, SEGMENTS_DIR, Commit, SegmentEntry,
                           read_commit, stale_commit_temps, write_commit)
from engine import bm25, passages
from engine import metadata as md
from engine.bm25_writer import part_writer, texts_from_store
from engine.errors import EngineError, IndexFormatError, InvalidQueryError
from engine.id_map import IdMap
from engine.impacts import fixed_quantization
from engine.index_format import InvertedIndex, PartWriter, add_parts, open_index, read_manifest
from engine.merge_policy import LogMergePolicy, SegmentSize, compaction_plan
from engine.segment_writer import merge_segments, write_segment
from storage import fsync_dir

FAULT_ENV = "SPLADE_FAULT_POINT"
FAULT_POINTS = ("after-segment-write", "after-deletes-write", "before-commit-rename", "after-commit",
                "after-merge-write")
# Postings buffered before the writer cuts a segment: ~32 bytes each while a segment is written.
BYTES_PER_BUFFERED_POSTING = 32

SegmentParts = Callable[[InvertedIndex], list[PartWriter]]
MetadataRows = Callable[[], Iterable[tuple[str, dict[str, Any] | None]]]


def _live_metadata(sources: Sequence[tuple[InvertedIndex, np.ndarray | None]]):
    """(id, metadata) of every live document of merged segments, in order (what the merged segment holds)."""
    for index, deleted in sources:
        opened = md.metadata_of(index)
        for doc in range(index.num_documents):
            if deleted is None or not deleted[doc]:
                yield index.external_id(doc), (opened.document(doc) if opened is not None else None)


class WriterBusyError(EngineError):
    """Another writer holds the index's write lock."""


class DocumentError(EngineError):
    """A document batch the writer refuses (duplicate ids, an id that exists, a bad vector); nothing applied."""


def fault(point: str) -> None:
    """Die here (SIGKILL, no cleanup) when SPLADE_FAULT_POINT names this point: the crash tests' hook."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def segment_name(number: int) -> str:
    return BASE_SEGMENT if number == 0 else f"s{number:06d}"


def segment_number(name: str) -> int:
    return 0 if name == BASE_SEGMENT else int(name[1:])


@dataclass
class NewDocument:
    id: str
    term_ids: np.ndarray
    weights: np.ndarray
    title: str | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None  # indexed by the index's metadata schema (engine.metadata)


@dataclass
class WriteReport:
    """What one commit (or merge) did."""

    generation: int = 0
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    saturated_postings: int = 0   # weights above the fixed scale's range, stored at the largest impact
    segments_written: list[str] = field(default_factory=list)
    segments_merged: list[str] = field(default_factory=list)


class IndexWriter:
    """The one writer of an index directory (plain or segmented); see the module doc."""

    def __init__(self, index_dir: str | os.PathLike, *, memory_budget_mb: int = 256,
                 merge_policy: LogMergePolicy | None = None, segment_parts: SegmentParts | None = None) -> None:
        """`segment_parts(segment)`: the writers of extra parts for each new segment; None: the BM25 field when
        the index has one (engine.bm25_writer)."""
        self.path = Path(index_dir)
        if not self.path.is_dir():
            raise IndexFormatError(f"{self.path}: not an index directory (does not exist)")
        self.memory_budget_bytes = int(memory_budget_mb) << 20
        self.merge_policy = merge_policy or LogMergePolicy()
        self._segment_parts = segment_parts
        self._lock = self._take_lock()
        try:
            self._open()
        except BaseException:
            self._release_lock()
            raise

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _take_lock(self):
        handle = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise WriterBusyError(f"{self.path}: another writer holds {LOCK} (one writer at a time); "
                                  "wait for it to finish") from None
        return handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _open(self) -> None:
        commit = read_commit(self.path)
        if commit is None:  # a plain index: it becomes segment "." of generation 0
            base = open_index(self.path)
            quant = base.typed_manifest.quantization
            commit = Commit(generation=0, next_segment=1, vocab_size=base.vocab_size,
                            tokenizer_sha256=base.tokenizer_sha256, impact_scale=base.scale,
                            impact_dtype=quant.dtype, segments=[SegmentEntry(name=BASE_SEGMENT,
                                                                             documents=base.num_documents)])
            base.close()
        if passages.PART in read_manifest(self.path / commit.segments[0].path).parts:
            # Rows of a passage index are passages, not documents: segments of one are not supported yet.
            raise IndexFormatError(f"{self.path}: a passage index (built with --passage-tokens) cannot be written "
                                   "to; rebuild it with the new documents")
        self.commit_state = commit
        self.plan = fixed_quantization(commit.impact_scale, commit.impact_dtype)
        self.remove_unreferenced()
        self._indexes: dict[int, InvertedIndex] = {}
        self._deleted: dict[int, np.ndarray] = {}
        self._order: list[int] = []  # segment numbers in ordinal order, pending ones included
        for entry in commit.segments:
            number = segment_number(entry.name)
            self._indexes[number] = open_index(self.path / entry.path)
            self._deleted[number] = self._read_deletes(entry)
            self._order.append(number)
        self._next_segment = commit.next_segment
        self._pending_segments: list[int] = []
        self._dirty: set[int] = set()
        self._buffer: list[NewDocument | None] = []
        self._buffer_ids: dict[str, int] = {}
        self._buffered_postings = 0
        self._report = WriteReport()
        self._id_map: IdMap | None = None

    def _read_deletes(self, entry: SegmentEntry) -> np.ndarray:
        if entry.deletes is None:
            return np.zeros(entry.documents, dtype=bool)
        packed = np.load(self.path / entry.deletes, allow_pickle=False)
        return np.unpackbits(packed, count=entry.documents).astype(bool)

    def close(self) -> None:
        """Drop uncommitted changes, close the segments, release the lock."""
        if self._lock is None:
            return
        self.rollback()
        for index in self._indexes.values():
            index.close()
        self._release_lock()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def generation(self) -> int:
        return self.commit_state.generation

    # -- ids -------------------------------------------------------------------------------------------------
    def _ids_of(self, segment: int, docs: np.ndarray) -> list[str]:
        return self._indexes[segment].external_ids(docs)

    @property
    def id_map(self) -> IdMap:
        """The live documents' ids (built on first use: one pass over every segment's id table)."""
        if self._id_map is None:
            id_map = IdMap(self._ids_of)
            for number in self._order:
                id_map.add_segment(number, None, ~self._deleted[number], len(self._deleted[number]))
            self._id_map = id_map
        return self._id_map

    # -- writes ------------------------------------------------------------------------------------------------
    def add(self, documents: Iterable[NewDocument], replace: bool = False) -> int:
        """Buffer documents for the next commit; with `replace` an id that exists is updated (its old version is
        deleted in the same commit), otherwise it is refused. The whole batch is checked first: a refused batch
        changes nothing. Returns how many existing documents the batch replaces."""
        batch = list(documents)
        seen: set[str] = set()
        for position, doc in enumerate(batch):
            self._check_document(position, doc)
            if doc.id in seen:
                raise DocumentError(f"documents[{position}].id: duplicate id {doc.id!r} in one batch")
            seen.add(doc.id)
        ids = [doc.id for doc in batch]
        existing = self.id_map.lookup(ids)
        pending = [doc_id in self._buffer_ids for doc_id in ids]
        if not replace:
            for position, (doc_id, found, buffered) in enumerate(zip(ids, existing, pending)):
                if found is not None or buffered:
                    raise DocumentError(f"documents[{position}].id: id {doc_id!r} already exists (use update to "
                                        "replace it)")
        replaced = 0
        for doc, found, buffered in zip(batch, existing, pending):
            if found is not None:
                self._mark_deleted(*found)
                replaced += 1
            if buffered:
                self._buffer[self._buffer_ids.pop(doc.id)] = None
                replaced += 1
            self._buffer_ids[doc.id] = len(self._buffer)
            self._buffer.append(doc)
            self._buffered_postings += len(doc.term_ids)
            if self._buffered_postings * BYTES_PER_BUFFERED_POSTING >= self.memory_budget_bytes:
                self._flush()
        self._report.replaced += replaced
        return replaced

    def _check_document(self, position: int, doc: NewDocument) -> None:
        where = f"documents[{position}]"
        if not isinstance(doc.id, str) or not doc.id:
            raise DocumentError(f"{where}.id: must be a non-empty string, got {doc.id!r}")
        term_ids = np.asarray(doc.term_ids)
        weights = np.asarray(doc.weights)
        if term_ids.ndim != 1 or term_ids.shape != weights.shape:
            raise DocumentError(f"{where}.vector: term ids and weights must be 1-D arrays of the same length")
        if len(term_ids):
            if term_ids.min() < 0 or term_ids.max() >= self.commit_state.vocab_size:
                raise DocumentError(f"{where}.vector: term ids must be in [0, {self.commit_state.vocab_size})")
            if len(np.unique(term_ids)) != len(term_ids):
                raise DocumentError(f"{where}.vector: a term appears twice")
            if not np.all(np.isfinite(weights)) or weights.min() <= 0:
                raise DocumentError(f"{where}.vector: weights must be finite and > 0")
        doc.term_ids = term_ids.astype(np.int32, copy=False)
        doc.weights = weights.astype(np.float32, copy=False)
        if doc.metadata is not None:
            try:
                doc.metadata = md.check_document_metadata(doc.metadata, self.metadata_schema, f"{where}.metadata")
            except InvalidQueryError as exc:
                raise DocumentError(f"{exc.field}: {exc.message}") from None

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete documents by id (in the next commit); returns the ids that have no live document."""
        unknown = []
        found = self.id_map.lookup(list(ids))
        for doc_id, hit in zip(ids, found):
            if doc_id in self._buffer_ids:
                self._buffer[self._buffer_ids.pop(doc_id)] = None
                self._report.deleted += 1
            elif hit is not None:
                self._mark_deleted(*hit)
                self._report.deleted += 1
            else:
                unknown.append(doc_id)
        return unknown

    def _mark_deleted(self, segment: int, doc: int) -> None:
        if not self._deleted[segment][doc]:
            self._deleted[segment][doc] = True
            self._dirty.add(segment)
            self.id_map.remove([(segment, doc)])

    def _flush(self) -> None:
        """Write the buffered documents as a new (uncommitted) segment."""
        docs = [d for d in self._buffer if d is not None]
        self._buffer, self._buffer_ids, self._buffered_postings = [], {}, 0
        if not docs:
            return
        number = self._next_segment
        self._next_segment += 1
        out = self.path / SEGMENTS_DIR / segment_name(number)
        out.parent.mkdir(exist_ok=True)
        base = self._indexes[self._order[0]]
        stored = [{"title": d.title or "", "text": d.text or ""} for d in docs]
        _, saturated = write_segment(
            out, [(d.term_ids, d.weights) for d in docs], [d.id for d in docs], stored,
            vocab_size=self.commit_state.vocab_size, tokenizer_sha256=self.commit_state.tokenizer_sha256,
            plan=self.plan, default_scorer=base.typed_manifest.default_scorer,
            segment={"created_by": "add", "generation": self.generation + 1})
        self._add_parts(out, base, lambda: ((d.id, d.metadata) for d in docs))
        index = open_index(out)
        self._indexes[number] = index
        self._deleted[number] = np.zeros(index.num_documents, dtype=bool)
        self._order.append(number)
        self._pending_segments.append(number)
        self.id_map.add_segment(number, [d.id for d in docs], None, len(docs))
        self._report.added += len(docs)
        self._report.saturated_postings += saturated
        self._report.segments_written.append(segment_name(number))
        fault("after-segment-write")

    @property
    def metadata_schema(self) -> dict[str, str]:
        """The index's metadata schema (its first segment's; fixed by the first build), {} without metadata."""
        opened = md.metadata_of(self._indexes[self._order[0]])
        return {} if opened is None else dict(opened.schema)

    def _metadata_part(self, base: InvertedIndex, rows: MetadataRows) -> PartWriter | None:
        """The metadata part of a new segment, with the index's schema, when the index has metadata."""
        if not md.has_metadata(base):
            return None
        schema = self.metadata_schema
        budget = self.memory_budget_bytes // 16

        def write(segment: InvertedIndex, staged: Path):
            writer = md.MetadataWriter(Path(staged) / "_metadata_spool", schema, budget)
            for doc_id, values in rows():
                writer.add(doc_id, values)
            return writer.write(staged)
        return write

    def _bm25_part(self, base: InvertedIndex, segment: InvertedIndex) -> list[PartWriter]:
        """The BM25 field of a new segment when the index has one (its k1 and b), from the segment's stored
        texts; a segment without texts (pre-encoded vectors) gets an empty field, so that every segment of the
        generation carries the part and `bm25`/`hybrid` stay servable."""
        info = base.parts.get(bm25.PART)
        if info is None:
            return []
        k1 = info.params.get("k1", bm25.DEFAULT_K1)
        b = info.params.get("b", bm25.DEFAULT_B)
        if segment.manifest.get("document_store") is True:
            texts = texts_from_store
        else:
            def texts(index: InvertedIndex):
                return ("" for _ in range(index.num_documents))
        return [part_writer(texts, k1, b, memory_budget_bytes=max(self.memory_budget_bytes // 8, 1 << 20))]

    def _add_parts(self, segment_dir: Path, base: InvertedIndex, metadata_rows: MetadataRows | None = None) -> None:
        """The optional parts the index's segments carry, built on a new segment (scorer parts by the registry,
        metadata from `metadata_rows`, others by `segment_parts`), so the generation keeps offering the same
        scorers, modes and filters."""
        writers: list[PartWriter] = []
        metadata = None if metadata_rows is None else self._metadata_part(base, metadata_rows)
        if metadata is not None:
            writers.append(metadata)
        for name, info in base.parts.items():
            owner = next((cls for cls in scorers.registered().values() if name in cls.requires), None)
            if owner is not None:
                params = {k: v for k, v in info.params.items() if k in owner.build_parameters}
                writers.extend(owner.part_writers(params))
        segment = open_index(segment_dir)
        try:
            if self._segment_parts is not None:
                writers.extend(self._segment_parts(segment))
            else:
                writers.extend(self._bm25_part(base, segment))
        finally:
            segment.close()
        if writers:
            add_parts(segment_dir, writers)

    def rollback(self) -> None:
        """Forget everything since the last commit (pending segments are removed)."""
        for number in self._pending_segments:
            self._indexes.pop(number).close()
            self._deleted.pop(number)
            self._order.remove(number)
            shutil.rmtree(self.path / SEGMENTS_DIR / segment_name(number), ignore_errors=True)
        self._pending_segments = []
        committed = {segment_number(e.name): e for e in self.commit_state.segments}
        for number in self._dirty & set(committed):  # (a pending segment's deletes went with it)
            self._deleted[number] = self._read_deletes(committed[number])
        self._dirty = set()
        self._buffer, self._buffer_ids, self._buffered_postings = [], {}, 0
        self._report = WriteReport()
        self._id_map = None

    @property
    def pending(self) -> WriteReport:
        """What the next commit will do (added, replaced, deleted, saturated postings, segments written)."""
        return self._report

    @property
    def has_changes(self) -> bool:
        return bool(self._pending_segments or self._dirty or any(d is not None for d in self._buffer))

    def commit(self) -> int:
        """Make every change since the last commit durable and visible; returns the new generation number
        (the current one when there was nothing to commit)."""
        self._flush()
        if not (self._pending_segments or self._dirty):
            return self.generation
        generation = self.generation + 1
        entries = self._entries(generation, self._order, self._dirty)
        fault("after-deletes-write")
        report = self._report
        self._install(entries, generation)
        report.generation = generation
        self.last_report = report
        return generation

    def _entries(self, generation: int, order: Sequence[int], dirty: set[int]) -> list[SegmentEntry]:
        """Segment entries for a new generation: delete bitmaps of changed segments written and fsynced."""
        previous = {segment_number(e.name): e for e in self.commit_state.segments}
        entries = []
        deletes_dir = self.path / DELETES_DIR
        for number in order:
            deleted = self._deleted[number]
            count = int(deleted.sum())
            deletes = previous[number].deletes if number in previous else None
            if number in dirty or (number not in previous and count):
                deletes = None
                if count:
                    deletes_dir.mkdir(exist_ok=True)
                    relative = f"{DELETES_DIR}/{segment_name(number).lstrip('.') or 'base'}.g{generation:06d}.npy"
                    with open(self.path / relative, "wb") as handle:
                        np.save(handle, np.packbits(deleted))
                        handle.flush()
                        os.fsync(handle.fileno())
                    deletes = relative
            entries.append(SegmentEntry(name=segment_name(number), documents=len(deleted), deleted=count,
                                        deletes=deletes))
        if deletes_dir.exists():
            fsync_dir(deletes_dir)
        if (self.path / SEGMENTS_DIR).exists():
            fsync_dir(self.path / SEGMENTS_DIR)
        return entries

    def _install(self, entries: list[SegmentEntry], generation: int) -> None:
        commit = self.commit_state.model_copy(update={
            "generation": generation, "next_segment": self._next_segment, "segments": entries,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        write_commit(self.path, commit, fault=fault)
        fault("after-commit")
        self.commit_state = commit
        self._pending_segments = []
        self._dirty = set()
        self._report = WriteReport()
        self.remove_unreferenced()

    # -- merges ----------------------------------------------------------------------------------------------
    def _sizes(self) -> list[SegmentSize]:
        return [SegmentSize(len(self._deleted[n]), int(self._deleted[n].sum())) for n in self._order]

    def maybe_merge(self) -> list[WriteReport]:
        """Run the merge policy until it finds nothing to merge; each merge is its own commit."""
        reports = []
        while (found := self.merge_policy.find_merge(self._sizes())) is not None:
            reports.append(self._merge_range(*found))
        return reports

    def force_merge(self, max_segments: int) -> list[WriteReport]:
        """Full compaction: at most `max_segments` segments, no deleted documents."""
        self.commit()
        ranges = compaction_plan(self._sizes(), max_segments)
        reports = []
        for start, end in reversed(ranges):  # from the back: earlier positions stay valid
            reports.append(self._merge_range(start, end))
        return reports

    def _merge_range(self, start: int, end: int) -> WriteReport:
        """Merge segments at positions [start, end) of the live generation into one, and commit."""
        if self.has_changes:
            self.commit()
        merged = self._order[start:end]
        report = WriteReport(segments_merged=[segment_name(n) for n in merged])
        live_total = sum(int((~self._deleted[n]).sum()) for n in merged)
        new_order = list(self._order[:start])
        if live_total:
            number = self._next_segment
            self._next_segment += 1
            out = self.path / SEGMENTS_DIR / segment_name(number)
            out.parent.mkdir(exist_ok=True)
            base = self._indexes[self._order[0]]
            sources = [(self._indexes[n], self._deleted[n] if self._deleted[n].any() else None) for n in merged]
            _, saturated = merge_segments(out, sources, plan=self.plan,
                                          default_scorer=base.typed_manifest.default_scorer,
                                          memory_budget_bytes=self.memory_budget_bytes,
                                          segment={"created_by": "merge", "generation": self.generation + 1,
                                                   "merged": [segment_name(n) for n in merged]})
            self._add_parts(out, base, lambda: _live_metadata(sources))
            fault("after-merge-write")
            index = open_index(out)
            self._indexes[number] = index
            self._deleted[number] = np.zeros(index.num_documents, dtype=bool)
            new_order.append(number)
            report.saturated_postings = saturated
            report.segments_written.append(segment_name(number))
            renumbering = []
            base_number = 0
            for n in merged:
                live = ~self._deleted[n]
                new = np.cumsum(live, dtype=np.int64) - 1 + base_number
                new[~live] = -1
                renumbering.append(new)
                base_number += int(live.sum())
            if self._id_map is not None:
                self._id_map.renumber(merged, renumbering, number)
        elif len(self._order) == end - start:  # everything deleted: keep one segment, never an empty generation
            new_order.append(merged[-1])
            merged = merged[:-1]
        new_order += self._order[end:]
        generation = self.generation + 1
        self._order = new_order
        entries = self._entries(generation, new_order, set())
        self._install(entries, generation)
        for n in merged:
            self._indexes.pop(n).close()
            self._deleted.pop(n)
        report.generation = generation
        return report

    # -- housekeeping ----------------------------------------------------------------------------------------
    def remove_unreferenced(self) -> list[str]:
        """Remove what the live commit does not reference: temp commits, staging directories, segments and
        delete files of older generations or of a writer that died before committing. Safe only under the
        write lock (it is held); readers that still map older files keep reading them (Linux keeps unlinked
        files alive while open)."""
        referenced = self.commit_state.referenced_paths() if (self.path / COMMIT).exists() else set()
        removed = []
        for tmp in stale_commit_temps(self.path):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
        for folder in (SEGMENTS_DIR, DELETES_DIR):
            directory = self.path / folder
            if not directory.is_dir():
                continue
            pending = {f"{SEGMENTS_DIR}/{segment_name(n)}" for n in getattr(self, "_pending_segments", [])}
            for entry in directory.iterdir():
                relative = f"{folder}/{entry.name}"
                if relative in referenced or relative in pending:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(relative)
        if (self.path / COMMIT).exists() and not any(e.name == BASE_SEGMENT for e in self.commit_state.segments):
            removed += self._remove_base_files()
        return removed

    def _remove_base_files(self) -> list[str]:
        """The original plain index's files, once a merge retired segment "." (its manifest first, so that a
        crash in between leaves files that no manifest names, never a half index that opens; the next writer
        removes the rest)."""
        manifest = self.path / "manifest.json"
        removed = []
        if manifest.exists():
            manifest.unlink()
            removed.append(manifest.name)
        keep = {COMMIT, LOCK, SEGMENTS_DIR, DELETES_DIR}
        for entry in self.path.iterdir():
            if entry.name not in keep and entry.is_file() and not entry.name.startswith(COMMIT):
                entry.unlink()
                removed.append(entry.name)
        fsync_dir(self.path)
        return removed


def verify_generation(index_dir: str | os.PathLike) -> dict[str, Any]:
    """Full checksums of every segment of the live generation and its delete bitmaps (IndexFormatError naming
    the faulty file); the summary of what was checked."""
    from engine.segments import open_generation

    generation = open_generation(index_dir, verify_checksums=True)
    try:
        return {**generation.summary(), "segments_verified": [s.name for s in generation.segments],
                "postings": generation.num_postings}
    finally:
        generation.close()
