"""Callboard: a monitoring dashboard for Dramatiq and Arq task queues.

Every installed module lives under this one name (`callboard.dashboard`, `callboard.collectors`,
`callboard.demo`), so installing Callboard into an application never shadows the application's own
`dashboard` or `demo` package. In a checkout the subpackages are symlinks to the top-level folders;
the wheel copies those folders here (pyproject.toml). `templates/` and `static/` sit beside them the
same way, so `ROOT` finds them from a checkout and from an install alike.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
