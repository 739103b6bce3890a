"""The compose builder's entry point (deploy/docker/prepare_data.py), run for real on this machine.

No container runs here; the script is the same one the builder image runs, with its paths given by the same
environment variables, so what it does (fetch, demo or user corpus, build, skip when up to date) is tested.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.index_format import open_index

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def prepare(model_dir: Path, data_dir: Path, corpus: Path, demo_max_docs: int = 40) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        SPLADE_MODEL_DIR=str(model_dir),
        SPLADE_INDEX_DIR=str(data_dir / "indexes" / "default"),
        BUILDER_CORPUS=str(corpus),
        BUILDER_DATA_DIR=str(data_dir),
        BUILDER_DEMO_MAX_DOCS=str(demo_max_docs),
        BUILDER_INDEX_ARGS="--no-progress --doc-max-terms 64",
    )
    return subprocess.run([sys.executable, "deploy/docker/prepare_data.py"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_builder_makes_the_demo_index_then_the_users_and_skips_what_is_up_to_date(
    default_model_dir, small_corpus, tmp_path
):
    data = tmp_path / "data"
    no_corpus = tmp_path / "no-corpus.jsonl"
    no_corpus.touch()  # what compose mounts when SPLADE_CORPUS is not set

    first = prepare(default_model_dir, data, no_corpus)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "standard-library demo corpus" in first.stdout
    index_dir = data / "indexes" / "default"
    assert open_index(index_dir).num_documents == 40
    stamp = json.loads((data / "indexes" / "default.source.json").read_text())
    assert stamp["index_args"] == ["--no-progress", "--doc-max-terms", "64"]

    again = prepare(default_model_dir, data, no_corpus)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout and "index_builder build" not in again.stdout

    # One setting (the mounted corpus) switches to the user's collection: the index is rebuilt from it.
    user_corpus = tmp_path / "corpus.jsonl"
    lines = small_corpus.read_text(encoding="utf-8").splitlines()[:25]
    user_corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mine = prepare(default_model_dir, data, user_corpus)
    assert mine.returncode == 0, mine.stdout + mine.stderr
    assert f"indexing the given corpus {user_corpus}" in mine.stdout
    index = open_index(index_dir)
    assert index.num_documents == 25
    assert index.external_id(0) == json.loads(lines[0])["_id"]


def test_builder_refuses_a_directory_as_corpus_before_any_work(default_model_dir, tmp_path):
    proc = prepare(default_model_dir, tmp_path / "data", tmp_path)
    assert proc.returncode != 0
    assert "is a directory" in proc.stderr
    assert "fetch-default" not in proc.stdout
    assert not (tmp_path / "data").exists()
