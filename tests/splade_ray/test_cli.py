"""`python -m splade_ray`: a plain index is split once into <index>.shards-<N> and reused while the source is
unchanged; bad arguments are a clear error (exit 2) before any Ray cluster starts."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from splade_ray.__main__ import resolve_shards
from tests.conftest import REPO_ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splade_ray", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)


def test_a_plain_index_is_split_once_and_reused(small_index_dir, tmp_path):
    index = tmp_path / "idx"
    shutil.copytree(small_index_dir, index)
    shards = resolve_shards(index, 2, None)
    assert shards == tmp_path / "idx.shards-2" and (shards / "shards.json").is_file()
    stamp = (shards / "shards.json").stat().st_mtime_ns
    assert resolve_shards(index, 2, None) == shards and (shards / "shards.json").stat().st_mtime_ns == stamp
    assert resolve_shards(shards, None, None) == shards  # a sharded index is served as it is
    with pytest.raises(ValueError, match="--shards 3: .* already holds 2 shards"):
        resolve_shards(shards, 3, None)
    with pytest.raises(ValueError, match="--shards is required"):
        resolve_shards(index, None, None)


def test_bad_invocations_exit_2_naming_the_problem(small_index_dir, tmp_path):
    usage = run()
    assert usage.returncode == 2 and "python -m splade_ray {serve,build}" in usage.stderr
    no_count = run("serve", "--index", str(small_index_dir))
    assert no_count.returncode == 2 and "--shards is required" in no_count.stderr
    bad_setting = run("serve", "--index", str(small_index_dir), "--shards", "2", "--max-k", "0")
    assert bad_setting.returncode == 2 and "SPLADE_MAX_K" in bad_setting.stderr
    too_many = run("serve", "--index", str(small_index_dir), "--shards", "301", "--shards-dir", str(tmp_path / "s"))
    assert too_many.returncode == 2 and "--shards 301 exceeds the 300 documents" in too_many.stderr
    assert "ray" not in (no_count.stdout + no_count.stderr).lower().replace("splade_ray", "")
