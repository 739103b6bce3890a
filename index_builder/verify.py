"""`python -m index_builder verify --index DIR [--checksums]`: open and validate an index, print its summary.

A segmented index (docs/lifecycle.md) is verified segment by segment, always with full checksums, delete bitmaps
included."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.commit import read_commit
from engine.index_format import open_index
from engine.lifecycle import verify_generation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, type=Path, help="index directory")
    parser.add_argument("--checksums", action="store_true",
                        help="also hash every file and check every posting list (reads the whole index)")


def run(args: argparse.Namespace) -> int:
    if read_commit(args.index) is not None:  # segmented: every segment of the live generation, fully checksummed
        summary = verify_generation(args.index)
        print(json.dumps(summary, indent=1, sort_keys=True))
        print(f"ok: generation {summary['generation']}, {summary['segments']} segments, {summary['documents']} "
              "documents (checksums verified)")
        return 0
    index = open_index(args.index, verify_checksums=args.checksums)
    manifest = dict(index.manifest)
    manifest.pop("files", None)
    print(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"ok: {index!r}{' (checksums verified)' if args.checksums else ''}")
    return 0
