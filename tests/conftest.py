"""Shared fixtures: the default model artifact, the dev collection, a small real index, the whole collection's
document vectors; and how tests are spread over pytest-xdist workers (`make test` runs two).

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


@pytest.fixture(scope="session")
def live_service(default_model_dir, small_index_dir):
    """A real `python -m service` (uvicorn) on 127.0.0.1 over the small index; its base URL. Shared by the HTTP
    tests and the Ray comparison, which only search it.

    One encoder thread per call (as the service tests' `searcher` fixture) so the two encode with identical
    arithmetic.
    """
    from tests.support.server import running_service

    env = {"SPLADE_DEVICE": "cpu", "SPLADE_INTRA_OP_THREADS": "1", "SPLADE_MAX_QUERY_TERMS": "64",
           "SPLADE_LOG_LEVEL": "warning"}
    with running_service(default_model_dir, small_index_dir, env) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def scifact_vectors(tmp_path_factory, default_model_dir, scifact_dir) -> Path:
    """All 5,183 SciFact documents encoded at 256 tokens (no pruning) as a vectors JSONL, once per session: the
    suite's most expensive step (minutes on 2 cores); every index of the whole collection is built from it."""
    out = tmp_path_factory.mktemp("scifact_vectors") / "vectors.jsonl"
    run_module("index_builder", "encode", "--model", str(default_model_dir), "--corpus", str(scifact_dir),
               "--out", str(out), "--max-length", "256", "--batch-size", "32", "--no-progress")
    return out


# pytest-xdist: `make test` runs two workers with `--dist loadscope`: each test module is one work unit (its module
# fixtures are built once). A session fixture is built once per worker that uses it, so the modules that use the
# SciFact vectors (minutes of both cores) or the Ray cluster form one unit, handed out first: one worker runs it
# while the other works through the many small modules. The encode and the Ray tests are one unit, not two, so that
# they never run side by side: on 2 busy cores Ray Serve's HTTP proxy then missed its 60 s start deadline.
# (Not xdist's loadgroup: with pytest 9.2 it silently stops grouping, pytest-dev/pytest-xdist#1386.)
XDIST_GROUPS = {
    "scifact-vectors-and-ray-cluster": ("tests/service/test_evaluate_scifact.py",
                                        "tests/splade_ray/test_ray_serving.py",
                                        "tests/splade_ray/test_ray_data_build.py"),
}
# The fixtures a group exists for: a test that uses one from a module outside its group fails collection.
XDIST_GROUP_FIXTURES = {"scifact_vectors": "scifact-vectors-and-ray-cluster",
                        "ray_cluster": "scifact-vectors-and-ray-cluster"}
XDIST_GROUP_OF_MODULE = {module: group for group, modules in XDIST_GROUPS.items() for module in modules}


def xdist_scope(nodeid: str) -> str:
    """The work unit of a test: its group, else its module."""
    module = nodeid.split("::")[0]
    return XDIST_GROUP_OF_MODULE.get(module, module)


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, group in XDIST_GROUP_FIXTURES.items():
            if fixture in item.fixturenames and xdist_scope(item.nodeid) != group:
                raise pytest.UsageError(f"{item.nodeid} uses the fixture {fixture!r}: add its module to "
                                        f"XDIST_GROUPS[{group!r}] in tests/conftest.py (one {fixture} per run)")
    if hasattr(config, "workerinput"):  # an xdist worker: the collection order is the order work units go out
        rank = {group: position for position, group in enumerate(XDIST_GROUPS)}
        items.sort(key=lambda item: rank.get(xdist_scope(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

        def add_node_collection(self, node, collection):
            # The scheduler keys tests by node id, but schemathesis gives its 8 operations one id (without the
            # operation): numbered apart, each still runs (the scheduler sends positions, not ids, to workers).
            seen: dict[str, int] = {}
            unique = []
            for nodeid in collection:
                seen[nodeid] = seen.get(nodeid, 0) + 1
                unique.append(nodeid if seen[nodeid] == 1 else f"{nodeid}#{seen[nodeid]}")
            super().add_node_collection(node, unique)

    config.option.loadscopereorder = False  # keep the collection order above (xdist would sort by test count)
    return GroupScopeScheduling(config, log)
