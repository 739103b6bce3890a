"""The online write path (off unless SPLADE_WRITES=true): `PUT /documents` and `DELETE /documents`.

With writes on, the service is the index's one writer: it holds the index's write lock
(engine.lifecycle.IndexWriter) from the first write until it stops, so offline verbs wait for it (they get a
clear "another writer" error). Writes are serialised by one lock; searches never wait for them (they run on the
snapshot they took).

A write request is all or nothing:
1. every document is checked and encoded first (texts with the index's own document model, at most the
   index's terms per document; vectors mapped through the vocabulary): a bad one is a 422 naming
   `documents[i].<field>`, and nothing is written;
2. one commit (engine.lifecycle): new segment files and delete bitmaps, fsynced, then the commit file renamed
   into place: when it returns the write is durable;
3. the new generation is swapped in (service/reloader.py, without re-hashing files we have just written and
   fsynced), so the next search sees it;
4. only then the 200, with the commit's generation. A crash at any point before the commit file's rename
   leaves the previous generation, and the client had no 200; after it, the write is there whole.
The merge policy runs after a write in the background (writes wait for it, searches do not).
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from engine import InvalidQueryError, Searcher
from engine.errors import UnknownTokenError
from engine.segments import base_manifest
from engine.lifecycle import DocumentError, IndexWriter, NewDocument, WriterBusyError
from models.sparse import heaviest_terms
from service.errors import ApiError, detail
from service.reloader import IndexReloader, ReloadRefusedError
from service.settings import Settings

logger = logging.getLogger("service.writes")

# Documents per document-encoder call (memory: batch x tokens x vocabulary logits).
ENCODE_BATCH = 8


class WritesDisabledError(ApiError):
    status_code = 403
    error_type = "writes_disabled"


class CommittedNotServedError(ApiError):
    """The write is durable, but the generation holding it could not be served (the reload refused it)."""

    status_code = 503
    error_type = "committed_not_served"


class WriterBusyApiError(ApiError):
    status_code = 409
    error_type = "writer_busy"


def _invalid(exc: DocumentError) -> InvalidQueryError:
    """The writer's `documents[i].field: message` as a 422 naming that field."""
    field, _, message = str(exc).partition(": ")
    return InvalidQueryError(field if message else "documents", message or str(exc))


