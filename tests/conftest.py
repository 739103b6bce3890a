"""Shared fixtures: the default model artifact, the dev collection, a small real index.

Paths come from environment variables so a user's machine (without ../shared) can point them elsewhere:
SPLADE_TEST_MODEL_DIR (default: data/models/splade-tiny, fetched on first use),
SPLADE_SCIFACT_DIR (default: ../shared/data/scifact next to the checkout).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_module(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repository root; fail the test with its output on error."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(f"python -m {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The exported SPLADE-Tiny artifact (fetch-default is idempotent: a no-op when already there)."""
    path = Path(os.environ.get("SPLADE_TEST_MODEL_DIR", REPO_ROOT / "data" / "models" / "splade-tiny"))
    if not (path / "manifest.json").exists():
        run_module("models", "fetch-default", "--out", str(path))
    return path


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    path = Path(os.environ.get("SPLADE_SCIFACT_DIR", REPO_ROOT.parent / "shared" / "data" / "scifact"))
    if not (path / "corpus.jsonl").exists():
        pytest.fail(f"SciFact not found at {path}: set SPLADE_SCIFACT_DIR to a BEIR scifact folder")
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, scifact_dir) -> Path:
    """The first 300 SciFact documents as a BEIR-style corpus.jsonl (titles and texts kept)."""
    out = tmp_path_factory.mktemp("small_corpus") / "corpus.jsonl"
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= 300:
                break
            json.loads(line)  # a broken source line should fail here, not deep in the builder
            dst.write(line)
    return out


@pytest.fixture(scope="session")
def small_index_dir(tmp_path_factory, default_model_dir, small_corpus) -> Path:
    """A real index of 300 SciFact documents built with the default model, text stored."""
    out = tmp_path_factory.mktemp("small_index") / "index"
    run_module(
        "index_builder", "build", "--model", str(default_model_dir), "--corpus", str(small_corpus),
        "--out", str(out), "--doc-max-terms", "128", "--max-length", "256",
    )
    return out
