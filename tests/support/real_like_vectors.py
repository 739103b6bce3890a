"""A seeded, real-like collection of SPLADE document vectors written as vectors JSONL (the documented path).

Real-like means the statistics that drive a build's memory and time: about 140 distinct terms per document
(SPLADE-Tiny's mean is 143), a skewed document frequency (the most popular term in about two thirds of the
documents) and lognormal weights that are smaller for popular terms. Tokens are the model's own vocabulary, so
`python -m index_builder build` reads the file with the real tokenizer.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def real_like_csr(num_docs: int, vocab_size: int, terms_per_doc: int = 143, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, term_ids, weights) of `num_docs` documents: term ids ascending within a document, float32 > 0."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(30, vocab_size + 30, dtype=np.float64) ** 1.1
    order = rng.permutation(vocab_size)  # popular terms spread over the vocabulary, not just the low ids
    cdf = np.cumsum(popularity[np.argsort(order)])
    cdf /= cdf[-1]
    # Draws with replacement, deduplicated per document: popular terms repeat, so draw more than we keep.
    draws = int(terms_per_doc * 1.12)
    terms = np.searchsorted(cdf, rng.random((num_docs, draws))).clip(0, vocab_size - 1)
    keys = np.unique((np.arange(num_docs, dtype=np.int64)[:, None] * vocab_size + terms).ravel())
    doc_of, term_ids = np.divmod(keys, vocab_size)
    indptr = np.zeros(num_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(doc_of, minlength=num_docs), out=indptr[1:])
    rank = np.argsort(np.argsort(-popularity[np.argsort(order)]))[term_ids]  # 0 = most popular term
    weights = rng.lognormal(mean=-0.9 + 0.08 * np.log1p(rank), sigma=0.6).astype(np.float32)
    weights = np.round(weights, 4).clip(1e-4, None).astype(np.float32)
    return indptr, term_ids.astype(np.int32), weights


def write_vectors_jsonl(path: str | Path, indptr: np.ndarray, term_ids: np.ndarray, weights: np.ndarray,
                        tokens: Sequence[str], id_prefix: str = "doc-") -> Path:
    """One line `{"id", "vector": {token: weight}}` per document; weights as the shortest float32 decimal."""
    token_json = [json.dumps(token, ensure_ascii=False) for token in tokens]
    weight_text = [str(w) for w in weights.tolist()]
    term_list = term_ids.tolist()
    bounds = indptr.tolist()
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for doc in range(len(bounds) - 1):
            pairs = ", ".join(f"{token_json[term_list[i]]}: {weight_text[i]}"
                              for i in range(bounds[doc], bounds[doc + 1]))
            handle.write(f'{{"id": "{id_prefix}{doc}", "vector": {{{pairs}}}}}\n')
    return path
