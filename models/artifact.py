"""The model artifact directory: file names, manifest reading/validation, hashing and atomic writes.

Layout and manifest keys are the contract in docs/design.md; this module is the only place that knows them.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import storage
import storage.atomic_dir
from models.errors import ArtifactError
from storage import file_sha256

FORMAT_VERSION = 1
# Bumped whenever the exported graph changes (outputs stay within parity); fetch-default re-exports older ones.
# 3: term_ids are int32; texts without tokens weigh 0.
GRAPH_VERSION = 3
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
QUERY_ONNX = "query.onnx"
DOC_ONNX = "doc.onnx"
QUERY_WEIGHTS = "query_weights.npy"
KINDS = ("siamese", "separate", "inference-free")
DEFAULT_QUERY_MAX_LENGTH = 64
DEFAULT_DOC_MAX_LENGTH = 256


def int8_name(onnx_name: str) -> str:
    """query.onnx -> query.int8.onnx"""
    return onnx_name.removesuffix(".onnx") + ".int8.onnx"


def sha256_file(path: Path) -> str:
    return file_sha256(path)


def read_manifest(artifact_dir: Path | str) -> dict[str, Any]:
    """Read and sanity-check manifest.json; raise ArtifactError naming the path and the problem."""
    artifact_dir = Path(artifact_dir)
    if not artifact_dir.is_dir():
        raise ArtifactError(f"model artifact directory {artifact_dir} does not exist")
    path = artifact_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(
            f"{path} is missing: {artifact_dir} is not a model artifact "
            "(create one with `python -m models export` or `python -m models fetch-default`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    if manifest.get("kind") not in KINDS:
        raise ArtifactError(f"{path}: kind {manifest.get('kind')!r} is not one of {', '.join(KINDS)}")
    for key in ("vocab_size", "tokenizer_sha256", "max_length", "files"):
        if key not in manifest:
            raise ArtifactError(f"{path}: required key {key!r} is missing")
    return manifest


def verify_files(artifact_dir: Path | str, manifest: dict[str, Any]) -> None:
    """Check every file listed in the manifest exists and has the recorded sha256."""
    artifact_dir = Path(artifact_dir)
    for name, expected in manifest["files"].items():
        path = artifact_dir / name
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(f"{path}: sha256 {actual} does not match the manifest ({expected})")


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_replaceable(target: Path | str) -> None:
    """An export may replace an earlier artifact or an empty directory, never anything else (no lost data)."""
    try:
        storage.atomic_dir.check_replaceable(Path(target), MANIFEST, "artifact")
    except storage.NotReplaceableError as exc:
        raise ArtifactError(str(exc)) from None


@contextlib.contextmanager
def atomic_directory(target: Path | str) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it replaces `target` in one step.

    A failure (exception, kill) leaves any previous artifact at `target` untouched (storage.atomic_directory).
    """
    check_replaceable(target)
    with storage.atomic_directory(target, marker=MANIFEST, what="artifact") as staging:
        yield staging
