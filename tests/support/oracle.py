"""The one oracle every scorer is checked against: brute-force dense numpy (bit-for-bit float32, the exact
scorer's definition) and an independent scipy float64 sparse product; plus the collections the checks use.

score(d) = sum over query terms t, in query order, of float32(float32(w_t) * float32(scale)) * float32(impact);
ranking: score descending, ties to the lower document number; documents scoring 0 are not hits.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def brute_force_top_k(offsets, doc_numbers, impacts, term_ids, weights, scale, k, num_docs, allowed=None):
    """Dense numpy, the same float32 operations in the same order; ties to the lower document number; only
    documents `allowed` (bool[num_docs], None: all) are hits."""
    acc = np.zeros(num_docs, dtype=np.float32)
    vocab = len(offsets) - 1
    for term, weight in zip(term_ids, weights):
        if not 0 <= term < vocab:
            continue
        lo, hi = offsets[term], offsets[term + 1]
        acc[doc_numbers[lo:hi]] += (np.float32(weight) * np.float32(scale)) * impacts[lo:hi].astype(np.float32)
    matching = np.flatnonzero((acc > 0) if allowed is None else (acc > 0) & allowed)
    order = np.lexsort((matching, -acc[matching]))[:k]
    return matching[order], acc[matching[order]]


def scipy_scores(offsets, doc_numbers, impacts, term_ids, weights, scale, num_docs):
    """Float64 sparse product: an independent check of the scores (tolerance, not bitwise)."""
    vocab = len(offsets) - 1
    term_of_posting = np.repeat(np.arange(vocab), np.diff(offsets))
    matrix = sp.csr_matrix((impacts.astype(np.float64) * scale, (doc_numbers, term_of_posting)),
                           shape=(num_docs, vocab))
    query = np.zeros(vocab)
    for term, weight in zip(term_ids, weights):
        if 0 <= term < vocab:
            query[term] += float(np.float32(weight))
    return matrix @ query


def random_postings(rng, num_docs, vocab, density, max_impact, dtype):
    offsets = np.zeros(vocab + 1, dtype=np.int64)
    docs, imps = [], []
    for term in range(vocab):
        df = rng.binomial(num_docs, density)
        d = np.sort(rng.choice(num_docs, size=df, replace=False)).astype(np.uint32)
        docs.append(d)
        imps.append(rng.integers(1, max_impact + 1, size=df).astype(dtype))
        offsets[term + 1] = offsets[term] + df
    return offsets, np.concatenate(docs), np.concatenate(imps)


def zipf_collection(rng, num_docs, vocab, terms_per_doc, head_df=0.9):
    """SPLADE-like: Zipf term popularity with a heavy head (top term in ~90% of documents), lognormal weights."""
    popularity = 1.0 / np.arange(1, vocab + 1) ** 1.1
    popularity /= popularity.sum()
    rows, cols = [], []
    for doc in range(num_docs):
        n = max(1, int(rng.poisson(terms_per_doc)))
        terms = np.unique(rng.choice(vocab, size=n, p=popularity))
        if rng.random() < head_df:
            terms = np.union1d(terms, [0])
        rows.append(np.full(len(terms), doc))
        cols.append(terms)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    weights = rng.lognormal(mean=-0.5, sigma=0.6, size=len(rows)).astype(np.float32)
    return sp.csr_matrix((weights, (rows, cols)), shape=(num_docs, vocab))


def tie_heavy_collection(rng, num_docs, vocab, terms_per_doc):
    """Few impact levels and few distinct weights: most scores tie, so the tie rule decides the top-k."""
    rows, cols = [], []
    for doc in range(num_docs):
        terms = np.unique(rng.integers(0, vocab, size=max(1, int(rng.poisson(terms_per_doc)))))
        rows.append(np.full(len(terms), doc))
        cols.append(terms)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    weights = rng.choice(np.array([0.5, 1.0], np.float32), size=len(rows))
    return sp.csr_matrix((weights, (rows, cols)), shape=(num_docs, vocab))


def random_collection(rng, num_docs, vocab, density):
    matrix = sp.random(num_docs, vocab, density=density, format="csr", random_state=rng, dtype=np.float32)
    matrix.data = (matrix.data * 4 + 0.01).astype(np.float32)
    return matrix
