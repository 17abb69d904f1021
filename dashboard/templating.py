"""Jinja environment: where templates and static files live, filters, and URL helpers.

Templates are autoescaped; nothing from Redis is marked safe. Static URLs carry a content hash so a
browser never runs stale JS or CSS after an upgrade.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.templating import Jinja2Templates

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def asset_dir(name: str) -> Path:
    """`templates` or `static`: inside the installed package (wheel), else at the repository root."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _REPO / name


@cache
def _hash(path: str) -> str:
    file = asset_dir("static") / path
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()[:10]
    except OSError:
        return "missing"


def static(path: str) -> str:
    return f"/static/{path}?v={_hash(path)}"


def queue_url(target: str, framework: str, key: str, tab: str | None = None) -> str:
    url = f"/queues/{quote(target, safe='')}/{framework}/{quote(key, safe='')}"
    return url + (f"?state={tab}" if tab else "")


def job_url(target: str, framework: str, key: str, job_id: str) -> str:
    return f"/jobs/{quote(target, safe='')}/{framework}/{quote(key, safe='')}/{quote(job_id, safe='')}"


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "—"
    delta = (now or time.time()) - ts
    future = delta < 0
    text = duration(abs(delta))
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 else "0 s"
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def compact(n: int | float | None) -> str:
    if n is None:
        return "—"
    if abs(n) < 10_000:
        return f"{n:,}"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def pretty(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def bytes_(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = int(n / 1024)
    return f"{n:.1f} TiB"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(asset_dir("templates")))
    env = templates.env
    env.globals.update(static=static, queue_url=queue_url, job_url=job_url)
    env.filters.update(ago=ago, duration=duration, when=when, compact=compact, pretty=pretty, bytes=bytes_)
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates
