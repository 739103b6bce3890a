"""The deployment files, checked by their own tools (promtool, docker-compose, hadolint) and against each other.

No Docker engine runs here, so images are not built and containers not started: what can be checked without one
is checked here (see docs/operations.md for the list).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ops.dashboard import DASHBOARD_PATH, expressions, load_dashboard, metric_names, panels
from tests.ops.tools import tool

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
DATASOURCE_CONFIG = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "splade-serve.yml"
COMPOSE = REPO_ROOT / "docker-compose.yml"
COMPOSE_GPU = REPO_ROOT / "docker-compose.gpu.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

# The metrics of docs/design.md that the dashboard must show.
CONTRACT_METRICS = {
    "splade_request_duration_seconds", "splade_stage_duration_seconds", "splade_encoder_batch_size",
    "splade_query_terms", "splade_postings_traversed", "splade_requests_in_flight",
    "splade_rejected_requests_total", "splade_model_info",
}
from engine import STAGES  # noqa: E402  (the one definition)


def run(*command: str, cwd: Path = REPO_ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# ---------------------------------------------------------------- Prometheus


def test_prometheus_config_passes_promtool():
    proc = run(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_rejects_a_broken_config(tmp_path):
    """The check above can fail: an unknown field is refused."""
    broken = tmp_path / "prometheus.yml"
    broken.write_text(PROMETHEUS_CONFIG.read_text() + "\nscrape_config_typo: []\n")
    proc = run(tool("promtool"), "check", "config", str(broken))
    assert proc.returncode != 0


def write_rules(path: Path, exprs: list[str]) -> None:
    rules = [{"record": f"dashboard:expression_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))


def test_every_dashboard_expression_parses_with_promtool(tmp_path):
    """Each expression becomes a recording rule: `promtool check rules` runs Prometheus's own PromQL parser."""
    exprs = [expression.concrete() for expression in expressions(load_dashboard())]
    assert len(exprs) >= 20
    rules = tmp_path / "dashboard-rules.yml"
    write_rules(rules, exprs)
    proc = run(tool("promtool"), "check", "rules", str(rules))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(exprs)} rules found" in proc.stdout


def test_promtool_rejects_a_broken_expression(tmp_path):
    rules = tmp_path / "broken-rules.yml"
    write_rules(rules, ["sum(rate(splade_query_terms_count[1m])"])
    proc = run(tool("promtool"), "check", "rules", str(rules))
    assert proc.returncode != 0


# ---------------------------------------------------------------- Grafana dashboard and provisioning


def test_dashboard_panels_are_well_formed():
    dashboard = load_dashboard()
    datasource_uid = load_yaml(DATASOURCE_CONFIG)["datasources"][0]["uid"]
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "table", "gauge", "bargauge"}, panel["type"]
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource_uid
            assert target["expr"].strip()


def test_dashboard_shows_everything_the_issue_asks_for():
    exprs = expressions(load_dashboard())
    used = set().union(*(metric_names(e.expr) for e in exprs))
    base_names = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert CONTRACT_METRICS <= used | base_names, CONTRACT_METRICS - (used | base_names)
    # p50/p95/p99 of every stage, total included.
    for stage in STAGES:
        for quantile in ("0.5", "0.95", "0.99"):
            assert any(
                f"histogram_quantile({quantile}," in e.expr and f'stage="{stage}"' in e.expr for e in exprs
            ), f"no p{quantile} for stage {stage}"
    # Request rate, error rate (by status) and the execution provider as a label shown to the reader.
    assert any("rate(splade_request_duration_seconds_count" in e.expr and 'status=~"5.."' in e.expr for e in exprs)
    assert any("splade_model_info" in e.expr and "{{provider}}" in e.legend for e in exprs)
    for metric in ("splade_encoder_batch_size", "splade_query_terms", "splade_postings_traversed"):
        assert any(f"{metric}_bucket" in e.expr for e in exprs), metric
    # The online recall monitor (issue 10): the approximate scorer's recall@k, per scorer.
    assert any("splade_recall_at_k" in e.expr and "{{scorer}}" in e.legend for e in exprs)


