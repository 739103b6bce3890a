"""One local Ray cluster for the Ray tests (`ray.init(num_cpus=2)`, no external services), shut down at the end
of the session whatever happens. Workers import this checkout's packages."""
from __future__ import annotations

import os

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="session")
def ray_cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    # Prepend this checkout, so workers never pick up another editable install of the project.
    pythonpath = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "TOKENIZERS_PARALLELISM": "false"}})
    try:
        yield ray
    finally:
        ray.shutdown()
