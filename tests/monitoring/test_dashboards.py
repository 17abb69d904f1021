"""grafana/dashboards: the checks of Grafana's dashboard-linter that matter here (it cannot be installed
on this machine), plus Callboard's own: stable uids, every query through the ${datasource} variable,
and every template variable applied to every metric that has its label."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.monitoring.files import (
    DASHBOARDS,
    Json,
    dashboard_queries,
    load_dashboard,
    panels,
    readme_metrics,
    variables,
)
from tests.monitoring.promql import label_values, matcher_labels

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Links and bookmarks point at these; renaming one is a breaking change, so it must be deliberate.
UIDS = {"callboard-queues", "callboard-health"}


def test_dashboards_and_uids_are_stable() -> None:
    dashboards = {path.stem: load_dashboard(path) for path in DASHBOARDS}
    assert set(dashboards) == UIDS
    for stem, dashboard in dashboards.items():
        assert dashboard["uid"] == stem  # the file name says which dashboard it is
        assert dashboard["title"].startswith("Callboard / ")
        assert "callboard" in dashboard["tags"]
        assert dashboard["editable"] is False  # the JSON in git is the source of truth
        assert isinstance(dashboard["schemaVersion"], int)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_variables(path: Path) -> None:
    dashboard = load_dashboard(path)
    found = variables(dashboard)
    assert found[0]["name"] == "datasource" and found[0]["type"] == "datasource"
    assert found[0]["query"] == "prometheus"
    names = [v["name"] for v in found]
    assert names[:3] == ["datasource", "job", "target"], names
    for variable in found[1:]:
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"] == DATASOURCE, variable["name"]
        assert variable["refresh"] == 2, variable["name"]  # reload on time-range change
        parsed = label_values(variable["query"])
        assert parsed and parsed[1] == variable["name"], variable["query"]
        if variable["multi"]:
            assert variable["includeAll"] and variable["allValue"] == ".+", variable["name"]
        # Each variable is chained to the ones before it.
        for before in names[1 : names.index(variable["name"])]:
            assert f'{before}=~"${before}"' in variable["query"], (variable["name"], before)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels(path: Path) -> None:
    dashboard = load_dashboard(path)
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        where = f"{path.name}: {panel['title']!r}"
        assert panel["title"] and panel.get("description"), where
        assert panel["datasource"] == DATASOURCE, where
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        assert panel["targets"], where
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, where
            if panel["type"] == "table":
                assert target.get("instant") and target.get("format") == "table", where
    _assert_grid(path.name, [p for p in panels(dashboard)])


def _assert_grid(name: str, all_panels: list[Json]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, (name, panel["title"])
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{name}: {panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_queries_apply_every_variable(path: Path) -> None:
    """Every Callboard metric is filtered by each variable whose label it has, with `=~` (the
    variables are multi-value); rates use $__rate_interval."""
    documented = readme_metrics()
    names = [v["name"] for v in variables(load_dashboard(path)) if v["type"] == "query"]
    for query in dashboard_queries(path):
        assert not re.search(r'=\s*"\$', query.expr), f"{query.where}: use =~ with variables"
        for window in re.findall(r"\b(?:rate|irate|increase)\([^\[]*\[([^\]]+)\]", query.expr):
            assert window in ("$__rate_interval", "$__range"), query.where
        for metric, used in matcher_labels(query.expr).items():
            labels = documented.get(metric, set()) | {"job"}
            expected = {name for name in names if name in labels}
            assert expected <= used, f"{query.where}: {metric} lacks {sorted(expected - used)}"
            for name in expected:
                assert f'{name}=~"${name}"' in query.expr, query.where
