"""engine.passages: on a passage index every scorer's answer, collapsed to documents, is exactly the top-k
documents by maximum passage score (ties: lower document number), with the passage that reached each one."""
from __future__ import annotations

import numpy as np
import pytest

from engine import ServedIndex, SparseQuery, passages
from engine.index_format import open_index
from index_builder.csr_index import build_index_from_csr
from tests.support.oracle import brute_force_top_k, tie_heavy_collection, zipf_collection

VOCAB = 300


def oracle_documents(index, document_of_row, query: SparseQuery, k: int, allowed=None):
    """Brute force: every row's exact score, each document's maximum (first row on ties), ranked."""
    rows, scores = brute_force_top_k(index.offsets, index.doc_numbers, index.impacts, query.term_ids, query.weights,
                                     index.scale, len(document_of_row), len(document_of_row))
    best: dict[int, tuple[float, int]] = {}
    for row, score in zip(rows.tolist(), scores.tolist()):
        doc = int(document_of_row[row])
        if allowed is not None and not allowed[doc]:
            continue
        if doc not in best or score > best[doc][0] or (score == best[doc][0] and row < best[doc][1]):
            best[doc] = (score, row)
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k]
    return ([d for d, _ in ranked], [np.float32(s) for _, (s, _) in ranked], [r for _, (_, r) in ranked])


def passage_index(tmp_path, collection, rng, max_passages=5, name="passages"):
    num_rows = collection.shape[0]
    counts = []
    while sum(counts) < num_rows:
        counts.append(int(min(rng.integers(1, max_passages + 1), num_rows - sum(counts))))
    document_of_row = np.repeat(np.arange(len(counts)), counts)
    build_index_from_csr(tmp_path / name, collection.indptr, collection.indices.astype(np.int32),
                         collection.data.astype(np.float32), vocab_size=VOCAB,
                         ids=[f"doc-{d}" for d in range(len(counts))], document_of_row=document_of_row)
    return open_index(tmp_path / name, verify_checksums=True), document_of_row


def queries(rng, n=12):
    out = []
    for _ in range(n):
        terms = rng.choice(VOCAB, size=int(rng.integers(1, 12)), replace=False).astype(np.int32)
        weights = np.sort(rng.choice(np.array([0.5, 1.0, 2.0], np.float32), size=len(terms)))[::-1]
        out.append(SparseQuery(terms, weights.astype(np.float32)))
    return out


@pytest.mark.parametrize("make", [zipf_collection, tie_heavy_collection], ids=["zipf", "tie-heavy"])
@pytest.mark.parametrize("scorer", ["exact", "exact-blocked"])
def test_collapsed_top_k_is_the_top_k_documents_by_best_passage(tmp_path, make, scorer):
    rng = np.random.default_rng(7)
    index, document_of_row = passage_index(tmp_path, make(rng, 900, VOCAB, 12).tocsr(), rng)
    assert index.num_documents == len(np.unique(document_of_row)) < len(document_of_row)
    served = ServedIndex(index)
    with served.acquire() as snapshot:
        for query in queries(rng):
            for k in (1, 10, 100):
                top, _ = snapshot.search(query, k, scorer)
                docs, scores, rows = oracle_documents(index, document_of_row, query, k)
                assert top.doc_numbers.tolist() == docs
                assert top.scores.tolist() == scores
                assert top.passage_rows.tolist() == rows
                assert index.external_ids(top.doc_numbers) == [f"doc-{d}" for d in docs]


@pytest.mark.parametrize("scorer", ["exact", "exact-blocked"])
@pytest.mark.parametrize("share", [0.02, 0.5])
def test_the_document_mask_applies_to_every_passage_of_a_document(tmp_path, scorer, share):
    rng = np.random.default_rng(11)
    index, document_of_row = passage_index(tmp_path, zipf_collection(rng, 900, VOCAB, 12).tocsr(), rng)
    allowed = rng.random(index.num_documents) < share
    with ServedIndex(index).acquire() as snapshot:
        for query in queries(rng, 6):
            top, _ = snapshot.search(query, 10, scorer, allowed=allowed)
            docs, scores, rows = oracle_documents(index, document_of_row, query, 10, allowed)
            assert top.doc_numbers.tolist() == docs and top.scores.tolist() == scores
            assert top.passage_rows.tolist() == rows
        with pytest.raises(ValueError, match="allowed must be a bool array"):
            snapshot.search(queries(rng, 1)[0], 10, allowed=np.ones(len(document_of_row), bool))  # rows, not docs


def test_a_document_with_many_top_passages_makes_the_search_fetch_deeper(tmp_path):
    # Document 0 has 40 passages that all outscore every other document's: the first k x 4 rows hold one
    # document only, so the collapse must fetch deeper (doubling) to return k distinct documents.
    rows = [np.array([0, 1]) for _ in range(40)] + [np.array([1]) for _ in range(30)]
    weights = [np.array([3.0, 1.0]) for _ in range(40)] + [np.full(1, 0.5 + 0.05 * i) for i in range(30)]
    indptr = np.concatenate(([0], np.cumsum([len(r) for r in rows])))
    document_of_row = np.concatenate((np.zeros(40, int), np.arange(1, 31)))
    build_index_from_csr(tmp_path / "deep", indptr, np.concatenate(rows).astype(np.int32),
                         np.concatenate(weights).astype(np.float32), vocab_size=4, document_of_row=document_of_row)
    index = open_index(tmp_path / "deep")
    with ServedIndex(index).acquire() as snapshot:
        top, _ = snapshot.search(SparseQuery(np.array([0, 1], np.int32), np.array([1.0, 1.0], np.float32)), 5)
    assert top.doc_numbers.tolist() == [0, 30, 29, 28, 27]
    assert top.passage_rows[0] == 0  # equal passages: the document's first
    assert top.stats["passage_fetches"] > 1


def test_passage_map_and_allowed_rows(tmp_path):
    rng = np.random.default_rng(3)
    index, document_of_row = passage_index(tmp_path, zipf_collection(rng, 50, VOCAB, 8).tocsr(), rng)
    pmap = passages.map_of(index)
    assert pmap.num_passages == len(document_of_row) and pmap.num_documents == index.num_documents
    assert index.typed_manifest.counts.documents == index.num_documents
    doc = int(document_of_row[-1])
    assert list(pmap.rows_of(doc)) == np.flatnonzero(document_of_row == doc).tolist()
    assert pmap.passage(len(document_of_row) - 1)["index"] == len(pmap.rows_of(doc)) - 1
    allowed = np.zeros(index.num_documents, bool)
    allowed[doc] = True
    assert np.flatnonzero(pmap.allowed_rows(allowed)).tolist() == list(pmap.rows_of(doc))
    assert passages.map_of(open_index(tmp_path / "passages")) is not None


def test_an_index_without_the_part_is_untouched(tmp_path):
    collection = zipf_collection(np.random.default_rng(5), 40, VOCAB, 8).tocsr()
    build_index_from_csr(tmp_path / "plain", collection.indptr, collection.indices.astype(np.int32),
                         collection.data.astype(np.float32), vocab_size=VOCAB)
    index = open_index(tmp_path / "plain")
    assert passages.map_of(index) is None
    with ServedIndex(index).acquire() as snapshot:
        assert snapshot.rows is index
