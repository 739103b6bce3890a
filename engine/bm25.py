"""The BM25 field: an optional index part (`bm25`) scored by the exact kernel, and its query side.

What is stored (written by index_builder.bm25_part at build time, or added to an existing index):

    bm25.offsets.npy       int64 [bm25 vocabulary + 1]   same layout as the SPLADE field's arrays
    bm25.doc_numbers.npy   uint32 [postings]             the same document numbers (same ids) as the index
    bm25.impacts.npy       uint16 [postings]             quantized BM25 document weights (weight = impact * scale)
    bm25.vocabulary.json   the analysed terms, a JSON list: term id = position

A document weight is Lucene's BM25 term weight, idf included:
    idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl)),   idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
(Lucene dropped the constant (k1 + 1) factor, which changes no ranking). A query's weight per term is its count
in the query, so score(q, d) = sum over query terms of count * weight, i.e. plain BM25; the exact kernel sums
it over the part's arrays exactly as it sums SPLADE impacts. uint16 impacts keep the quantization error under
1/65535 of the largest weight (uint8 measurably moved SciFact's BM25 ranking).

The analyser is the reference one for BEIR BM25 (as in the bm25s and Lucene English analysers): Unicode word
tokens of at least two characters (`(?u)\\b\\w\\w+\\b`), lowercased, Lucene's English stop list, the Snowball
English stemmer (PyStemmer). Its settings are stored in the part, so queries are analysed as documents were.
"""
from __future__ import annotations

import json
import re
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import IndexFormatError, InvalidQueryError
from engine.index_format import InvertedIndex
from engine.kernels.exact import score_exact
from engine.kernels.selected import score_selected
from engine.query import SparseQuery

PART = "bm25"
PART_VERSION = 1
OFFSETS = "bm25.offsets.npy"
DOC_NUMBERS = "bm25.doc_numbers.npy"
IMPACTS = "bm25.impacts.npy"
VOCABULARY = "bm25.vocabulary.json"
FILES = (OFFSETS, DOC_NUMBERS, IMPACTS, VOCABULARY)
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# Lucene's (and Elasticsearch's) default English stop set.
ENGLISH_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with"))
STOPWORD_LISTS = {"english": ENGLISH_STOPWORDS, "none": frozenset()}


