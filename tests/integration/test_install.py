"""The wheel, installed into an application's environment that has its own `dashboard` and `demo`.

Everything Callboard installs lives under `callboard`, so both import, and the installed package finds
its templates and static files (the vendor scripts included) without the checkout: the test runs from
a directory outside the repository, in a fresh venv holding only the wheel and its dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

APP_CHECK = """
import dashboard, demo
assert dashboard.OWNER == "app" and demo.OWNER == "app", "the app's own packages were shadowed"

import callboard
from callboard.dashboard.app import create_app
from callboard.dashboard.settings import Settings, TargetSettings
from starlette.testclient import TestClient

assert "site-packages" in callboard.__file__, callboard.__file__
settings = Settings(targets=(TargetSettings("t", "redis://127.0.0.1:1/0"),))
with TestClient(create_app(settings), base_url="http://localhost") as client:
    assert client.get("/healthz").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "Callboard" in page.text, page.status_code
    htmx = client.get("/static/vendor/htmx.min.js")
    assert htmx.status_code == 200 and len(htmx.content) > 10_000, htmx.status_code
print("ok")
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(REPO)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("callboard-*.whl")
    return built


def test_wheel_installs_beside_an_apps_own_dashboard_package(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies come from this test run's environment as a plain path entry: its .pth files
    # (the editable install of this checkout among them) are not processed, so only the wheel can
    # provide `callboard`.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    app = tmp_path / "app"
    for name in ("dashboard", "demo"):
        (app / name).mkdir(parents=True)
        (app / name / "__init__.py").write_text('OWNER = "app"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(app)}
    done = subprocess.run(
        [python, "-c", APP_CHECK], cwd=app, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

    # The console script is installed too and runs from the wheel.
    script = site / "bin" / "callboard"
    assert script.exists()
    help_text = subprocess.run(
        [python, str(script), "serve", "--help"], cwd=app, env=env, capture_output=True, text=True, timeout=60
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "--redis" in help_text.stdout
