"""The service runtime must not pull in torch or transformers (a slim image has neither)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import service.app, service.pipeline, service.__main__
import engine, evaluation.run
import models.runtime
from service.app import create_app, open_searcher
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))
print('HEAVY=' + ','.join(heavy))
"""


def test_service_imports_neither_torch_nor_transformers():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout
