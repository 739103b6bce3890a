"""`splade-serve bench SCRIPT [ARGS...]`: run a benchmark from bench/ of a source checkout.

The benchmarks are scripts next to the packages, not part of the installed package (they need the dev
dependencies, SciFact and the tests' server launcher), so this verb finds them beside the installed
`splade_cli` package, which is the checkout itself after `make install` (an editable install), and says so
plainly when they are not there (an install from a wheel).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TARGET = "<bench scripts>"
# Where the scripts are in a source checkout: bench/ next to this package's directory.
BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
# Helpers that live in bench/ but are not benchmarks.
NOT_BENCHMARKS = {"synthetic_collection", "__init__"}


def scripts(bench_dir: Path = BENCH_DIR) -> dict[str, Path]:
    if not bench_dir.is_dir():
        return {}
    return {path.stem: path for path in sorted(bench_dir.glob("*.py")) if path.stem not in NOT_BENCHMARKS}


def missing_message(bench_dir: Path) -> str:
    return (
        f"bench: the benchmark scripts are not here ({bench_dir} does not exist or has none). They are part of "
        "a source checkout, not of the installed package: clone the repository, `make install` in it, and run "
        "`splade-serve bench` (or `python bench/<script>.py`) from there."
    )


def usage(prog: str, found: dict[str, Path]) -> str:
    names = "|".join(found) or "SCRIPT"
    lines = [f"usage: {prog} {{{names}}} [ARGS...]   ({prog} SCRIPT --help for its options)", ""]
    lines += [f"  {name:<8} {path}" for name, path in found.items()]
    lines += ["", "Each prints ratios against a baseline measured in the same run (docs/*.md, benchmark sections)."]
    return "\n".join(lines)


def main(argv: list[str], prog: str = "splade-serve bench", bench_dir: Path = BENCH_DIR) -> int:
    found = scripts(bench_dir)
    wants_help = not argv or argv[0] in ("-h", "--help")
    if not found:
        print(missing_message(bench_dir), file=sys.stderr)
        return 0 if wants_help and argv else 2
    if wants_help:
        print(usage(prog, found), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in found:
        print(f"{prog}: no benchmark {name!r}; choose from: {', '.join(found)}", file=sys.stderr)
        return 2
    # A child process, exactly like `python bench/<name>.py` (the scripts arrange their own sys.path).
    return subprocess.call([sys.executable, str(found[name]), *rest])