@dataclass(frozen=True)
class Analyzer:
    """Text -> analysed terms. Thread-safe: each thread gets its own stemmer (PyStemmer objects are not)."""

    language: str = "english"
    stopwords: str = "english"          # a key of STOPWORD_LISTS
    token_pattern: str = TOKEN_PATTERN
    _local: threading.local = field(default_factory=threading.local, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.stopwords not in STOPWORD_LISTS:
            raise ValueError(f"stopwords must be one of {sorted(STOPWORD_LISTS)}, got {self.stopwords!r}")
        self._stemmer()  # fail now for an unknown language

    def _stemmer(self):
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            import Stemmer  # PyStemmer: the Snowball stemmers in C

            try:
                stemmer = self._local.stemmer = Stemmer.Stemmer(self.language)
            except KeyError:
                raise ValueError(f"no Snowball stemmer for language {self.language!r}") from None
        return stemmer

    @property
    def _regex(self) -> re.Pattern:
        return _compiled(self.token_pattern)

    def terms(self, text: str) -> list[str]:
        stop = STOPWORD_LISTS[self.stopwords]
        tokens = [t for t in self._regex.findall(text.lower()) if t not in stop]
        return self._stemmer().stemWords(tokens)

    def params(self) -> dict[str, Any]:
        return {"language": self.language, "stopwords": self.stopwords, "token_pattern": self.token_pattern}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Analyzer:
        return cls(language=params["language"], stopwords=params["stopwords"], token_pattern=params["token_pattern"])


_PATTERNS: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def idf(num_documents: int, document_frequency: np.ndarray) -> np.ndarray:
    """Lucene's BM25 idf: always positive."""
    df = np.asarray(document_frequency, dtype=np.float64)
    return np.log1p((num_documents - df + 0.5) / (df + 0.5))


def term_weights(tf: np.ndarray, doc_length: np.ndarray, idf_t: np.ndarray, avgdl: float, k1: float, b: float
                 ) -> np.ndarray:
    """BM25 document weights (float64), element-wise over postings."""
    tf = np.asarray(tf, dtype=np.float64)
    norm = k1 * (1.0 - b + b * np.asarray(doc_length, dtype=np.float64) / avgdl)
    return idf_t * tf / (tf + norm)


class Bm25Field:
    """The `bm25` part of one opened index: arrays, vocabulary, analyser; scores a text with the exact kernel."""

    def __init__(self, index: InvertedIndex) -> None:
        info = index.parts.get(PART)
        if info is None:
            raise IndexFormatError(f"{index.path}: the index has no {PART!r} part")
        params = info.params
        self.params = dict(params)
        self.analyzer = Analyzer.from_params(params)
        vocab_path = index.path / VOCABULARY
        try:
            terms = json.loads(vocab_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{vocab_path}: unreadable ({exc})") from exc
        if not isinstance(terms, list) or len(terms) != int(params["vocab_size"]):
            raise IndexFormatError(f"{vocab_path}: expected a list of {params['vocab_size']} terms")
        self.terms = terms
        self.term_ids = {term: i for i, term in enumerate(terms)}
        postings = int(params["postings"])
        self.offsets = index.part_array(PART, OFFSETS, np.int64, len(terms) + 1)
        self.doc_numbers = index.part_array(PART, DOC_NUMBERS, np.uint32, postings)
        self.impacts = index.part_array(PART, IMPACTS, np.dtype(params["dtype"]), postings)
        self.scale = float(params["scale"])
        self.num_documents = index.num_documents
        self._local = threading.local()

    def query(self, text: str) -> SparseQuery:
        """Analysed query terms found in the vocabulary, weighted by their count (heaviest first, then term id)."""
        counts = Counter(self.term_ids[t] for t in self.analyzer.terms(text) if t in self.term_ids)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return SparseQuery(np.array([t for t, _ in ordered], np.int32), np.array([c for _, c in ordered], np.float32))

    def search(self, query: SparseQuery, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, int]:
        """(document numbers, float32 scores, postings traversed) of the top-k among the documents `allowed`
        lets through (None: all; see engine.scorers.masking)."""
        from engine.scorers import masking
        allowed = masking.checked(allowed, self.num_documents)
        selected = masking.selected_documents(self.offsets, query, allowed)
        if selected is not None:
            docs, scores, _ = score_selected(self.offsets, self.doc_numbers, self.impacts, query.term_ids,
                                             query.weights, np.float32(self.scale), int(k), selected)
            return docs, scores, 0
        accumulator = getattr(self._local, "accumulator", None)
        if accumulator is None:
            accumulator = self._local.accumulator = np.zeros(self.num_documents, dtype=np.float32)
        docs, scores, postings = score_exact(self.offsets, self.doc_numbers, self.impacts, query.term_ids,
                                             query.weights, np.float32(self.scale), int(k), accumulator,
                                             masking.kernel_mask(allowed))
        return docs, scores, int(postings)

    def contributions(self, doc_number: int, query: SparseQuery) -> dict[str, float]:
        """Per analysed query term, its part of the document's BM25 score (terms the document contains)."""
        parts: dict[str, float] = {}
        scale = np.float32(self.scale)
        for term, weight in zip(query.term_ids.tolist(), query.weights.tolist()):
            start, end = int(self.offsets[term]), int(self.offsets[term + 1])
            docs = self.doc_numbers[start:end]
            pos = int(np.searchsorted(docs, doc_number))
            if pos < len(docs) and int(docs[pos]) == doc_number:
                parts[self.terms[term]] = float((np.float32(weight) * scale) * np.float32(self.impacts[start + pos]))
        return parts


_FIELDS: weakref.WeakKeyDictionary[InvertedIndex, Bm25Field] = weakref.WeakKeyDictionary()
_FIELDS_LOCK = threading.Lock()


def has_field(index: InvertedIndex) -> bool:
    return PART in index.parts


def field_of(index: InvertedIndex, field_name: str = "mode") -> Bm25Field:
    """The index's BM25 field (opened once per index); InvalidQueryError naming `field_name` if it has none."""
    if not has_field(index):
        raise InvalidQueryError(field_name, "this index has no BM25 field (built with --no-bm25, or before BM25 "
                                            "existed: add it with `python -m index_builder bm25`)", "splade")
    with _FIELDS_LOCK:
        opened = _FIELDS.get(index)
        if opened is None:
            opened = _FIELDS[index] = Bm25Field(index)
    return opened


def document_terms(analyzer: Analyzer, texts: Iterable[str]) -> Iterable[Counter]:
    """Term counts of each text (what the build pass and the reference implementation both start from)."""
    for text in texts:
        yield Counter(analyzer.terms(text))
