"""The build pass of the BM25 field (engine.bm25): analyse each document's text, invert, weigh, quantize.

Built by default with every index (`python -m index_builder build`; `--no-bm25` skips it) into the staging
directory, so it shares the index's document numbers and ids. `python -m index_builder bm25 --index DIR` adds
(or rebuilds) it on an existing index from its document store (or `--corpus`, whose ids must match), atomically
(engine.index_format.add_parts).

Memory: the analysed documents are kept as flat term-id/count arrays until the end (BM25 needs the collection's
document frequencies and mean length before any weight is known): 8 bytes per (document, term) pair plus 8 per
document, outside --memory-budget-mb (the build's memory report lists it). A document without text costs 8 bytes.
"""
from __future__ import annotations

import argparse
import json
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from engine import bm25
from engine.impacts import plan_quantization, quantize
from engine.index_format import InvertedIndex, PartWriter, add_parts, create_array, open_index
from engine.manifest import PartInfo


class Bm25PartBuilder:
    """Feed texts in document-number order (`add`), then `write` the part's files into a directory."""

    def __init__(self, k1: float = bm25.DEFAULT_K1, b: float = bm25.DEFAULT_B, analyzer: bm25.Analyzer | None = None,
                 impact_bits: int = 16) -> None:
        if not (k1 >= 0 and np.isfinite(k1)):
            raise ValueError(f"--bm25-k1 must be finite and >= 0, got {k1}")
        if not 0 <= b <= 1:
            raise ValueError(f"--bm25-b must be in [0, 1], got {b}")
        self.k1, self.b = float(k1), float(b)
        self.analyzer = analyzer or bm25.Analyzer()
        self.impact_bits = impact_bits
        self.vocabulary: dict[str, int] = {}
        # Flat buffers (no Python object per document): term ids and counts of every (document, term) pair, and
        # each document's number of distinct terms.
        self._term_ids = array("I")
        self._counts = array("I")
        self._per_doc = array("q")

    @property
    def num_documents(self) -> int:
        return len(self._per_doc)

    def add(self, text: str) -> None:
        counts = Counter(self.analyzer.terms(text)) if text else {}
        vocab = self.vocabulary
        self._term_ids.extend(vocab.setdefault(t, len(vocab)) for t in counts)
        self._counts.extend(counts.values())
        self._per_doc.append(len(counts))

    def buffered_bytes(self) -> int:
        """Memory held by the buffered term ids, counts and per-document sizes."""
        return sum(len(a) * a.itemsize for a in (self._term_ids, self._counts, self._per_doc))

    def write(self, directory: Path) -> tuple[str, PartInfo]:
        directory = Path(directory)
        num_docs = self.num_documents
        per_doc = np.frombuffer(self._per_doc, dtype=np.int64) if num_docs else np.zeros(0, np.int64)
        terms = np.frombuffer(self._term_ids, dtype=np.uint32) if len(self._term_ids) else np.zeros(0, np.uint32)
        tfs = np.frombuffer(self._counts, dtype=np.uint32) if len(self._counts) else np.zeros(0, np.uint32)
        docs = np.repeat(np.arange(num_docs, dtype=np.uint32), per_doc)
        lengths = np.bincount(docs, weights=tfs, minlength=num_docs).astype(np.int64)
        vocab_size = len(self.vocabulary)
        df = np.bincount(terms, minlength=vocab_size)
        avgdl = float(lengths.mean()) if num_docs and lengths.sum() > 0 else 1.0
        weights = bm25.term_weights(tfs, lengths[docs], bm25.idf(num_docs, df)[terms], avgdl, self.k1, self.b)
        # Term-major order; stable, so document numbers stay ascending within a term.
        order = np.argsort(terms, kind="stable")
        plan = plan_quantization(float(weights.max()) if len(weights) else 0.0, self.impact_bits)
        offsets = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum(df, out=offsets[1:])
        for name, values, dtype in ((bm25.OFFSETS, offsets, np.int64), (bm25.DOC_NUMBERS, docs[order], np.uint32),
                                    (bm25.IMPACTS, quantize(weights[order], plan), plan.dtype)):
            out = create_array(directory, name, dtype, len(values))
            out[:] = values
            out.flush()
            del out
        terms_by_id = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (directory / bm25.VOCABULARY).write_text(json.dumps(terms_by_id, ensure_ascii=False), encoding="utf-8")
        params = {"k1": self.k1, "b": self.b, **self.analyzer.params(), "idf": "lucene",
                  "documents": num_docs, "avgdl": avgdl, "vocab_size": vocab_size, "postings": int(len(terms)),
                  "dtype": plan.dtype, "scale": plan.scale, "max_weight": plan.max_weight,
                  "empty_documents": int((lengths == 0).sum())}
        return bm25.PART, PartInfo(version=bm25.PART_VERSION, files=list(bm25.FILES), params=params)


def part_writer(texts_by_doc, k1: float = bm25.DEFAULT_K1, b: float = bm25.DEFAULT_B) -> PartWriter:
    """A writer for engine.index_format.add_parts; `texts_by_doc(index)` yields each document's text in order."""
    def write(index: InvertedIndex, staged: Path) -> tuple[str, PartInfo]:
        builder = Bm25PartBuilder(k1, b)
        for text in texts_by_doc(index):
            builder.add(text)
        if builder.num_documents != index.num_documents:
            raise ValueError(f"BM25: {builder.num_documents} texts for {index.num_documents} documents")
        return builder.write(staged)
    return write


def texts_from_store(index: InvertedIndex):
    if index.manifest.get("document_store") is not True:
        raise ValueError(f"{index.path}: no document store; give --corpus (the corpus the index was built from)")
    for doc in range(index.num_documents):
        stored = index.document(doc) or {}
        yield (stored.get("title", "") + " " + stored.get("text", "")).strip()


def texts_from_corpus(corpus: Path):
    from index_builder.corpus import read_corpus

    def texts(index: InvertedIndex):
        for position, doc in enumerate(read_corpus(corpus)):
            if position >= index.num_documents or index.external_id(position) != doc.id:
                raise ValueError(f"{corpus}: document #{position} ({doc.id!r}) is not the index's document "
                                 f"#{position}: use the corpus the index was built from")
            yield doc.encoder_text
    return texts


def add_bm25_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bm25-k1", type=float, default=bm25.DEFAULT_K1,
                        help=f"BM25 k1 of the BM25 field ({bm25.DEFAULT_K1})")
    parser.add_argument("--bm25-b", type=float, default=bm25.DEFAULT_B,
                        help=f"BM25 b of the BM25 field ({bm25.DEFAULT_B})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, type=Path, help="index directory to add the BM25 field to")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="the corpus the index was built from (default: the index's document store)")
    add_bm25_arguments(parser)


def run(args: argparse.Namespace) -> int:
    texts = texts_from_corpus(args.corpus) if args.corpus else texts_from_store
    manifest = add_parts(args.index, [part_writer(texts, args.bm25_k1, args.bm25_b)])
    params = manifest["parts"][bm25.PART]["params"]
    print(f"added the BM25 field to {args.index}: {params['vocab_size']} terms, {params['postings']} postings, "
          f"k1 {params['k1']}, b {params['b']}")
    open_index(args.index, verify_checksums=True).close()
    return 0
