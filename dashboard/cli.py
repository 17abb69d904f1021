"""`callboard serve`, `callboard demo` (docs/contracts.md §1), and the helpers that make auth config.

`callboard` alone prints this help and exits 2 (no command was given); `--help` prints it and exits 0.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence

from callboard.dashboard import __version__
from callboard.dashboard.settings import (
    DEFAULT_URL,
    ENV_CONFIG,
    ENV_REDIS,
    ENV_SETTINGS,
    Settings,
    SettingsError,
    env_var,
    load,
)

DEFAULTS = Settings()

SERVE_DESCRIPTION = f"""\
Watch one or more Redis databases (targets) for Dramatiq and Arq queues, and serve
the dashboard, its JSON API and Prometheus /metrics.

Each setting comes from the first that gives it: a flag, the environment, the config
file, the default. Without --redis, {ENV_REDIS} or a config file, Callboard watches
{DEFAULT_URL} as the target "default"."""


def _serve_epilog(serve: argparse.ArgumentParser) -> str:
    """The environment variables `serve` reads, each with the flag it stands for."""
    flags = {a.dest: a.option_strings[-1] for a in serve._actions if a.option_strings}
    lines = [(ENV_REDIS, "as --redis"), (ENV_CONFIG, "as --config")]
    lines += [(env_var(key), f"as {flags[key]}") for key in ENV_SETTINGS]
    return (
        "environment (a flag wins over its variable; a boolean is true when it is 1, true or yes,\n"
        "and a list is comma or space separated):\n"
        + "".join(f"  {name:<32} {text}\n" for name, text in lines)
        + "\nEvery setting, and the config file's keys: docs/configuration.md"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callboard", description="Dashboard for Dramatiq and Arq queues on Redis."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="watch one or more Redis targets and serve the dashboard",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(serve)
    serve.epilog = _serve_epilog(serve)
    sub.add_parser("hash-password", help="read a password, print the hash for [auth] users in the config")
    sub.add_parser("new-token", help="print a new bearer token and the hash for [auth] tokens")
    demo = sub.add_parser("demo", help="embedded Redis, real demo workers and traffic, and the dashboard")
    demo.add_argument("--port", type=int, default=DEFAULTS.port, help="port (default %(default)s)")
    demo.add_argument("--host", default=DEFAULTS.host, help="address to bind (default %(default)s)")
    return parser


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The flags of `callboard serve`. Each `dest` is the setting it sets, or `redis` and `config`, the
    arguments of `load` (so docs/configuration.md lists them from here); not given, each is None or []."""
    serve.add_argument(
        "--redis",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help=f"a Redis target (repeatable); without NAME= it is named host:port/db (default: {DEFAULT_URL})",
    )
    serve.add_argument("--config", metavar="FILE", help="TOML config file (docs/configuration.md)")
    serve.add_argument("--host", help=f"address to bind (default {DEFAULTS.host})")
    serve.add_argument("--port", type=int, help=f"port (default {DEFAULTS.port})")
    serve.add_argument("--read-only", action="store_true", default=None, help="hide and refuse every control")
    serve.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help=f"seconds between collections (default {DEFAULTS.poll_interval:g})",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="serve a non-loopback address without auth (something in front must protect it)",
    )
    serve.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        metavar="HOST",
        help="a Host name to serve under besides loopback: ops.example.com, *.example.com or * (repeatable)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from callboard.demo.runner import run_demo

        return run_demo(host=args.host, port=args.port)
    if args.command in ("hash-password", "new-token"):
        return _secrets(args.command)
    flags = {key: value for key, value in vars(args).items() if key not in ("command", "redis", "config")}
    try:
        settings = load(redis=args.redis, config=args.config, **flags)
    except SettingsError as exc:
        print(f"callboard: {exc}", file=sys.stderr)
        return 2
    from callboard.dashboard.server import serve  # uvicorn and the app load only for `serve`

    return serve(settings)


def _secrets(command: str) -> int:
    from callboard.dashboard.access import hash_password, hash_token, new_token

    if command == "new-token":
        token = new_token()
        print(f"token (give it to the client; it is not stored): {token}")
        print(f'config line under [auth] tokens:  name = "{hash_token(token)}"')
        return 0
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("callboard: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("callboard: use at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
