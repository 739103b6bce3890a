r"""Peak memory of `python -m index_builder build` from vectors JSONL, by corpus size and `--memory-budget-mb`.

    python ../shared/bench/synth_calibrated.py --calib ../shared/bench/calib_splade_tiny.json \
        --out /tmp/calibrated --docs 100000 1000000 --queries 1000
    python bench/build_memory.py --npz /tmp/calibrated/docs_100k.npz /tmp/calibrated/docs_1M.npz \
        --budgets 64 256 1024 [--source DIR] [--json rows.jsonl]
    python bench/build_memory.py --corpus ../shared/data/scifact --budgets 256    # a text build (encodes)

Each calibrated CSR collection is written once as vectors JSONL next to its .npz (3.2 GB for the 1M set: keep
it in /tmp, not in the repository; `--vectors-dir` puts it elsewhere), then built in a child process per budget
while this process samples the child's /proc/<pid>/status every 20 ms: peak `RssAnon` (anonymous memory: what
the build allocates; not the page cache of files) and `VmHWM` (peak resident, the kernel's own figure).
`--corpus` builds any corpus the builder reads (text corpora are encoded: the encoder's share of the budget is
in the report). `--source` runs the builder of another checkout (e.g. the code before a change) for a baseline
in the same run. Each row records the CPU and the load average before and after the build: on a shared machine
the times are noisy, the memory figures are not.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_vectors(npz: Path, out: Path, tokens: list[str]) -> Path:
    if out.exists():
        return out
    data = np.load(npz)
    indptr, indices, weights = data["indptr"].tolist(), data["indices"], data["data"]
    token_json = [json.dumps(t, ensure_ascii=False) for t in tokens]
    partial = out.with_name(out.name + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for doc in range(len(indptr) - 1):
            lo, hi = indptr[doc], indptr[doc + 1]
            pairs = ", ".join(f"{token_json[t]}: {w}" for t, w in zip(indices[lo:hi].tolist(),
                                                                        map(str, weights[lo:hi])))
            handle.write(f'{{"id": "doc-{doc}", "vector": {{{pairs}}}}}\n')
    partial.rename(out)
    return out


def status(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def measure(corpus: Path, model: Path, budget: int, source: Path, scratch_dir: Path) -> dict:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=scratch_dir) as scratch:
        out = Path(scratch) / "index"
        cmd = [sys.executable, "-m", "index_builder", "build", "--model", str(model), "--corpus", str(corpus),
               "--out", str(out), "--memory-budget-mb", str(budget), "--no-progress"]
        env = {**os.environ, "PYTHONPATH": str(source)}
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=source, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak_anon = peak_rss = 0
        while proc.poll() is None:
            values = status(proc.pid)
            peak_anon = max(peak_anon, values.get("RssAnon", 0))
            peak_rss = max(peak_rss, values.get("VmHWM", 0))
            time.sleep(0.02)
        seconds = time.monotonic() - started
        stdout, stderr = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"build failed ({proc.returncode}): {stderr[-2000:]}")
        manifest = json.loads((out / "manifest.json").read_text())
    return {"budget_mb": budget, "seconds": round(seconds, 1), "peak_anon_mb": round(peak_anon / 2**20, 1),
            "peak_rss_mb": round(peak_rss / 2**20, 1), "documents": manifest["counts"]["documents"],
            "postings": manifest["counts"]["postings"], "runs": manifest["build"].get("inversion_runs"),
            "report": manifest["build"].get("memory"), "stdout": stdout.strip().splitlines()[-1:],
            "cpu": cpu_model(), "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", nargs="*", type=Path, default=[], help="calibrated docs_*.npz collections")
    parser.add_argument("--corpus", nargs="*", type=Path, default=[],
                        help="corpora built as they are (text is encoded, vectors JSONL read)")
    parser.add_argument("--vectors-dir", type=Path, default=None,
                        help="where the .npz collections' vectors JSONL go (default: next to each .npz)")
    parser.add_argument("--budgets", nargs="+", type=int, default=[64, 256, 1024])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "data" / "models" / "splade-tiny")
    parser.add_argument("--source", type=Path, default=REPO_ROOT, help="checkout whose builder runs")
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per build")
    args = parser.parse_args()
    if not args.npz and not args.corpus:
        parser.error("give --npz and/or --corpus")
    sys.path.insert(0, str(REPO_ROOT))
    from models.runtime import RuntimeOptions, load_document_encoder

    encoder = load_document_encoder(args.model, RuntimeOptions())
    tokens = [encoder.token(i) for i in range(encoder.vocab_size)]
    del encoder
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print("| documents | postings | budget MiB | peak anonymous MiB | peak resident MiB | build s | runs |")
    print("|---|---|---|---|---|---|---|")
    corpora = [write_vectors(npz, (args.vectors_dir or npz.parent) / f"{npz.stem}.vectors.jsonl", tokens)
               for npz in args.npz] + [corpus.resolve() for corpus in args.corpus]
    for corpus in corpora:
        scratch_dir = corpus.parent if corpus.is_file() else Path(tempfile.gettempdir())
        for budget in args.budgets:
            row = measure(corpus, args.model, budget, args.source.resolve(), scratch_dir)
            print(f"| {row['documents']:,} | {row['postings']:,} | {budget} | {row['peak_anon_mb']} | "
                  f"{row['peak_rss_mb']} | {row['seconds']} | {row['runs']} |", flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"corpus": str(corpus), "source": str(args.source), **row}) + "\n")


if __name__ == "__main__":
    main()
