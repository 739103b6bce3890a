"""Settings: SPLADE_* environment variables, documented fields, start-up refusal naming the bad field."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings, SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_environment_variables_with_the_prefix_are_read(monkeypatch):
    monkeypatch.setenv("SPLADE_MAX_K", "50")
    monkeypatch.setenv("SPLADE_DEVICE", "cpu")
    monkeypatch.setenv("SPLADE_ENCODER_MAX_WAIT_MS", "0.5")
    monkeypatch.setenv("SPLADE_INDEX_DIR", "/somewhere/index")
    settings = load_settings()
    assert settings.max_k == 50
    assert settings.device == "cpu"
    assert settings.encoder_max_wait_ms == 0.5
    assert settings.index_dir == Path("/somewhere/index")
    assert settings.host == "127.0.0.1" and settings.port == 8000


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(Exception):
        settings.max_k = 5  # type: ignore[misc]


def test_every_field_is_documented():
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 10, name


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SPLADE_MAX_K": "0"}, "SPLADE_MAX_K"),
        ({"SPLADE_PORT": "70000"}, "SPLADE_PORT"),
        ({"SPLADE_DEVICE": "gpu"}, "SPLADE_DEVICE"),
        ({"SPLADE_QUEUE_LIMIT": "many"}, "SPLADE_QUEUE_LIMIT"),
        ({"SPLADE_REQUEST_TIMEOUT_S": "-1"}, "SPLADE_REQUEST_TIMEOUT_S"),
        ({"SPLADE_DEFAULT_K": "20", "SPLADE_MAX_K": "10"}, "SPLADE_DEFAULT_K"),
        ({"SPLADE_MAX_BATCH_QUERIES": "10", "SPLADE_QUEUE_LIMIT": "5"}, "SPLADE_QUEUE_LIMIT"),
        ({"SPLADE_SEARCH_THREADS": "0"}, "SPLADE_SEARCH_THREADS"),
        ({"SPLADE_SEARCH_THREADS": "65"}, "SPLADE_SEARCH_THREADS"),
    ],
)
def test_invalid_settings_name_the_field(monkeypatch, env, named):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert named in str(info.value)


def test_the_limit_is_in_the_message(monkeypatch):
    monkeypatch.setenv("SPLADE_PORT", "70000")
    with pytest.raises(SettingsError, match="65535"):
        load_settings()


def test_search_threads_has_the_engines_limit(monkeypatch):
    """SPLADE_SEARCH_THREADS caps the `threads` request option: the same limit as the engine's cap."""
    from engine.scorers import intra_query

    monkeypatch.setenv("SPLADE_SEARCH_THREADS", str(intra_query.MAX_THREADS))
    assert load_settings().search_threads == intra_query.MAX_THREADS
    monkeypatch.setenv("SPLADE_SEARCH_THREADS", str(intra_query.MAX_THREADS + 1))
    with pytest.raises(SettingsError, match=f"SPLADE_SEARCH_THREADS.*{intra_query.MAX_THREADS}"):
        load_settings()
    assert Settings.model_fields["search_threads"].default == 1  # one thread a query: best for throughput


def test_service_refuses_to_start_with_invalid_settings():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPLADE_")}
    env["SPLADE_MAX_QUERY_TERMS"] = "0"
    proc = subprocess.run(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "SPLADE_MAX_QUERY_TERMS" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_documented_settings_table_is_the_settings_class():
    """docs/service.md holds exactly the table generated from `Settings` (names, defaults, descriptions)."""
    from service.settings import settings_table

    docs = (REPO_ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    assert settings_table() in docs, "regenerate the table in docs/service.md with `python -m service.settings`"
    for name in Settings.model_fields:
        assert f"`SPLADE_{name.upper()}`" in settings_table()
