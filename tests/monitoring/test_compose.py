"""compose.yaml: a real Docker Compose v2 `config` accepts it (no engine needed), and what `config` cannot
check holds too: bind-mount sources and build contexts exist, ports are bound to loopback, services wait
for healthy dependencies, the processes are the demo's, and the files that refer to each other agree."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from callboard.dashboard.settings import load
from callboard.demo.runner import demo_settings, process_specs
from tests.monitoring.files import GRAFANA, PROMETHEUS, Json, compose_binary, load_yaml
from tests.servers import REPO

SERVICES = {
    "redis",
    "dramatiq-worker",
    "traffic",
    "arq-worker",
    "arq-reports-worker",
    "arq-traffic",
    "callboard",
    "prometheus",
    "grafana",
}
#: Services that others wait for, or that a person would check: each has a healthcheck.
HEALTHCHECKED = SERVICES - {"traffic", "arq-traffic"}


def compose(*args: str, file: Path = REPO / "compose.yaml") -> subprocess.CompletedProcess[str]:
    command = [str(compose_binary()), "--project-directory", str(file.parent), "-f", str(file), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=file.parent)


@cache
def model() -> Json:
    """compose.yaml as Compose itself resolves it: anchors merged, relative paths made absolute."""
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    data: Json = json.loads(result.stdout)
    return data


def services() -> dict[str, Json]:
    found: dict[str, Json] = model()["services"]
    return found


def test_compose_v2_accepts_the_file() -> None:
    version = subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True, timeout=30)
    assert re.search(r"version v2\.", version.stdout), version.stdout + version.stderr
    result = compose("config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert set(services()) == SERVICES


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validation is real: an unknown key and a dependency on a missing service both fail."""
    text = (REPO / "compose.yaml").read_text()
    for broken in (
        text.replace("    ports:\n", "    portz:\n", 1),
        text.replace("      prometheus:\n        condition:", "      nowhere:\n        condition:", 1),
    ):
        assert broken != text
        path = tmp_path / "compose.yaml"
        path.write_text(broken)
        assert compose("config", "--quiet", file=path).returncode != 0


def test_paths_exist() -> None:
    """`config` does not check these (and `docker compose up` would create a missing bind source empty)."""
    for name, service in services().items():
        if "build" in service:
            context = Path(service["build"]["context"])
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), (name, volume["source"])


def test_ports_are_loopback_only() -> None:
    published = [(name, port) for name, s in services().items() for port in s.get("ports", [])]
    assert {name for name, _ in published} == {"callboard", "prometheus", "grafana"}
    for name, port in published:
        assert port["host_ip"] == "127.0.0.1", name


def test_healthchecks_and_start_order() -> None:
    for name, service in services().items():
        assert ("healthcheck" in service) == (name in HEALTHCHECKED), name
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", (name, dependency)
            assert dependency in HEALTHCHECKED, (name, dependency)


def _command_without_python(service: Json) -> tuple[str, ...]:
    command: list[str] = service["command"]
    return tuple(command[1:] if command[0] == "python" else command)


def test_the_processes_are_the_demos() -> None:
    """Every process `callboard demo` starts runs in compose with the same arguments."""
    commands = {_command_without_python(s) for s in services().values() if s.get("command")}
    for spec in process_specs():
        assert spec.args[1:] in commands, spec.name
    for name in ("dramatiq-worker", "traffic", "arq-worker", "arq-reports-worker", "arq-traffic"):
        env = services()[name]["environment"]
        assert env["CALLBOARD_DEMO_REDIS_URL"] == "redis://redis:6379/0", name


def test_callboard_watches_the_demo_as_the_demo_does(tmp_path: Path) -> None:
    service = services()["callboard"]
    command: list[str] = service["command"]
    assert command[:2] == ["callboard", "serve"]
    # Binding beyond loopback without auth must be explicit (docs/contracts.md §1).
    assert command[command.index("--host") + 1] == "0.0.0.0" and "--allow-unauthenticated" in command
    (mounted,) = service["configs"]
    assert command[command.index("--config") + 1] == mounted["target"]
    path = tmp_path / "callboard.toml"
    path.write_text(model()["configs"][mounted["source"]]["content"])
    settings = load(config=str(path), environ={})
    demo = demo_settings("redis://redis:6379/0", "0.0.0.0", 8000)
    assert settings.targets == demo.targets
    assert settings.poll_interval == demo.poll_interval


def _mount(service: str, source: Path) -> str:
    for volume in services()[service]["volumes"]:
        if volume["type"] == "bind" and Path(volume["source"]) == source:
            assert volume.get("read_only"), (service, source)
            target: str = volume["target"]
            return target
    raise AssertionError(f"{service} does not mount {source}")


def _flag(service: str, flag: str) -> str:
    for arg in services()[service]["command"]:
        if arg.startswith(f"{flag}="):
            value: str = arg.split("=", 1)[1]
            return value
    raise AssertionError(f"{service} has no {flag}")


def test_the_files_agree_with_each_other() -> None:
    """Prometheus scrapes the callboard service; Grafana's datasource is the prometheus service and its
    dashboard provider reads where the dashboards are mounted; the scrape and rate intervals match."""
    config: Any = load_yaml(PROMETHEUS / "prometheus.yml")
    prometheus_dir = _mount("prometheus", PROMETHEUS)
    assert _flag("prometheus", "--config.file") == f"{prometheus_dir}/prometheus.yml"
    assert re.match(r"prom/prometheus:v2\.", services()["prometheus"]["image"])
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "callboard"
    callboard = services()["callboard"]["command"]
    assert job["static_configs"] == [{"targets": [f"callboard:{callboard[callboard.index('--port') + 1]}"]}]

    (datasource,) = load_yaml(GRAFANA / "provisioning/datasources/prometheus.yaml")["datasources"]
    prometheus_port = _flag("prometheus", "--web.listen-address").rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    assert datasource["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]
    assert _mount("grafana", GRAFANA / "provisioning") == "/etc/grafana/provisioning"
    (provider,) = load_yaml(GRAFANA / "provisioning/dashboards/callboard.yaml")["providers"]
    dashboards_dir = _mount("grafana", GRAFANA / "dashboards")
    assert provider["options"]["path"] == dashboards_dir
    home = services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_dir + "/")
    assert (GRAFANA / "dashboards" / home.removeprefix(dashboards_dir + "/")).is_file()


def test_dockerfile_builds_assets_in_a_node_stage() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, re.M)
    assert stages[0][0].startswith("node:") and stages[0][1] == "assets", stages
    assert "COPY --from=assets /src/static/vendor static/vendor" in text
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in sources.split():
            if source == ".":
                continue
            assert (REPO / source).exists(), source
            assert not any(source == i or source.startswith(i + "/") for i in ignored), source
