"""`splade-serve`: the one command over the `python -m` entry points. Tested through `python -m splade_cli`
(the console script's own entry function), plus the installed script itself where `make install` put it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from splade_cli import bench
from splade_cli.main import VERBS
from splade_client import Client
from tests.support.server import running_service

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splade_cli", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_pyproject_installs_the_console_script_and_both_packages():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = project["project"]["scripts"]["splade-serve"]
    assert target == "splade_cli.main:main"
    module, function = target.split(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "splade_client*" in packages and "splade_cli*" in packages
    assert any(re.match(r"httpx\b", dep) for dep in project["project"]["dependencies"])


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_answers_help_with_exit_status_zero(verb):
    proc = cli(verb, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_the_verb_table_names_real_entry_points():
    import importlib.util

    for name, verb in VERBS.items():
        if verb.module != bench.TARGET:
            assert importlib.util.find_spec(verb.module) is not None, name


def test_version_and_the_verb_list():
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"splade-serve {metadata.version('splade-serve')}"
    listing = cli("--help")
    assert listing.returncode == 0 and all(name in listing.stdout for name in VERBS)
    unknown = cli("frobnicate")
    assert unknown.returncode == 2 and "unknown verb 'frobnicate'" in unknown.stderr and "serve" in unknown.stderr


def test_serve_reads_every_setting_as_a_flag_or_its_variable_and_names_the_limit():
    help_text = cli("serve", "--help").stdout
    assert "--queue-limit" in help_text and "SPLADE_QUEUE_LIMIT" in help_text
    bad_flag = cli("serve", "--port", "0")
    assert bad_flag.returncode == 2
    assert "--port (SPLADE_PORT)" in bad_flag.stderr and "limit: 1" in bad_flag.stderr
    bad_env = cli("serve", env={**os.environ, "SPLADE_MAX_K": "0"})
    assert bad_env.returncode == 2 and "SPLADE_MAX_K" in bad_env.stderr
    unknown = cli("serve", "--max-kay", "3")
    assert unknown.returncode == 2 and "unrecognized arguments: --max-kay" in unknown.stderr


def test_bench_runs_the_checkout_scripts_and_says_when_they_are_missing(tmp_path, capsys):
    listing = cli("bench", "--help")
    assert listing.returncode == 0
    assert all(name in listing.stdout for name in ("encode", "index", "service"))
    forwarded = cli("bench", "index", "--help")
    assert forwarded.returncode == 0 and "--memory-budget-mb" in forwarded.stdout  # bench/index.py's own help
    assert bench.main(["encode"], bench_dir=tmp_path / "no-bench") == 2
    message = capsys.readouterr().err
    assert "not here" in message and "source checkout" in message and str(tmp_path / "no-bench") in message
    assert bench.main(["nope"]) == 2 and "no benchmark 'nope'" in capsys.readouterr().err


TINY_CORPUS = [
    {"_id": "gzip", "title": "gzip", "text": "Compress and decompress files with the gzip format."},
    {"_id": "tempdir", "title": "tempfile", "text": "Create a temporary directory that is removed afterwards."},
    {"_id": "argparse", "title": "argparse", "text": "Parse command line arguments, options and subcommands."},
    {"_id": "json", "title": "json", "text": "Serialize Python objects to JSON text and parse JSON back."},
    {"_id": "sqlite", "title": "sqlite3", "text": "Store rows in an SQLite database with SQL queries."},
]


def test_build_and_serve_through_the_cli_on_a_tiny_corpus(tmp_path, default_model_dir):
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in TINY_CORPUS), encoding="utf-8")
    index = tmp_path / "index"
    built = cli("build", "--model", str(default_model_dir), "--corpus", str(corpus), "--out", str(index),
                "--no-progress")
    assert built.returncode == 0, built.stderr
    assert cli("verify", "--index", str(index)).returncode == 0
    # The environment points at nothing: the service can only work if the serve verb's flags reached it.
    nowhere = tmp_path / "nowhere"
    serve = ("-m", "splade_cli", "serve", "--index-dir", str(index), "--model-dir", str(default_model_dir),
             "--device", "cpu", "--intra-op-threads", "1", "--log-level", "warning")
    with running_service(nowhere, nowhere, command=serve) as base_url, Client(base_url) as client:
        assert client.info().settings["index_dir"] == str(index)
        top = {text: client.search(text, k=1, include_text=True).hits[0] for text in
               ("gzip compression of files", "temporary directory", "command line arguments")}
    assert [hit.id for hit in top.values()] == ["gzip", "tempdir", "argparse"]
    assert top["temporary directory"].text == TINY_CORPUS[1]["text"]


def installed_script() -> str | None:
    beside_python = Path(sys.executable).parent / "splade-serve"
    return str(beside_python) if beside_python.exists() else shutil.which("splade-serve")


@pytest.mark.skipif(installed_script() is None, reason="splade-serve is not installed in this environment "
                    "(`make install` installs it; the tests above run the same entry function via python -m)")
def test_the_installed_console_script_runs():
    script = installed_script()
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("splade-serve ")
    for verb in ("build", "serve"):
        helped = subprocess.run([script, verb, "--help"], capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr
