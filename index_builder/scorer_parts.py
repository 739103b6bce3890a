r"""`python -m index_builder add-parts --index DIR --scorer NAME`: build the optional parts a scorer needs.

    python -m index_builder add-parts --index data/indexes/scifact --scorer clustered [--param n_postings=4000]

The parts are written beside the existing files and the directory is replaced atomically (the unchanged files
are hard-linked, never rewritten); a build that dies leaves the index as it was. Parameters are the scorer's
build-time knobs (`--param NAME=VALUE`, repeatable; see docs/index.md).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from engine import passages, scorers
from engine.index_format import add_parts, open_index


def parse_param(text: str) -> tuple[str, float | list[float]]:
    """NAME=NUMBER, or NAME=N1,N2,... for a list (NAME= for an empty one, e.g. tiers= for one tier)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        if "," in value or not value:
            return name, [_number(item) for item in value.split(",") if item.strip()]
        return name, _number(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a number or a list of numbers") from None


def _number(text: str) -> float:
    return float(text) if "." in text or "e" in text.lower() else int(text)


def on_posting_rows(writer):
    """A scorer's part writer sees the rows its scorer scores: passages on a passage index (engine.passages)."""
    def write(index, staged):
        rows = passages.map_of(index)
        return writer(index if rows is None else passages.rows_view(index, rows), staged)
    return write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, type=Path, help="index directory")
    parser.add_argument("--scorer", required=True, help=f"scorer whose parts to build ({sorted(scorers.registered())})")
    parser.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                        help="build-time parameter of the scorer's parts (repeatable)")
    parser.add_argument("--set-default", action="store_true", help="also make the scorer the index's default")
    parser.add_argument("--threads", type=int, default=1,
                        help="cores the build may use (0: all; the parts do not depend on it; clustered uses them)")


def run(args: argparse.Namespace) -> int:
    cls = scorers.registered().get(args.scorer)
    if cls is None:
        raise ValueError(f"--scorer: unknown scorer {args.scorer!r} (registered: {sorted(scorers.registered())})")
    open_index(args.index)  # a clear error for a missing or broken index before any work
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: one per core), got {args.threads}")
    threads = args.threads or os.cpu_count() or 1
    for name, value in args.param:
        if isinstance(value, list) and name not in cls.list_build_parameters:
            raise ValueError(f"--param {name}: one number expected, got a list {value} (lists: "
                             f"{sorted(cls.list_build_parameters) or 'none'} for {args.scorer})")
    writers = [on_posting_rows(writer) for writer in cls.part_writers(dict(args.param), threads=threads)]
    if not writers and not args.set_default:
        print(f"{args.scorer} needs no optional part; nothing to do")
        return 0
    manifest = add_parts(args.index, writers, {"default_scorer": args.scorer} if args.set_default else None)
    print(f"{args.index}: parts {json.dumps({n: p['params'] for n, p in manifest['parts'].items()}, sort_keys=True)}"
          f"; default scorer {manifest['default_scorer']}")
    return 0
