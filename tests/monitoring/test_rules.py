"""prometheus/: promtool accepts the compose config and every rule file, and every alert and recording rule
has passing `promtool test rules` unit tests (prometheus/tests/), which fail when they should."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.monitoring.files import PROMETHEUS, RULE_FILES, RULE_TESTS, load_yaml, rules, tool
from tests.servers import REPO

SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str | Path, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_check_config_loads_every_rule_file() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_check_rules() -> None:
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout))
    assert found == len(rules()) > 0, result.stdout


def test_unit_tests_pass() -> None:
    assert RULE_TESTS, "no prometheus/tests/*.test.yml"
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_unit_tests_fail_when_an_alert_misbehaves(tmp_path: Path) -> None:
    """The harness is not vacuous: the same tests against a broken copy of the alerts fail."""
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    alerts = tmp_path / "prometheus" / "rules" / "callboard-alerts.yml"
    text = alerts.read_text()
    broken = text.replace("expr: callboard_up == 0", "expr: callboard_up == 1")
    assert broken != text
    alerts.write_text(broken)
    result = promtool("test", "rules", "tests/callboard-alerts.test.yml", cwd=tmp_path / "prometheus")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CallboardTargetUnreachable" in result.stdout + result.stderr


def _unit_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TESTS for test in load_yaml(path)["tests"]]


def test_every_alert_has_firing_and_quiet_cases() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in _unit_tests():
        for case in test.get("alert_rule_test", []):
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - fires == set(), "alerts with no test where they fire"
    assert alerts - quiet == set(), "alerts with no test where they stay quiet"
    assert fires | quiet <= alerts, "tests of alerts that do not exist"


def test_every_recording_rule_has_an_expression_test() -> None:
    tested = " ".join(case["expr"] for test in _unit_tests() for case in test.get("promql_expr_test", []))
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert {name for name in recorded if name not in tested} == set()


def test_rules_follow_the_conventions() -> None:
    """monitoring-mixins style: Callboard-prefixed CamelCase alerts with a severity, a static summary
    sentence and a templated description; recording rules named level:metric:operations."""
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]
            continue
        name = rule["alert"]
        assert re.fullmatch(r"Callboard[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert summary.endswith(".") and "{{" not in summary, name
        assert "{{" in description or "absent(" in rule["expr"], name


def test_thresholds_live_in_one_file() -> None:
    """Queue alerts compare with callboard:…:threshold series, never with a number of their own."""
    thresholds = {r["record"] for r in rules() if r["file"] == "callboard-thresholds.yml"}
    assert thresholds and all(name.endswith(":threshold") for name in thresholds)
    for rule in rules():
        if "alert" not in rule:
            continue
        used = set(re.findall(r"callboard:[a-z_]+:threshold", rule["expr"]))
        assert used <= thresholds, rule["alert"]
        if rule["alert"].startswith("CallboardQueue") or rule["alert"] == "CallboardDeadLettersGrowing":
            assert used, f"{rule['alert']} compares with no threshold series"
    guard = next(r for r in rules() if r.get("alert") == "CallboardAlertThresholdsMissing")
    assert set(re.findall(r"callboard:[a-z_]+:threshold", guard["expr"])) == thresholds


def test_every_alert_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    assert [rule["alert"] for rule in rules() if "alert" in rule and f"`{rule['alert']}`" not in readme] == []
