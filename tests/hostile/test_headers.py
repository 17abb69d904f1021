"""Every answer of a real `callboard serve` carries the security headers (clickjacking, sniffing,
referrers), its errors and the guards' own denials included; and the templates hold nothing the
Content-Security-Policy would block (inline scripts, handlers, styles, htmx filters that need eval).

Chromium's view of the same policy (no violation on any page, live parts still live, framing refused)
is tests/browser/test_csp.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callboard.dashboard.access import hash_password
from callboard.dashboard.app import create_app
from callboard.dashboard.settings import Settings
from tests.conftest import flushed
from tests.servers import REPO, Callboard, RedisServer

pytestmark = pytest.mark.integration

EXPECTED = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def assert_secured(response: httpx.Response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get_list(name) == [value], (response.request.url, response.status_code, name)


@pytest.fixture(scope="module")
def board(one_redis: RedisServer) -> Iterator[Callboard]:
    board = Callboard([f"main={flushed(one_redis)}"]).start(poll_interval=0.2)
    yield board
    board.stop()


def test_every_kind_of_answer_carries_the_headers(board: Callboard) -> None:
    with httpx.Client(base_url=board.url, timeout=10) as http:
        answers = {
            200: [
                http.get("/"),
                http.get("/workers"),
                http.get("/failures"),
                http.get("/audit"),
                http.get("/search", params={"q": "x"}),
                http.get("/fragments/overview"),
                http.get("/api/v1/queues"),
                http.get("/api/v1/openapi.json"),
                http.get("/metrics"),
                http.get("/healthz"),
                http.get("/static/app.js"),
                http.get("/static/vendor/htmx.min.js"),
            ],
            404: [http.get("/no/such/page"), http.get("/static/nothing.js"), http.get("/api/v1/nothing")],
            405: [http.post("/workers")],
            400: [http.get("/", headers={"Host": "rebind.example"})],
            403: [
                http.post("/api/v1/queues/main/dramatiq/q/delete", headers={"Sec-Fetch-Site": "cross-site"})
            ],
        }
        for status, responses in answers.items():
            for response in responses:
                assert response.status_code == status, (response.request.url, response.text[:200])
                assert_secured(response)


def test_auth_denials_carry_the_headers(one_redis: RedisServer, tmp_path: Path) -> None:
    config = tmp_path / "callboard.toml"
    config.write_text(f'[auth]\nusers = {{ alice = "{hash_password("correct horse battery")}" }}\n')
    board = Callboard([f"main={flushed(one_redis)}"], ["--config", str(config)]).start(poll_interval=0.2)
    try:
        with httpx.Client(base_url=board.url, timeout=10) as http:
            unauthenticated = http.get("/")
            assert unauthenticated.status_code == 401
            assert_secured(unauthenticated)
            wrong = [http.get("/", headers={"Authorization": f"Bearer guess-{i}"}) for i in range(15)]
            assert {r.status_code for r in wrong} == {401, 429}
            for response in wrong:
                assert_secured(response)
    finally:
        board.stop()


# Attributes and elements the policy blocks: inline handlers (onclick=...), style attributes and
# elements, inline scripts, javascript: URLs, and htmx features that eval (trigger filters [...],
# hx-on, hx-vars, js: values).
BLOCKED = {
    "inline event handler": re.compile(r"\son[a-z]+\s*=", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "style element": re.compile(r"<style", re.I),
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "htmx trigger filter (eval)": re.compile(r"hx-trigger=\"[^\"]*\["),
    "hx-on (eval)": re.compile(r"hx-on", re.I),
    "hx-vars (eval)": re.compile(r"hx-vars", re.I),
    "js: values (eval)": re.compile(r"hx-vals='\s*(js|javascript):", re.I),
}


def without_comments(text: str) -> str:
    """The template without its {# comments #} and its {% set %} statements (a variable named `one`
    is no `on...=` handler), kept line for line, so line numbers hold."""
    text = re.sub(r"\{#.*?#\}", lambda m: "\n" * m.group().count("\n"), text, flags=re.S)
    return re.sub(r"\{%-?\s*set\s.*?%\}", lambda m: "\n" * m.group().count("\n"), text, flags=re.S)


def test_templates_hold_nothing_the_policy_blocks() -> None:
    found = [
        f"{path.relative_to(REPO)}:{n}: {what}: {line.strip()[:120]}"
        for path in sorted((REPO / "templates").rglob("*.html"))
        for n, line in enumerate(without_comments(path.read_text()).splitlines(), 1)
        for what, pattern in BLOCKED.items()
        if pattern.search(line)
    ]
    assert found == []
    base = (REPO / "templates/base.html").read_text()
    assert '"allowEval": false' in base and '"includeIndicatorStyles": false' in base


async def test_an_unexpected_error_carries_the_headers_too() -> None:
    """Starlette answers an uncaught exception from outside every user middleware: the headers wrap even
    that (a route that raises is added to the real app; no lifespan, so no Redis is needed)."""

    async def boom(request: Request) -> Response:
        raise RuntimeError("unexpected")

    app = create_app(Settings())
    app.router.routes.append(Route("/boom", boom))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert_secured(response)
