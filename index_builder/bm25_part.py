"""The build pass of the BM25 field (engine.bm25): analyse each document's text, invert, weigh, quantize.

Built by default with every index (`python -m index_builder build`; `--no-bm25` skips it) into the staging
directory, so it shares the index's document numbers and ids. `python -m index_builder bm25 --index DIR` adds
(or rebuilds) it on an existing index from its document store (or `--corpus`, whose ids must match), atomically
(engine.index_format.add_parts).

The part itself is written by engine.bm25_writer (shared with the segment writers; its memory bound is
described there); this module is the `bm25` verb and the corpus text source.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine import bm25
from engine.bm25_writer import DEFAULT_MEMORY_BUDGET, Bm25PartBuilder, part_writer, texts_from_store
from engine.index_format import InvertedIndex, add_parts, open_index

__all__ = ["Bm25PartBuilder", "part_writer", "texts_from_store", "texts_from_corpus", "add_bm25_arguments",
           "add_arguments", "run"]


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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, type=Path, help="index directory to add the BM25 field to")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="the corpus the index was built from (default: the index's document store)")
    parser.add_argument("--memory-budget-mb", type=_positive_int, default=DEFAULT_MEMORY_BUDGET >> 20,
                        help=f"memory for the buffered postings, in MiB ({DEFAULT_MEMORY_BUDGET >> 20})")
    add_bm25_arguments(parser)


def run(args: argparse.Namespace) -> int:
    texts = texts_from_corpus(args.corpus) if args.corpus else texts_from_store
    manifest = add_parts(args.index, [part_writer(texts, args.bm25_k1, args.bm25_b, args.memory_budget_mb << 20)])
    params = manifest["parts"][bm25.PART]["params"]
    print(f"added the BM25 field to {args.index}: {params['vocab_size']} terms, {params['postings']} postings, "
          f"k1 {params['k1']}, b {params['b']}")
    open_index(args.index, verify_checksums=True).close()
    return 0
