"""`python -m index_builder verify --index DIR [--checksums]`: open and validate an index, print its summary."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.index_format import open_index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, type=Path, help="index directory")
    parser.add_argument("--checksums", action="store_true",
                        help="also hash every file and check every posting list (reads the whole index)")


def run(args: argparse.Namespace) -> int:
    index = open_index(args.index, verify_checksums=args.checksums)
    manifest = dict(index.manifest)
    manifest.pop("files", None)
    print(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"ok: {index!r}{' (checksums verified)' if args.checksums else ''}")
    return 0
