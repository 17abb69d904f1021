"""dashboard.cli: `callboard` alone prints the help, `--version`, and a `serve --help` that says what
serve does, its defaults and the environment variables it reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from callboard.dashboard import __version__, cli
from callboard.dashboard.settings import DEFAULT_URL, ENV_CONFIG, ENV_REDIS, ENV_SETTINGS, env_var
from tests.servers import REPO, child_env


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: callboard")
    for command in ("serve", "demo", "hash-password", "new-token"):
        assert command in out


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"callboard {__version__}"


def serve_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["serve", "--help"])
    assert stopped.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width


def test_serve_help_describes_the_command_and_its_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = serve_help(capsys)
    assert "Watch one or more Redis databases (targets) for Dramatiq and Arq queues" in text
    assert f"(default: {DEFAULT_URL})" in text  # --redis
    assert f'watches {DEFAULT_URL} as the target "default"' in text
    assert "seconds between collections (default 2)" in text
    assert "address to bind (default 127.0.0.1)" in text
    assert "port (default 8000)" in text
    assert "named host:port/db" in text


def test_serve_help_names_each_environment_variable_and_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    text = serve_help(capsys)
    assert f"{ENV_REDIS} as --redis" in text and f"{ENV_CONFIG} as --config" in text
    for key in ENV_SETTINGS:
        flag = "--allowed-host" if key == "allowed_hosts" else "--" + key.replace("_", "-")
        assert f"{env_var(key)} as {flag}" in text


def test_config_takes_a_file_as_the_readme_says(capsys: pytest.CaptureFixture[str]) -> None:
    text = serve_help(capsys)
    assert "[--config FILE]" in text and "--config FILE TOML config file" in text
    assert "--config FILE" in (REPO / "README.md").read_text()


def test_python_m_callboard_alone_prints_the_help() -> None:
    command = [sys.executable, "-m", "callboard"]
    done = subprocess.run(command, env=child_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout.startswith("usage: callboard") and "serve" in done.stdout
    assert done.stderr == ""
