"""Run the dashboard under uvicorn: what `callboard serve` and `callboard demo` both end with.

Its own module so that the command line and the demo runner both import it and neither imports the
other.
"""

from __future__ import annotations

import logging

import uvicorn

from callboard.dashboard.app import create_app
from callboard.dashboard.settings import Settings


def serve(settings: Settings) -> int:
    app = create_app(settings)
    targets = ", ".join(f"{t.name}={t.safe_url}" for t in settings.targets)
    logging.getLogger("callboard").info(
        "watching %s; dashboard on http://%s:%d/", targets, settings.host, settings.port
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0
