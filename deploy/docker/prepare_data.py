"""One-shot data preparation for the compose `builder` service (also runnable on a host, for a test).

Fetches the default model, makes the corpus (the user's file when given, else the standard-library demo) and
builds the index into the data volume. A second run with the same corpus, model and build arguments does not
rebuild: a small stamp file beside the index records what it was built from.

Environment (the service's variables, so builder and api agree on paths):
  SPLADE_MODEL_DIR      model artifact directory          (default /data/models/splade-tiny)
  SPLADE_INDEX_DIR      index directory                   (default /data/indexes/default)
  BUILDER_CORPUS        a BEIR corpus.jsonl to index; absent or empty -> the demo corpus
                        (default /input/corpus.jsonl: compose mounts $SPLADE_CORPUS there)
  BUILDER_DATA_DIR      where the demo corpus is written  (default /data)
  BUILDER_DEMO_MAX_DOCS cap on demo documents             (default: the demo's own default)
  BUILDER_INDEX_ARGS    extra arguments for `python -m index_builder build`, e.g. "--doc-max-terms 128"
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: make the project importable

from models.artifact import sha256_file  # noqa: E402


def run(*args: str) -> None:
    print("+ python -m " + " ".join(shlex.quote(a) for a in args), flush=True)
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"builder: `python -m {args[0]}` failed with exit code {proc.returncode}")


def choose_corpus(user_corpus: Path, data_dir: Path, demo_max_docs: str | None) -> Path:
    if user_corpus.is_file() and user_corpus.stat().st_size > 0:
        print(f"builder: indexing the given corpus {user_corpus}", flush=True)
        return user_corpus
    demo = data_dir / "corpora" / "python-docs.jsonl"
    print(f"builder: no corpus given; making the standard-library demo corpus at {demo}", flush=True)
    extra = ["--max-docs", demo_max_docs] if demo_max_docs else []
    run("index_builder.demo_corpus", "--out", str(demo), *extra)
    return demo


def main() -> int:
    env = os.environ
    model_dir = Path(env.get("SPLADE_MODEL_DIR", "/data/models/splade-tiny"))
    index_dir = Path(env.get("SPLADE_INDEX_DIR", "/data/indexes/default"))
    user_corpus = Path(env.get("BUILDER_CORPUS", "/input/corpus.jsonl"))
    data_dir = Path(env.get("BUILDER_DATA_DIR", "/data"))
    index_args = shlex.split(env.get("BUILDER_INDEX_ARGS", ""))

    if user_corpus.is_dir():  # checked first: a wrong setting should fail before minutes of model export
        raise SystemExit(f"builder: BUILDER_CORPUS={user_corpus} is a directory; give a corpus.jsonl file")
    run("models", "fetch-default", "--out", str(model_dir))
    corpus = choose_corpus(user_corpus, data_dir, env.get("BUILDER_DEMO_MAX_DOCS") or None)

    source = {
        "corpus_sha256": sha256_file(corpus),
        "model_manifest_sha256": sha256_file(model_dir / "manifest.json"),
        "index_args": index_args,
    }
    stamp = index_dir.with_name(index_dir.name + ".source.json")
    if (index_dir / "manifest.json").is_file() and stamp.is_file():
        if json.loads(stamp.read_text(encoding="utf-8")) == source:
            print(f"builder: index {index_dir} is up to date with this corpus and model; nothing to do", flush=True)
            return 0
    run("index_builder", "build", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(index_dir),
        *index_args)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, stamp)
    print(f"builder: index ready at {index_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
