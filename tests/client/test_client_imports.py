"""The client installs and imports anywhere: importing it pulls in none of the service's heavy dependencies
(numpy, numba, onnxruntime, torch) and none of the server's own packages."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import splade_client
from splade_client import AsyncClient, Client, RetryPolicy
Client("http://127.0.0.1:1", retry=RetryPolicy.none()).close()
AsyncClient("http://127.0.0.1:1")
ours = ("models", "index_builder", "service", "engine", "evaluation", "load_tests")
heavy = ("numpy", "numba", "onnxruntime", "torch", "transformers", "tokenizers", "fastapi", "uvicorn") + ours
print("LOADED=" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_importing_the_client_imports_no_heavy_dependency_and_no_server_code():
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED=\n" in proc.stdout, proc.stdout