class DocumentWrites:
    def __init__(self, settings: Settings, searcher: Searcher, reloader: IndexReloader) -> None:
        self.settings = settings
        self.searcher = searcher
        self.reloader = reloader
        self.index_dir = Path(reloader.index_dir)
        facts = base_manifest(self.index_dir)
        self.doc_max_terms = facts.get("doc_max_terms")
        self.document_max_length = facts.get("document_max_length")
        self._lock = threading.Lock()
        self._writer: IndexWriter | None = None
        self._encoder = None
        self._merges = ThreadPoolExecutor(max_workers=1, thread_name_prefix="splade-merge")

    # -- resources ------------------------------------------------------------------------------------------
    def _index_writer(self) -> IndexWriter:
        if self._writer is None:
            try:
                self._writer = IndexWriter(self.index_dir)
            except WriterBusyError as exc:
                raise WriterBusyApiError(str(exc), [detail("index", "another writer holds the write lock")],
                                         headers={"Retry-After": "5"}) from None
        return self._writer

    def _document_encoder(self):
        if self._encoder is None:
            from models.runtime import RuntimeOptions, load_document_encoder

            self._encoder = load_document_encoder(self.settings.model_dir,
                                                  RuntimeOptions(device=self.settings.device, intra_op_threads=1),
                                                  max_length=self.document_max_length)
        return self._encoder

    def close(self) -> None:
        self._merges.shutdown(wait=True)
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    # -- encoding -------------------------------------------------------------------------------------------
    def _vector(self, position: int, vector: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        encoder = self.searcher.encoder
        term_ids, weights = [], []
        for token, weight in vector.items():
            term_id = encoder.token_id(token)
            if term_id is None:
                raise UnknownTokenError(token, f"documents[{position}].vector")
            term_ids.append(term_id)
            weights.append(weight)
        if len(set(term_ids)) != len(term_ids):
            raise InvalidQueryError(f"documents[{position}].vector", "two tokens map to the same vocabulary entry")
        return heaviest_terms(np.array(term_ids, np.int32), np.array(weights, np.float32), self.doc_max_terms)

    def _encoded(self, documents: list[Any]) -> list[NewDocument]:
        encoded: list[NewDocument | None] = [None] * len(documents)
        texts = [(i, d) for i, d in enumerate(documents) if d.text is not None]
        for i, d in enumerate(documents):
            if d.vector is not None:
                term_ids, weights = self._vector(i, d.vector)
                encoded[i] = NewDocument(d.id, term_ids, weights, title=d.title, text=None, metadata=d.metadata)
        if texts:
            encoder = self._document_encoder()
            for lo in range(0, len(texts), ENCODE_BATCH):
                window = texts[lo:lo + ENCODE_BATCH]
                strings = [(d.title + " " + d.text).strip() if d.title else d.text for _, d in window]
                for (i, d), (term_ids, weights) in zip(window, encoder.encode(strings, self.doc_max_terms)):
                    encoded[i] = NewDocument(d.id, term_ids, weights, title=d.title, text=d.text,
                                             metadata=d.metadata)
        return encoded  # type: ignore[return-value]

    # -- writes ---------------------------------------------------------------------------------------------
    def put(self, documents: list[Any]) -> dict[str, Any]:
        """Add (or replace, by id) `documents`, durably and visibly; see the module doc."""
        seen: dict[str, int] = {}
        for i, d in enumerate(documents):
            if d.id in seen:
                raise InvalidQueryError(f"documents[{i}].id", f"duplicate id {d.id!r} (also documents[{seen[d.id]}])")
            seen[d.id] = i
        batch = self._encoded(documents)
        with self._lock:
            writer = self._index_writer()
            try:
                replaced = writer.add(batch, replace=True)
                report = writer.pending
                generation = writer.commit()
            except DocumentError as exc:
                writer.rollback()
                raise _invalid(exc) from None
            except BaseException:
                writer.rollback()
                raise
            added = len(batch) - replaced
            return self._published(generation, added=added, replaced=replaced,
                                   saturated_postings=report.saturated_postings)

    def delete(self, ids: list[str]) -> dict[str, Any]:
        """Delete `ids` (every one must be live, else nothing is deleted), durably and visibly."""
        seen: dict[str, int] = {}
        for i, doc_id in enumerate(ids):
            if doc_id in seen:
                raise InvalidQueryError(f"ids[{i}]", f"duplicate id {doc_id!r} (also ids[{seen[doc_id]}])")
            seen[doc_id] = i
        with self._lock:
            writer = self._index_writer()
            try:
                unknown = writer.delete(ids)
                if unknown:
                    writer.rollback()
                    first = seen[unknown[0]]
                    shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
                    raise InvalidQueryError(f"ids[{first}]", f"{len(unknown)} unknown id(s), nothing deleted: {shown}")
                generation = writer.commit()
            except BaseException:
                writer.rollback()
                raise
            return self._published(generation, deleted=len(ids))

    def _published(self, generation: int, **counts: int) -> dict[str, Any]:
        """Swap the committed generation in (the next search sees it), then schedule the merge policy."""
        try:
            status = self.reloader.reload("write", verify_checksums=False)
        except ReloadRefusedError as exc:
            raise CommittedNotServedError(f"the write is committed (generation {generation}) but the new "
                                          f"generation could not be served: {exc.message}", exc.details) from None
        self._merges.submit(self._merge)
        return {"generation": generation, "served_generation": status["generation"], **counts}

    def _merge(self) -> None:
        try:
            with self._lock:
                if self._writer is None:
                    return
                merges = self._writer.maybe_merge()
                if merges:
                    self.reloader.reload("merge", verify_checksums=False)
        except Exception:  # noqa: BLE001 - a failed merge leaves the committed generation serving
            logger.exception("background merge failed; the committed generation keeps serving")


def writes_disabled() -> WritesDisabledError:
    return WritesDisabledError("document writes are off: start the service with SPLADE_WRITES=true",
                               [detail("SPLADE_WRITES", "writes are disabled on this server")])