def test_provisioning_points_at_the_dashboard_and_prometheus():
    compose = load_yaml(COMPOSE)
    grafana = compose["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    provider_path = load_yaml(DASHBOARD_PROVIDER)["providers"][0]["options"]["path"]
    assert (REPO_ROOT / mounts[provider_path]).resolve() == DASHBOARD_PATH.parent
    assert (REPO_ROOT / mounts["/etc/grafana/provisioning"]).resolve() == DASHBOARD_PROVIDER.parents[1]
    datasource = load_yaml(DATASOURCE_CONFIG)["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]


def test_prometheus_scrapes_the_compose_api():
    config = load_yaml(PROMETHEUS_CONFIG)
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "splade-serve")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    api = load_yaml(COMPOSE)["services"]["api"]
    assert job["static_configs"][0]["targets"] == [f"api:{api['environment']['SPLADE_PORT']}"]
    # The dashboard selects this job.
    assert all('job="splade-serve"' in e.expr for e in expressions(load_dashboard()))


# ---------------------------------------------------------------- Compose


def compose_config(*files: Path, env_overrides: dict | None = None) -> dict:
    import os

    env = dict(os.environ)
    env.pop("SPLADE_CORPUS", None)
    env.update(env_overrides or {})
    args = [arg for path in files for arg in ("-f", str(path))]
    proc = run(tool("docker-compose"), *args, "config", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_file_is_valid_and_wires_the_services():
    config = compose_config(COMPOSE)
    services = config["services"]
    assert set(services) == {"builder", "api", "prometheus", "grafana"}
    assert services["builder"]["build"]["target"] == "builder"
    assert services["api"]["build"]["target"] == "runtime"
    assert services["api"]["depends_on"]["builder"]["condition"] == "service_completed_successfully"
    assert services["prometheus"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert "deploy/docker/healthcheck.py" in services["api"]["healthcheck"]["test"]
    env = services["api"]["environment"]
    assert env["SPLADE_HOST"] == "0.0.0.0"
    assert env["SPLADE_MODEL_DIR"] == services["builder"]["environment"]["SPLADE_MODEL_DIR"]
    assert env["SPLADE_INDEX_DIR"] == services["builder"]["environment"]["SPLADE_INDEX_DIR"]
    # The api reads the builder's volume, read-only; nothing is baked into the image.
    api_volumes = {v["target"]: v for v in services["api"]["volumes"]}
    builder_volumes = {v["target"]: v for v in services["builder"]["volumes"]}
    assert api_volumes["/data"]["source"] == builder_volumes["/data"]["source"] == "splade-data"
    assert api_volumes["/data"]["read_only"] is True
    assert builder_volumes["/input/corpus.jsonl"]["source"] == str(REPO_ROOT / "deploy/docker/no-corpus.jsonl")
    for service in services.values():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", "published ports stay on loopback"


def test_one_setting_points_the_builder_at_a_users_corpus(tmp_path):
    corpus = tmp_path / "my-corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "hello"}\n')
    config = compose_config(COMPOSE, env_overrides={"SPLADE_CORPUS": str(corpus)})
    volumes = {v["target"]: v for v in config["services"]["builder"]["volumes"]}
    assert volumes["/input/corpus.jsonl"]["source"] == str(corpus)
    assert volumes["/input/corpus.jsonl"]["read_only"] is True


def test_gpu_override_reserves_an_nvidia_device():
    config = compose_config(COMPOSE, COMPOSE_GPU)
    api = config["services"]["api"]
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert api["build"]["args"]["VARIANT"] == "gpu"
    assert api["environment"]["SPLADE_DEVICE"] == "cuda"
    assert api["environment"]["SPLADE_HOST"] == "0.0.0.0"  # inherited from the base file


def test_compose_validator_rejects_an_invalid_file(tmp_path):
    """The validation above can fail: a wrong depends_on condition is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("service_completed_successfully", "service_finished"))
    (tmp_path / "deploy" / "docker").mkdir(parents=True)
    (tmp_path / "deploy" / "docker" / "no-corpus.jsonl").touch()
    proc = run(tool("docker-compose"), "-f", str(broken), "config", "--quiet", cwd=tmp_path)
    assert proc.returncode != 0
    assert "condition" in proc.stderr


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint():
    proc = run(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(2)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def test_dockerfile_targets_user_healthcheck_and_layer_order():
    stages = dockerfile_stages()
    assert list(stages)[-1] == "runtime", "the default target (last stage) is the service"
    assert {"python-cpu", "python-gpu", "deps", "builder-deps", "builder", "runtime"} <= set(stages)
    cuda_image = re.search(r"^ARG CUDA_IMAGE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE).group(1)
    assert stages["python-gpu"][0].startswith("FROM ${CUDA_IMAGE}")
    assert cuda_image.startswith("nvidia/cuda:") and "-runtime-" in cuda_image
    for target in ("builder", "runtime"):
        users = [line for line in stages[target] if line.startswith("USER ")]
        assert users and users[-1].split()[1].split(":")[0] not in {"0", "root"}, target
        copies = [i for i, line in enumerate(stages[target]) if line.startswith("COPY")]
        venv = next(i for i in copies if "/opt/venv" in stages[target][i])
        assert venv == copies[0], f"{target}: dependencies must be copied before the source"
    runtime = "\n".join(stages["runtime"])
    assert "HEALTHCHECK" in runtime and "deploy/docker/healthcheck.py" in runtime
    assert "SPLADE_HOST=0.0.0.0" in runtime
    # The dependency stage sees only the dependency list, not the source.
    deps_copies = [line for line in stages["deps"] if line.startswith("COPY")]
    assert deps_copies == ["COPY pyproject.toml deploy/docker/requirements.py ./"]


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def excluded(path: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        plain = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch(prefix, pattern) or (pattern.startswith("**/") and fnmatch(prefix.split("/")[-1], plain)):
                return True
    return False


def test_dockerfile_copies_only_sources_the_context_keeps():
    patterns = dockerignore_patterns()
    for must_exclude in ("data", ".venv", ".git", "tests"):
        assert excluded(must_exclude, patterns), must_exclude
    assert excluded("models/x/query.onnx", patterns)
    sources = []
    for lines in dockerfile_stages().values():
        for line in lines:
            if line.startswith("COPY") and "--from=" not in line:
                sources += line.split()[1:-1]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not excluded(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"


# ---------------------------------------------------------------- Image helper scripts


def requirements(*args: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "deploy/docker/requirements.py", *args)


def test_requirements_swap_onnxruntime_for_the_gpu_build():
    cpu = requirements("--variant", "cpu").stdout.split()
    gpu = requirements("--variant", "gpu").stdout.split()
    assert any(line.startswith("onnxruntime>") for line in cpu)
    assert not any(line.startswith("onnxruntime-gpu") for line in cpu)
    assert any(line.startswith("onnxruntime-gpu") for line in gpu)
    assert not any(re.match(r"onnxruntime[<>=!~ ]", line) for line in gpu)
    assert set(cpu) - {l for l in cpu if l.startswith("onnxruntime")} <= set(gpu)
    export = requirements("--no-runtime", "--extra", "export").stdout.split()
    assert any(line.startswith("torch") for line in export) and not set(export) & set(cpu)
    # The service image must not contain torch.
    assert not any(line.startswith(("torch", "transformers")) for line in cpu + gpu)


def test_requirements_refuse_an_unknown_extra():
    proc = requirements("--extra", "nope")
    assert proc.returncode == 2
    assert "--extra" in proc.stderr and "nope" in proc.stderr


def test_healthcheck_fails_when_nothing_listens():
    from tests.support.server import free_port

    env = {"SPLADE_PORT": str(free_port()), "PATH": "/usr/bin:/bin"}
    proc = run(sys.executable, "deploy/docker/healthcheck.py", env=env)
    assert proc.returncode == 1
    assert "unhealthy" in proc.stderr
