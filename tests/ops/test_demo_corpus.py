"""The demo corpus: built from the installed standard library, deterministic, valid BEIR JSONL."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from index_builder import demo_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "index_builder.demo_corpus", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "nested" / "python-docs.jsonl"
    proc = run_cli("--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_documents_are_valid_beir_records(default_corpus):
    docs = read_jsonl(default_corpus)
    assert 1000 <= len(docs) <= demo_corpus.DEFAULT_MAX_DOCS
    for doc in docs:
        assert set(doc) == {"_id", "title", "text"}
        assert all(isinstance(doc[key], str) and doc[key].strip() for key in doc)
        assert len(doc["text"]) >= demo_corpus.MIN_TEXT_CHARS
        assert not any(part.startswith("_") for part in doc["_id"].split(".")), doc["_id"]
    ids = [doc["_id"] for doc in docs]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_known_standard_library_objects_are_there(default_corpus):
    ids = {doc["_id"] for doc in read_jsonl(default_corpus)}
    # Module docstrings are kept before anything else under the cap.
    for module in ("json", "collections", "re", "asyncio.tasks", "subprocess", "itertools"):
        assert module in ids
    assert "json.dumps" in ids
    assert not any(doc_id.split(".")[0] in demo_corpus.SKIPPED_MODULES for doc_id in ids)


def test_output_is_deterministic_across_processes(default_corpus, tmp_path):
    again = tmp_path / "again.jsonl"
    proc = run_cli("--out", str(again))
    assert proc.returncode == 0, proc.stderr
    assert again.read_bytes() == default_corpus.read_bytes()


def test_cap_thins_methods_but_keeps_every_module(default_corpus, tmp_path):
    full = read_jsonl(default_corpus)
    modules = [doc["_id"] for doc in full if doc["_id"] == doc["title"] and "." not in doc["_id"]]
    cap = 400
    small = tmp_path / "small.jsonl"
    proc = run_cli("--out", str(small), "--max-docs", str(cap))
    assert proc.returncode == 0, proc.stderr
    docs = read_jsonl(small)
    assert len(docs) == cap
    small_ids = {doc["_id"] for doc in docs}
    assert set(modules) <= small_ids
    # The cap keeps documents from across the alphabet, not only the first modules.
    first_letters = {doc_id[0] for doc_id in small_ids}
    assert {"a", "j", "s", "z"} <= first_letters


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-docs", "0"], "--max-docs: must be at least 1"),
        (["--max-docs", "many"], "--max-docs: must be a whole number"),
    ],
)
def test_bad_arguments_give_a_clear_error(tmp_path, args, expected):
    out = tmp_path / "x.jsonl"
    proc = run_cli("--out", str(out), *args)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert not out.exists()


def test_directory_as_output_is_refused(tmp_path):
    proc = run_cli("--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--out" in proc.stderr and "is a directory" in proc.stderr
