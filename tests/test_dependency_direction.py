"""The one-way dependency rule of docs/design.md, checked on every import statement (lazy ones included):
storage <- models <- engine <- {index_builder, service}; evaluation and bench sit on top; nothing imports upward,
and the engine and the service never import the web framework's or the exporter's heavy dependencies where
they must not."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OURS = {"storage", "models", "engine", "index_builder", "service", "evaluation", "load_tests", "bench", "tests",
        "splade_client", "splade_cli", "splade_ray"}
# What each package may import of ours (itself always).
ALLOWED = {
    "storage": set(),
    "models": {"storage"},
    "engine": {"storage", "models"},
    "index_builder": {"storage", "models", "engine"},
    "service": {"storage", "models", "engine"},
    "evaluation": {"storage", "models", "engine"},
    "splade_client": set(),  # HTTP only
    # The Ray deployment (optional extra `ray`) sits on top: it serves the service's contract over the engine.
    "splade_ray": {"storage", "models", "engine", "index_builder", "service"},
}
FORBIDDEN_THIRD_PARTY = {
    "engine": {"fastapi", "starlette", "uvicorn", "torch", "transformers", "ray"},
    "storage": {"numpy", "fastapi", "torch", "ray"},
    "models": {"ray"},
    # Ray is an optional extra: only splade_ray may import it.
    "index_builder": {"ray"},
    "service": {"torch", "transformers", "ray"},
    "evaluation": {"fastapi", "torch", "transformers", "ray"},
    "splade_client": {"numpy", "numba", "onnxruntime", "torch", "fastapi", "ray"},
    "splade_ray": {"torch", "transformers"},
}


def imported_top_levels(package: str) -> dict[str, set[str]]:
    """{top-level module imported: {files importing it}} over every .py file of `package`."""
    found: dict[str, set[str]] = {}
    for path in (REPO_ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO_ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    imports = imported_top_levels(package)
    upward = {name: files for name, files in imports.items()
              if name in OURS and name != package and name not in ALLOWED[package]}
    assert not upward, f"{package} imports {sorted(upward)} against the dependency direction: {upward}"
    heavy = {name: files for name, files in imports.items() if name in FORBIDDEN_THIRD_PARTY.get(package, set())}
    assert not heavy, f"{package} must not import {sorted(heavy)}: {heavy}"


def test_the_check_sees_lazy_imports(tmp_path, monkeypatch):
    """A function-level import counts too (the rule would be hollow otherwise)."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "x.py").write_text("def f():\n    from service.app import create_app\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    with pytest.raises(AssertionError, match="engine imports \\['service'\\]"):
        test_imports_point_one_way("engine")


def test_importing_the_engine_loads_no_web_or_torch_module():
    probe = ("import sys, engine, engine.scorers, engine.searcher, engine.snapshot; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('fastapi', 'starlette', 'uvicorn', 'torch', 'transformers', 'service', 'index_builder')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_single_process_service_loads_no_ray_module():
    """The default service runs without the `ray` extra: starting its app imports nothing of Ray."""
    probe = ("import sys, service.__main__, service.app, index_builder.__main__; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'splade_ray')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
