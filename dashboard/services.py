"""What request handlers use, made once by `create_app`: one typed object instead of app.state.X.

A handler asks `services(request)` and gets every shared part with its type, so a renamed or
missing part is a mypy error, not an AttributeError on a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from callboard.collectors.flow import Tally
from callboard.collectors.model import JobPage
from callboard.collectors.target import TargetCollector
from callboard.dashboard.operations import Operations
from callboard.dashboard.poller import Poller
from callboard.dashboard.rendercache import ReadCache, RenderCache
from callboard.dashboard.searches import Searches
from callboard.dashboard.settings import Settings
from callboard.dashboard.store import SnapshotStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    #: The latest snapshot of every target, and their history: what live pages read.
    store: SnapshotStore
    poller: Poller
    #: Per target: its backends (collectors/backend.py) and Redis client, for on-demand reads.
    collectors: Mapping[str, TargetCollector]
    templates: Jinja2Templates
    render_cache: RenderCache
    #: On-demand reads shared by every viewer for a while: a queue's stored depth (long chart
    #: ranges), and a task's hours (dashboard/taskreport.py).
    depth_history: ReadCache[list[tuple[float, dict[str, int]]]]
    flow_history: ReadCache[dict[int, Tally]]
    #: Pages of job lists, per (target, framework, queue, state, offset, limit), for a poll interval:
    #: what the live job lists poll (dashboard/reports.py list_jobs).
    job_lists: ReadCache[JobPage]
    #: The newest audit entries per target, for the page of a job that is gone (where did it go?).
    audit_reads: ReadCache[list[dict[str, Any]]]
    operations: Operations
    searches: Searches
    #: What /metrics exports.
    registry: CollectorRegistry


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services), "create_app() sets app.state.services"
    return found
