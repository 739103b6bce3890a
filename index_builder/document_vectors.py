"""Corpus documents -> sparse vectors (term ids, weights), in corpus order.

Texts are encoded in windows of `batch_size * WINDOW_BATCHES` documents: the window is tokenized once, sorted
by token length, cut into batches of similar length (little padding: the encoder cost grows with the longest
text of a batch), and the vectors are put back in corpus order. With `max_logits_bytes` (the build's memory
budget for the encoder, index_builder.memory_budget), a batch of long texts holds fewer documents, so that its
[rows, tokens, vocab] float32 logits stay under it. Pre-encoded documents are mapped from tokens to
term ids and pruned by the same rule (`models.sparse.heaviest_terms`), so an index built from saved vectors
equals one built from text.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np

from index_builder.corpus import CorpusDocument, CorpusError
from models.sparse import SparseVector, heaviest_terms

WINDOW_BATCHES = 16
EMPTY_VECTOR: SparseVector = (np.zeros(0, np.int32), np.zeros(0, np.float32))


def windows(documents: Iterable[CorpusDocument], size: int) -> Iterator[list[CorpusDocument]]:
    iterator = iter(documents)
    while window := list(islice(iterator, size)):
        yield window


def encode_texts(encoder, documents: list[CorpusDocument], batch_size: int,
                 max_terms: int | None, max_logits_bytes: int | None = None) -> list[SparseVector]:
    """Vectors of one window of documents; an empty text gets an empty vector (it matches nothing)."""
    vectors: list[SparseVector] = [EMPTY_VECTOR] * len(documents)
    positions = [i for i, doc in enumerate(documents) if doc.encoder_text]
    if not positions:
        return vectors
    batch = encoder.tokenize([documents[i].encoder_text for i in positions])
    lengths = batch.attention_mask.sum(axis=1)
    by_length = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(by_length):
        take = batch_size
        if max_logits_bytes is not None:  # ascending lengths: the batch's last row is its longest
            longest = int(lengths[by_length[min(start + batch_size, len(by_length)) - 1]])
            take = max(1, min(batch_size, max_logits_bytes // (max(1, longest) * encoder.vocab_size * 4)))
        rows = by_length[start:start + take]
        start += take
        # Same type as the tokenizer's batch; rows(0, n) drops the padding columns this batch does not need.
        sub = type(batch)(batch.input_ids[rows], batch.attention_mask[rows]).rows(0, len(rows))
        for row, (ids, weights) in zip(rows.tolist(), encoder.encode_tokenized(sub, max_terms)):
            vectors[positions[row]] = (np.asarray(ids, np.int32), np.asarray(weights, np.float32))
    return vectors


def vectors_from_tokens(encoder, documents: list[CorpusDocument], max_terms: int | None) -> list[SparseVector]:
    """Pre-encoded {token: weight} documents -> term ids via the encoder's vocabulary, pruned."""
    vectors = []
    for doc in documents:
        if doc.vector is None:
            raise CorpusError(f"document {doc.id!r} has no vector")
        term_ids = np.empty(len(doc.vector), dtype=np.int32)
        weights = np.empty(len(doc.vector), dtype=np.float32)
        for i, (token, weight) in enumerate(doc.vector.items()):
            term_id = encoder.token_id(token)
            if term_id is None:
                raise CorpusError(f"document {doc.id!r}: unknown token {token!r} (not in the model's vocabulary)")
            term_ids[i] = term_id
            weights[i] = weight
        keep = weights > 0  # a positive float64 weight can underflow to 0 in float32
        vectors.append(heaviest_terms(term_ids[keep], weights[keep], max_terms))
    return vectors
