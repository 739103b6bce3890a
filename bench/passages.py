"""Passages against truncation on a BEIR collection: builds both indexes and evaluates every mode on each.

    python bench/passages.py --beir ../shared/data/scifact            # 128-token passages, stride 96, vs 256
    python bench/passages.py --beir ../shared/data/scifact --passage-tokens 256 --passage-stride 192

Too slow for CI (two full encodings of the collection: minutes on 2 cores), so the figures live in
docs/hybrid.md. Indexes are kept in --workdir and reused when present (delete them to rebuild). Each step is
the public command (`python -m index_builder build`, `python -m evaluation --modes`), so what is measured is
what a user runs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> None:
    print("$ python " + " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO_ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", required=True, type=Path, help="BEIR folder (corpus, queries, qrels)")
    parser.add_argument("--model", default=str(REPO_ROOT / "data" / "models" / "splade-tiny"))
    parser.add_argument("--max-length", type=int, default=256, help="truncation baseline's max length (256)")
    parser.add_argument("--passage-tokens", type=int, default=128)
    parser.add_argument("--passage-stride", type=int, default=96)
    parser.add_argument("--modes", default="splade,bm25,hybrid-linear-zscore")
    parser.add_argument("--split", default="test")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-passages"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    builds = {
        f"truncation at {args.max_length}": (args.workdir / f"trunc{args.max_length}", []),
        f"passages {args.passage_tokens} / stride {args.passage_stride}": (
            args.workdir / f"passages{args.passage_tokens}-{args.passage_stride}",
            ["--passage-tokens", str(args.passage_tokens), "--passage-stride", str(args.passage_stride)]),
    }
    for label, (out, extra) in builds.items():
        if not (out / "manifest.json").exists():
            started = time.perf_counter()
            run("-m", "index_builder", "build", "--model", args.model, "--corpus", str(args.beir), "--out", str(out),
                "--max-length", str(args.max_length), "--no-progress", *extra)
            print(f"{label}: built in {time.perf_counter() - started:.0f} s", flush=True)
    for label, (out, _) in builds.items():
        print(f"\n## {label}", flush=True)
        run("-m", "evaluation", "--index", str(out), "--model", args.model, "--beir", str(args.beir),
            "--split", args.split, "--modes", args.modes, "--json", str(out / f"eval-{args.split}.json"))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"\nCPU {cpu}, {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
