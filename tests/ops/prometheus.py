"""Run a real Prometheus (Debian package `prometheus`) on 127.0.0.1 for a test, and query its HTTP API."""
from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from tests.ops.tools import tool
from tests.support.server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"


def local_config(target: str, scrape_interval: str = "1s") -> dict:
    """The deployed configuration with its api target swapped for `target` and a short scrape interval.

    Everything else (job name, metrics path, labels) stays as deployed, so the test checks the real config.
    """
    with open(DEPLOY_CONFIG, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "splade-serve"]
    assert len(jobs) == 1, "deploy/prometheus/prometheus.yml must have one splade-serve job"
    for static in jobs[0]["static_configs"]:
        static["targets"] = [target]
    config["scrape_configs"] = jobs
    return config


class PrometheusClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10)

    def query(self, expr: str) -> dict:
        """An instant query; returns the `data` object, raises with Prometheus's error text on failure."""
        response = self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {expr!r}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def metric_names(self) -> set[str]:
        return set(self.http.get("/api/v1/label/__name__/values").json()["data"])


@contextlib.contextmanager
def running_prometheus(target: str, workdir: Path, ready_timeout: float = 30) -> Iterator[PrometheusClient]:
    """Start Prometheus scraping `target` (host:port) every second; stop it afterwards."""
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(local_config(target)))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        )
        client = PrometheusClient(f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"prometheus exited {proc.returncode}:\n{log.read().decode(errors='replace')}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.http.get("/-/ready").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("prometheus not ready")
                time.sleep(0.2)
            yield client
        finally:
            client.http.close()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
