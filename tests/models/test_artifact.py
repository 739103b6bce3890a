"""Artifact writes are atomic: a failed export leaves the previous artifact untouched, a good one replaces it."""
from __future__ import annotations

import pytest

from models.artifact import atomic_directory, read_manifest, verify_files, write_json
from models.errors import ArtifactError


def test_success_replaces_the_previous_artifact_whole(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "manifest.json").write_text("{}")
        (staging / "old-only.txt").write_text("old")
    with atomic_directory(target) as staging:
        (staging / "manifest.json").write_text("{}")
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or retired directories left
    assert oct(target.stat().st_mode & 0o777) == "0o755"


def test_failure_keeps_the_previous_artifact(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "manifest.json").write_text("{}")
        (staging / "good.txt").write_text("good")
    with pytest.raises(RuntimeError, match="export died"):
        with atomic_directory(target) as staging:
            (staging / "half-written.onnx").write_bytes(b"\0" * 10)
            raise RuntimeError("export died")
    assert sorted(p.name for p in target.iterdir()) == ["good.txt", "manifest.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_never_replaces_something_that_is_not_an_artifact(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ArtifactError, match="refusing to write the artifact to .*notes.txt: it exists and is not"):
        with atomic_directory(tmp_path / "notes.txt"):
            pass
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.jsonl").write_text("{}")
    with pytest.raises(ArtifactError, match="refusing to replace .*data: it is a non-empty directory without"):
        with atomic_directory(tmp_path / "data"):
            pass
    assert (tmp_path / "notes.txt").read_text() == "precious"
    assert (tmp_path / "data" / "corpus.jsonl").exists()
    (tmp_path / "empty").mkdir()
    with atomic_directory(tmp_path / "empty") as staging:
        (staging / "manifest.json").write_text("{}")
    assert (tmp_path / "empty" / "manifest.json").exists()


def test_manifest_checks_name_the_problem(tmp_path):
    write_json(tmp_path / "manifest.json", {"format_version": 99, "kind": "siamese"})
    with pytest.raises(ArtifactError, match="format_version 99 is not supported"):
        read_manifest(tmp_path)
    write_json(tmp_path / "manifest.json", {"format_version": 1, "kind": "dual"})
    with pytest.raises(ArtifactError, match="kind 'dual' is not one of"):
        read_manifest(tmp_path)
    write_json(tmp_path / "manifest.json", {"format_version": 1, "kind": "siamese", "vocab_size": 5})
    with pytest.raises(ArtifactError, match="required key 'tokenizer_sha256' is missing"):
        read_manifest(tmp_path)
    manifest = {"format_version": 1, "kind": "siamese", "vocab_size": 5, "tokenizer_sha256": "x",
                "max_length": {"query": 8, "document": 8}, "files": {"doc.onnx": "0" * 64}}
    write_json(tmp_path / "manifest.json", manifest)
    with pytest.raises(ArtifactError, match="doc.onnx is listed in the manifest but missing"):
        verify_files(tmp_path, read_manifest(tmp_path))
    (tmp_path / "doc.onnx").write_bytes(b"abc")
    with pytest.raises(ArtifactError, match="doc.onnx: sha256 .* does not match the manifest"):
        verify_files(tmp_path, manifest)
