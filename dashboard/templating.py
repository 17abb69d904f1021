"""Jinja environment: where templates and static files live, filters, and URL helpers.

Templates are autoescaped; nothing from Redis is marked safe. Static URLs carry a content hash so a
browser never runs stale JS or CSS after an upgrade. Every URL is built by dashboard.urls (globals
`queue_url`, `job_url`, ...), never by concatenation. Every value printed goes through `printable`,
so a lone surrogate from Redis (a file name that is not UTF-8, a JSON "\ud800") shows as an
`\udcff` escape instead of failing the page's UTF-8 encoding.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.templating import Jinja2Templates

import callboard
from callboard.collectors import backends
from callboard.dashboard.assets import Assets
from callboard.dashboard.urls import BUILDERS, segment
from callboard.dashboard.urls import job_url as job_url  # re-exported: templates and older callers use these
from callboard.dashboard.urls import queue_url as queue_url
from callboard.dashboard.words import (
    STATE_STYLES,
    action_label,
    noun,
    plural,
    sentence,
    state_class,
    state_label,
)


def asset_dir(name: str) -> Path:
    """`templates` or `static`, beside the package's modules (a symlink in a checkout, a copy in a wheel)."""
    return callboard.ROOT / name


#: The files under static/, served by the `/static/` route (dashboard/assets.py).
STATIC = Assets(asset_dir("static"))


def static(path: str) -> str:
    """The file's URL with its content hash: served `immutable`, as that URL never names other bytes."""
    return f"/static/{path}?v={STATIC.digest(path)}"


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "—"
    delta = (time.time() if now is None else now) - ts
    future = delta < 0
    text = duration(abs(delta))
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = float(seconds)
    # Below a minute the figure is rounded, but never up into the next unit's wording (0.9996 s is
    # "999 ms", not "1000 ms"; 59.7 s is "59 s", not "60 s"); from minutes on, whole units truncate.
    if s < 0.001:
        return "0 s"
    if s < 1:
        return f"{min(s * 1000, 999):.0f} ms"
    if s < 10:
        return f"{min(s, 9.9):.1f} s"
    if s < 60:
        return f"{min(s, 59):.0f} s"
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
    # The smallest unit whose rounded figure stays under 1000 (999,999 is "1.0M", not "1000.0k").
    for unit, size in (("k", 1e3), ("M", 1e6)):
        text = f"{n / size:.1f}"
        if abs(float(text)) < 1000:
            return text + unit
    return f"{n / 1e9:.1f}G"


def pretty(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def bytes_(n: int | None) -> str:
    """Whole bytes below 1 KiB, else one decimal in the smallest binary unit whose rounded figure stays
    under 1024 (1,992,294 is "1.9 MiB"; 1,048,575 is "1.0 MiB", not "1024.0 KiB"), up to TiB."""
    if n is None:
        return "—"
    if abs(n) < 1024:
        return f"{n:.0f} B"
    value = n / 1024  # one division per unit from the exact count: no truncation on the way
    for unit in ("KiB", "MiB", "GiB"):
        text = f"{value:.1f}"
        if abs(float(text)) < 1024:
            return f"{text} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def printable(value: Any) -> Any:
    """Jinja's `finalize`: a string that UTF-8 cannot encode gets its lone surrogates as `\\udcff`
    escapes; anything else is unchanged. Costs one UTF-8 encode per printed string."""
    if (
        value is None
        or isinstance(value, int | float)
        or (hasattr(value, "__html__") and not isinstance(value, str))
    ):
        return value
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        fixed = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return Markup(fixed) if isinstance(value, Markup) else fixed
    return value


#: The top navigation's entries, by the first path segment of the pages each covers.
NAV_SECTIONS = {
    "": "queues",
    "queues": "queues",
    "jobs": "queues",
    "workers": "workers",
    "failures": "failures",
    "tasks": "tasks",
    "audit": "audit",
}


def nav_section(path: str) -> str | None:
    """The top-nav entry a page belongs to, marked as current: a queue's or a job's page is under
    Queues, a task's under Tasks; None for pages under none (search)."""
    return NAV_SECTIONS.get(path.strip("/").split("/", 1)[0])


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(asset_dir("templates")))
    env = templates.env
    env.globals.update(
        static=static,
        kinds=backends.KINDS,
        estimates=backends.ESTIMATES,
        failed_count=backends.failed_count,
        nav_section=nav_section,
        state_styles=STATE_STYLES,
        state_class=state_class,
        state_label=state_label,
        action_label=action_label,
        **BUILDERS,
    )
    env.filters.update(
        ago=ago, duration=duration, when=when, compact=compact, pretty=pretty, bytes=bytes_, segment=segment
    )
    env.filters.update(plural=plural, noun=noun, sentence=sentence)  # words (dashboard/words.py)
    # Set before any template compiles (finalize is compiled into each template's output calls).
    env.finalize = printable
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates
