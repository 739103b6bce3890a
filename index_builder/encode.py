r"""`python -m index_builder encode`: corpus -> pre-encoded vectors JSONL, to build several indexes from one encoding.

    python -m index_builder encode --model data/models/splade-tiny --corpus scifact/ --out vectors.jsonl \
        [--doc-max-terms N] [--max-length L] [--batch-size B]

Then `python -m index_builder build --corpus vectors.jsonl --doc-max-terms 128 ...` prunes the saved vectors
exactly as encoding with that limit would (the graph's top-k and `models.sparse.heaviest_terms` keep the same terms).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from engine import index_format
from index_builder.build import (add_encode_arguments, encoded_documents, load_encoder, vectors_provenance,
                                 raise_on_duplicate, settings_from_args)
from index_builder.corpus import CorpusError
from index_builder.duplicate_ids import DuplicateIdCheck
from index_builder.vectors_file import VectorsWriter

# Memory for the duplicate-id check (the ids themselves go to a scratch table on disk).
ID_CHECK_BUDGET = 64 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_encode_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="vectors JSONL file to write")


def encode_corpus(corpus: Path, out: Path, model_dir: Path, settings) -> int:
    encoder = load_encoder(model_dir, settings.max_length)
    writer = VectorsWriter(out, encoder)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{Path(out).name}.ids-", dir=Path(out).parent) as scratch:
            ids = index_format.StringTableWriter(Path(scratch), index_format.IDS)
            id_check = DuplicateIdCheck(Path(scratch) / "runs", ID_CHECK_BUDGET)
            for window, vectors in encoded_documents(corpus, encoder, settings):
                for doc, (term_ids, weights) in zip(window, vectors):
                    writer.write(doc, term_ids, weights)
                    ids.append(doc.id)
                    id_check.add(doc.id)
            ids.close()
            if writer.count == 0:
                raise CorpusError(f"{corpus}: no documents")
            raise_on_duplicate(corpus, id_check, Path(scratch), len(ids), ID_CHECK_BUDGET)
    except BaseException:
        writer.abort()
        raise
    writer.close(vectors_provenance(encoder, encoder.max_length, settings.doc_max_terms))
    return writer.count


def run(args: argparse.Namespace) -> int:
    count = encode_corpus(args.corpus, args.out, args.model, settings_from_args(args))
    print(f"wrote {count} document vectors to {args.out}")
    return 0
