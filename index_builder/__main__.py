"""`python -m index_builder {build,encode,verify,add-parts,tune,bm25,shard,add,update,delete,merge}`: each verb
lives in its own module."""
from __future__ import annotations

import argparse
import sys

from index_builder import bm25_part, build, encode, lifecycle, scorer_parts, shard, tune, verify
from index_builder.corpus import CorpusError
from engine.errors import EngineError
from engine.impacts import QuantizationRangeError
from models.errors import ModelError

VERBS = {
    "build": (build, "build an index from a corpus (text or pre-encoded vectors)"),
    "encode": (encode, "encode a corpus into a vectors JSONL file"),
    "verify": (verify, "open and validate an index"),
    "add-parts": (scorer_parts, "build the optional index parts a scorer needs (atomically)"),
    "tune": (tune, "record the fastest approximate-scorer configuration that meets a recall target"),
    "bm25": (bm25_part, "add (or rebuild) the BM25 field of an existing index"),
    "shard": (shard, "split an index into N shards by document range (for the Ray deployment)"),
    **lifecycle.VERBS,  # add, update, delete, merge (docs/lifecycle.md)
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m index_builder", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, (module, help_text) in VERBS.items():
        module.add_arguments(verbs.add_parser(name, help=help_text, description=module.__doc__,
                                              formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    try:
        return VERBS[args.verb][0].run(args)
    except (CorpusError, EngineError, QuantizationRangeError, ModelError, ValueError, OSError) as exc:
        # Known input problems: one clear line, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
