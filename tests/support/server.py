"""Start a real `python -m service` (uvicorn) process on 127.0.0.1 for end-to-end tests."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_service(
    model_dir: Path, index_dir: Path, extra_env: Mapping[str, str] | None = None, ready_timeout: float = 180,
    command: Sequence[str] = ("-m", "service"), keep_process: bool = False,
) -> Iterator[str]:
    """Yield the base URL of a ready service; the process is stopped (and its log shown on failure) after.

    `command` follows the interpreter: another entry point that serves (e.g. `-m splade_cli serve ...`).
    With `keep_process`, yields (base URL, the Popen) so that a test can signal the process itself.
    """
    port = free_port()
    env = dict(os.environ)
    env.update(
        SPLADE_HOST="127.0.0.1",
        SPLADE_PORT=str(port),
        SPLADE_MODEL_DIR=str(model_dir),
        SPLADE_INDEX_DIR=str(index_dir),
    )
    env.update(extra_env or {})
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"splade-service-{port}.log"
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(
            [sys.executable, *command], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"service exited {proc.returncode}:\n{log.read().decode(errors='replace')}")
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    log.seek(0)
                    raise TimeoutError(f"service not ready in {ready_timeout}s:\n{log.read().decode(errors='replace')}")
                time.sleep(0.2)
            yield (base_url, proc) if keep_process else base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
