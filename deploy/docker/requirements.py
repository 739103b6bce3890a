"""Print pip requirement lines from pyproject.toml, so the image installs its dependencies in a layer of their own.

    python requirements.py [--pyproject FILE] [--variant cpu|gpu] [--extra NAME ...] [--no-runtime]

The Dockerfile copies only pyproject.toml and this script before installing, so editing the source does not
invalidate the (slow) dependency layers. `--variant gpu` swaps `onnxruntime` for the `gpu` extra
(`onnxruntime-gpu`): both install the same `onnxruntime` module and must never be installed together.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(line: str) -> str:
    match = _NAME.match(line)
    if not match:
        raise ValueError(f"not a requirement: {line!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: dict, variant: str, extras: list[str], runtime: bool) -> list[str]:
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [name for name in extras if name not in optional]
    if unknown:
        raise ValueError(f"--extra: unknown extra(s) {unknown}; pyproject.toml defines {sorted(optional)}")
    lines: list[str] = []
    if runtime:
        lines += project["dependencies"]
        if variant == "gpu":
            lines = [line for line in lines if requirement_name(line) != "onnxruntime"] + optional["gpu"]
    for name in extras:
        lines += optional[name]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--variant", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--extra", action="append", default=[], help="an optional-dependencies group to add")
    parser.add_argument("--no-runtime", action="store_true", help="print only the extras, not the runtime set")
    args = parser.parse_args(argv)
    with open(args.pyproject, "rb") as handle:
        pyproject = tomllib.load(handle)
    try:
        lines = requirements(pyproject, args.variant, args.extra, runtime=not args.no_runtime)
    except ValueError as exc:
        parser.error(str(exc))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
