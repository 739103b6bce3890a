"""A seeded synthetic SPLADE-like collection for the index benchmarks (written for this project).

Documents draw about `terms_per_doc` distinct terms from a Zipf-like popularity over a BERT-sized vocabulary
(p(rank r) ~ 1 / (r + offset) ** exponent); the `heavy` profile also puts the top term in ~90% of documents,
as real SPLADE output does (a handful of terms like "the" / "." appear nearly everywhere). Weights are
lognormal and smaller for popular terms (as learned weights behave like an IDF). Queries draw about
`terms_per_query` distinct terms from a flatter popularity (queries favour content terms).
Generation is chunked, so 1M documents need ~2 GB at peak; the same seed gives the same collection.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOCAB_SIZE = 30522


@dataclass(frozen=True)
class Profile:
    name: str
    exponent: float = 1.0
    offset: float = 50.0
    head_fraction: float = 0.0   # share of documents that get the top term on top of their draws
    terms_per_doc: int = 120
    terms_per_query: int = 25
    query_exponent: float = 0.6


PROFILES = {
    "light": Profile("light", terms_per_doc=113, query_exponent=0.5),
    "heavy": Profile("heavy", exponent=1.0, offset=10.0, head_fraction=0.9),
}


@dataclass
class Collection:
    indptr: np.ndarray      # int64 [docs + 1]
    term_ids: np.ndarray    # int32, ascending within a document
    weights: np.ndarray     # float32 > 0
    query_indptr: np.ndarray
    query_term_ids: np.ndarray
    query_weights: np.ndarray

    @property
    def num_documents(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_queries(self) -> int:
        return len(self.query_indptr) - 1

    def query(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.query_indptr[i], self.query_indptr[i + 1]
        return self.query_term_ids[lo:hi], self.query_weights[lo:hi]


def _popularity(profile: Profile, exponent: float) -> np.ndarray:
    ranks = np.arange(VOCAB_SIZE, dtype=np.float64)
    p = 1.0 / (ranks + profile.offset) ** exponent
    return p / p.sum()


def _draw_rows(rng, rows: int, mean_terms: int, cdf: np.ndarray, rank_to_term: np.ndarray,
               head_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, term ids) of `rows` rows with ~mean_terms distinct terms each, drawn from the cdf."""
    draws = np.maximum(1, rng.poisson(mean_terms, size=rows))
    # Oversample a little: duplicates removed below would otherwise shorten popular-heavy rows.
    draws = (draws * 1.1).astype(np.int64)
    row_of = np.repeat(np.arange(rows, dtype=np.int64), draws)
    ranks = np.searchsorted(cdf, rng.random(len(row_of)), side="right").clip(0, VOCAB_SIZE - 1)
    if head_fraction:
        head_rows = np.flatnonzero(rng.random(rows) < head_fraction)
        row_of = np.concatenate([row_of, head_rows])
        ranks = np.concatenate([ranks, np.zeros(len(head_rows), dtype=ranks.dtype)])
    keys = np.sort(row_of * VOCAB_SIZE + rank_to_term[ranks])
    # Sort and mask rather than np.unique, which is many times slower on large arrays with this numpy.
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    row_of, term_ids = keys // VOCAB_SIZE, (keys % VOCAB_SIZE).astype(np.int32)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=rows), out=indptr[1:])
    return indptr, term_ids


def _weights(rng, term_ids: np.ndarray, term_rank: np.ndarray, mu: float) -> np.ndarray:
    rarity = np.log1p(term_rank[term_ids]) / np.log(VOCAB_SIZE)   # 0 for the top term, ~1 for the rarest
    return (rng.lognormal(mu, 0.5, size=len(term_ids)) * (0.3 + rarity)).astype(np.float32) + np.float32(1e-3)


def generate(num_documents: int, num_queries: int = 1000, profile: str | Profile = "light", seed: int = 0,
             chunk: int = 100_000) -> Collection:
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    rng = np.random.default_rng([seed, 0])
    rank_to_term = rng.permutation(VOCAB_SIZE).astype(np.int64)  # popular terms are not simply the low ids
    term_rank = np.empty(VOCAB_SIZE, dtype=np.int64)
    term_rank[rank_to_term] = np.arange(VOCAB_SIZE)
    doc_cdf = np.cumsum(_popularity(profile, profile.exponent))
    indptrs, terms, weights = [], [], []
    for number, start in enumerate(range(0, num_documents, chunk)):
        rows = min(chunk, num_documents - start)
        chunk_rng = np.random.default_rng([seed, 1, number])  # chunked seeds: 100k is a prefix of 1M
        indptr, term_ids = _draw_rows(chunk_rng, rows, profile.terms_per_doc, doc_cdf, rank_to_term,
                                      profile.head_fraction)
        indptrs.append(indptr[1:] + (indptrs[-1][-1] if indptrs else 0))
        terms.append(term_ids)
        weights.append(_weights(chunk_rng, term_ids, term_rank, mu=0.0))
    indptr = np.concatenate([np.zeros(1, np.int64)] + indptrs)
    query_rng = np.random.default_rng([seed, 2])
    query_cdf = np.cumsum(_popularity(profile, profile.query_exponent))
    query_indptr, query_terms = _draw_rows(query_rng, num_queries, profile.terms_per_query, query_cdf,
                                           rank_to_term)
    query_weights = _weights(query_rng, query_terms, term_rank, mu=-0.3)
    return Collection(indptr, np.concatenate(terms), np.concatenate(weights), query_indptr, query_terms,
                      query_weights)


def load_calibrated(folder: str, tag: str) -> Collection:
    """Read docs_<tag>.npz and queries.npz written by ../shared/bench/synth_calibrated.py (benchmarks only)."""
    import os

    docs = np.load(os.path.join(folder, f"docs_{tag}.npz"))
    queries = np.load(os.path.join(folder, "queries.npz"))
    return Collection(docs["indptr"].astype(np.int64), docs["indices"].astype(np.int32),
                      docs["data"].astype(np.float32), queries["indptr"].astype(np.int64),
                      queries["indices"].astype(np.int32), queries["data"].astype(np.float32))
