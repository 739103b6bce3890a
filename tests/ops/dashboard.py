"""Read the provisioned Grafana dashboard: its panels, their PromQL expressions and the metric names they use."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_PATH = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "splade-serve.json"

# Grafana's built-in interval variables, given the concrete values a query against Prometheus needs.
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__interval": "5s", "$__range": "1m"}

_METRIC_NAME = re.compile(r"\b(splade_[a-zA-Z0-9_]+|up)\b")
_LEFTOVER_VARIABLE = re.compile(r"\$\{?\w+")


@dataclass(frozen=True)
class Expression:
    panel_title: str
    ref_id: str
    expr: str
    legend: str

    def concrete(self) -> str:
        """The expression with Grafana's variables replaced, ready for Prometheus."""
        text = self.expr
        for variable, value in GRAFANA_VARIABLES.items():
            text = text.replace(variable, value)
        leftover = _LEFTOVER_VARIABLE.search(text)
        if leftover:
            raise AssertionError(f"panel {self.panel_title!r}: unknown variable {leftover.group(0)} in {self.expr}")
        return text


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict) -> list[Expression]:
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found.append(Expression(panel["title"], target["refId"], target["expr"], target.get("legendFormat", "")))
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label names and functions are not matched by the pattern)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_METRIC_NAME.findall(without_strings))
