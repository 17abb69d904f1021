"""A real Prometheus server for tests: its own config and storage in a temp folder, a free loopback port,
and a small client for the HTTP API (queries, label values, rules, alerts)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.monitoring.files import tool
from tests.servers import Process, child_env, free_port, wait_until


class PrometheusError(AssertionError):
    """The API answered with an error (e.g. bad_data for a query that does not parse)."""


@dataclass
class PrometheusServer:
    config: Path
    storage: Path
    port: int = field(default_factory=free_port)
    proc: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        args = [
            tool("prometheus"),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc = Process(args, child_env(), "prometheus").start()
        wait_until(self._ready, timeout=30, what=f"prometheus /-/ready; log: {self.log()}")
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.proc.log()[-2000:] if self.proc else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success, PrometheusError otherwise."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[Any]:
        """An instant query's vector (a scalar result becomes one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [data["result"]]
        result: list[Any] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": match})
        return values

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
