"""Who may change jobs through a real `callboard serve`: read-only mode, the cross-site guard, auth,
the refusal to serve a public address without auth, and the audit trail of what ran.

Dead letters are written in Dramatiq's exact layout (bench.seed). Every refused request is checked
against Redis itself (the dead letters' ids and payload count), not against what Callboard reports.
A client that is not on loopback is simulated the way a reverse proxy on the same host presents one:
uvicorn trusts `X-Forwarded-For` from 127.0.0.1 only, and then reports the forwarded address.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from bench.seed import Layout, QueueSeed, seed
from callboard.dashboard.access import hash_password, hash_token, new_token
from tests.servers import REPO, Callboard, child_env, free_port, wait_until

pytestmark = pytest.mark.integration

TARGET = "main"
NAMESPACE = "dramatiq"
QUEUE = "default"
KEY = f"{NAMESPACE}:{QUEUE}"
QUEUE_API = f"/api/v1/queues/{TARGET}/dramatiq/{quote(KEY, safe='')}"
DEAD_PAGE = f"/queues/{TARGET}/dramatiq/{quote(KEY, safe='')}?state=dead"
#: A client address that is not loopback (TEST-NET-3), as a proxy on this host forwards it.
REMOTE = {"X-Forwarded-For": "203.0.113.7"}
PASSWORD = "correct horse battery staple"
PROXY_ORIGIN = "https://ops.example.com"
DeadLetters = tuple[set[str], int]


def job_api(rid: str, action: str) -> str:
    return f"/api/v1/jobs/{TARGET}/dramatiq/{quote(KEY, safe='')}/{rid}/{action}"


def seed_dead(url: str, client: redis.Redis, n: int) -> list[str]:
    """`n` dead letters in `dramatiq:default`, as Dramatiq leaves them; their redis message ids."""

    async def write() -> None:
        writer = AsyncRedis.from_url(url)
        try:
            await seed(writer, Layout(NAMESPACE, (QueueSeed(QUEUE, ready=0, dead=n),)))
        finally:
            await writer.aclose()

    asyncio.run(write())
    return sorted(dead_letters(client)[0])


def dead_letters(client: redis.Redis) -> DeadLetters:
    """What Redis holds as dead: the ids in the XQ sorted set, and the number of stored payloads."""
    ids = {rid.decode() for rid in cast(list[bytes], client.zrange(f"{KEY}.XQ", 0, -1))}
    return ids, int(cast(int, client.hlen(f"{KEY}.XQ.msgs")))


@contextmanager
def serving(url: str, *extra: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """`callboard serve` with `extra` flags on `url` (as target TARGET), and a client for it that sends
    no browser headers. Start it after seeding, so discovery's first pass finds the queue; the client
    waits until the board shows the dead letters (with `headers` when auth is on)."""
    board = Callboard([f"{TARGET}={url}"], list(extra)).start(poll_interval=0.2)
    try:
        with httpx.Client(base_url=board.url, timeout=10) as http:
            wait_until(
                lambda: any(
                    q["target"] == TARGET and q["name"] == QUEUE and q["counts"].get("dead")
                    for q in http.get("/api/v1/queues", headers=headers).json()["queues"]
                ),
                timeout=15,
                what=f"the dead letters of {KEY} on the board",
            )
            yield http
    finally:
        board.stop()


def audit(http: httpx.Client, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = http.get("/api/v1/audit", headers=headers)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def summary(entry: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("user", "client", "action", "framework", "queue", "state", "scope", "done", "skipped", "changed")
    return tuple(entry[k] for k in keys)


def test_read_only_refuses_every_control_and_shows_none(redis_url: str, control: redis.Redis) -> None:
    """--read-only: every POST shape (JSON selection, JSON purge, one job, the htmx form) is 403 and Redis
    keeps every dead letter; the dead tab lists the jobs but renders no control and no checkbox."""
    rids = seed_dead(redis_url, control, 3)
    before = dead_letters(control)
    with serving(redis_url, "--read-only") as http:
        own = str(http.base_url).rstrip("/")
        attempts = [
            http.post(f"{QUEUE_API}/retry", json={"state": "dead", "ids": rids[:2]}),
            http.post(f"{QUEUE_API}/delete", json={"state": "dead"}),
            http.post(job_api(rids[0], "delete")),
            http.post(
                f"{QUEUE_API}/delete",
                data={"state": "dead", "scope": "all"},
                headers={"HX-Request": "true", "Sec-Fetch-Site": "same-origin", "Origin": own},
            ),
        ]
        for response in attempts:
            assert response.status_code == 403, (response.request.url, response.text)
            assert "read-only" in response.json()["error"]

        page = http.get(DEAD_PAGE)
        assert page.status_code == 200
        for rid in rids:
            assert f'data-job="{rid}"' in page.text
        assert "data-action" not in page.text
        assert 'name="ids"' not in page.text
        assert audit(http) == []
    assert dead_letters(control) == before


def test_cross_site_posts_are_refused_and_same_site_ones_run(redis_url: str, control: redis.Redis) -> None:
    """Another site cannot drive the controls (by Sec-Fetch-Site, else by Origin, else by being off
    loopback without credentials); the board's own pages, its origin and a script on this host can.
    Only what ran is audited."""
    rids = seed_dead(redis_url, control, 4)
    before = dead_letters(control)
    with serving(redis_url) as http:
        own = str(http.base_url).rstrip("/")
        page = http.get(DEAD_PAGE).text  # controls are on here, so their absence in read-only means something
        assert 'data-action="retry"' in page
        assert 'data-action="delete"' in page

        selection = {"state": "dead", "ids": rids[:1]}
        refused = [
            http.post(f"{QUEUE_API}/retry", json=selection, headers={"Sec-Fetch-Site": "cross-site"}),
            # A sibling subdomain is the same site but another origin: still refused.
            http.post(f"{QUEUE_API}/retry", json=selection, headers={"Sec-Fetch-Site": "same-site"}),
            # The classic CSRF: another site's form posting to the board (older browsers send only Origin).
            http.post(
                f"{QUEUE_API}/delete",
                data={"state": "dead", "scope": "all"},
                headers={"Origin": "http://evil.example"},
            ),
            http.post(f"{QUEUE_API}/delete", json=selection, headers={"Origin": "null"}),
            # When Sec-Fetch-Site is sent it decides; Origin is only the fallback.
            http.post(
                f"{QUEUE_API}/delete", json=selection, headers={"Sec-Fetch-Site": "cross-site", "Origin": own}
            ),
            # Neither header, not authenticated, not from loopback.
            http.post(job_api(rids[0], "delete"), headers=REMOTE),
        ]
        for response in refused:
            assert response.status_code == 403, (response.request.headers, response.text)
            assert response.json()["error"].startswith("Cross-site request refused")
        assert dead_letters(control) == before

        same_origin = http.post(
            f"{QUEUE_API}/retry", json={"state": "dead", "ids": [rids[0]]}, headers={"Origin": own}
        )
        from_page = http.post(
            f"{QUEUE_API}/delete",
            data={"state": "dead", "scope": "selection", "ids": [rids[1]]},
            headers={"Sec-Fetch-Site": "same-origin", "Origin": own, "HX-Request": "true"},
        )
        from_script = http.post(job_api(rids[2], "delete"))
        assert (same_origin.status_code, same_origin.json()["done"]) == (200, 1), same_origin.text
        assert from_page.status_code == 200, from_page.text
        assert '<span data-count="done">1 done</span>' in from_page.text
        assert json.loads(from_page.headers["HX-Trigger"]) == {"callboard:changed": {"target": "body"}}
        assert (from_script.status_code, from_script.json()["done"]) == (200, 1), from_script.text

        assert dead_letters(control) == ({rids[3]}, 1)
        (requeued,) = cast(list[bytes], control.lrange(KEY, 0, -1))  # ready again, with its payload
        assert control.hexists(f"{KEY}.msgs", requeued.decode())

        entries = audit(http)
    assert [summary(e) for e in entries] == [
        ("anonymous", "127.0.0.1", "delete", "dramatiq", KEY, "dead", "selection", 1, 0, 0),
        ("anonymous", "127.0.0.1", "delete", "dramatiq", KEY, "dead", "selection", 1, 0, 0),
        ("anonymous", "127.0.0.1", "retry", "dramatiq", KEY, "dead", "selection", 1, 0, 0),
    ]
    assert [e["ids"] for e in entries] == [[rids[2]], [rids[1]], [rids[0]]]
    assert all(e["status"] == "finished" and e["requested"] == 1 for e in entries)


def test_purge_runs_once_and_is_audited_with_its_counts(redis_url: str, control: redis.Redis) -> None:
    """A purge (no ids) empties the dead set and says how many it took; a second one finds nothing; both
    are in the audit with their own counts."""
    seed_dead(redis_url, control, 5)
    with serving(redis_url) as http:
        first = http.post(f"{QUEUE_API}/delete", json={"state": "dead"})
        assert first.status_code == 200, first.text
        assert (first.json()["scope"], first.json()["expected"], first.json()["done"]) == ("all", 5, 5)
        assert dead_letters(control) == (set(), 0)
        second = http.post(f"{QUEUE_API}/delete", json={"state": "dead"})
        assert (second.status_code, second.json()["done"]) == (200, 0), second.text
        entries = audit(http)
    assert [(e["action"], e["scope"], e["expected"], e["done"], e["ids"]) for e in entries] == [
        ("delete", "all", 0, 0, None),
        ("delete", "all", 5, 5, None),
    ]


def auth_config(path: Path, token: str, metrics_public: bool = False) -> Path:
    path.write_text(
        "[auth]\n"
        f'users = {{ alice = "{hash_password(PASSWORD)}" }}\n'
        f'tokens = {{ ci = "{hash_token(token)}" }}\n'
        f"metrics_public = {'true' if metrics_public else 'false'}\n"
        f'trusted_origins = ["{PROXY_ORIGIN}"]\n'
    )
    return path


def test_auth_guards_everything_but_healthz_and_names_the_user_in_the_audit(
    redis_url: str, control: redis.Redis, tmp_path: Path
) -> None:
    """With [auth], pages, the API and /metrics need a user's basic credentials or a bearer token;
    /healthz does not. An authenticated script may POST without browser headers, even off loopback,
    and a trusted origin may POST; auth never lifts the cross-site guard. The audit names the user or
    `token:<name>`. With auth configured, binding a non-loopback address is allowed."""
    token = new_token()
    config = auth_config(tmp_path / "callboard.toml", token)
    rids = seed_dead(redis_url, control, 4)
    alice = httpx.BasicAuth("alice", PASSWORD)
    bearer = {"Authorization": f"Bearer {token}"}
    with serving(redis_url, "--config", str(config), "--host", "0.0.0.0", headers=bearer) as http:
        anonymous = http.get("/")
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="Callboard"')
        assert http.get("/api/v1/queues").json() == {"error": "Authentication required."}
        assert http.get("/", auth=httpx.BasicAuth("alice", PASSWORD + "!")).status_code == 401
        assert http.get("/", auth=httpx.BasicAuth("mallory", PASSWORD)).status_code == 401
        assert http.get("/", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        assert http.get("/", auth=alice).status_code == 200
        assert http.get("/api/v1/queues", headers=bearer).status_code == 200
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 401
        metrics = http.get("/metrics", headers=bearer)
        assert metrics.status_code == 200
        assert "callboard_up" in metrics.text

        before = dead_letters(control)
        purge = {"state": "dead"}
        refused = [
            (401, http.post(f"{QUEUE_API}/delete", json=purge)),
            (401, http.post(f"{QUEUE_API}/delete", json=purge, auth=httpx.BasicAuth("alice", "x"))),
            (
                403,
                http.post(
                    f"{QUEUE_API}/delete", json=purge, auth=alice, headers={"Sec-Fetch-Site": "cross-site"}
                ),
            ),
            (
                403,
                http.post(
                    f"{QUEUE_API}/delete", json=purge, headers={**bearer, "Origin": "http://evil.example"}
                ),
            ),
        ]
        for status, response in refused:
            assert response.status_code == status, response.text
        assert dead_letters(control) == before

        by_alice = http.post(
            f"{QUEUE_API}/retry", json={"state": "dead", "ids": rids[:2]}, auth=alice, headers=REMOTE
        )
        by_token = http.post(job_api(rids[2], "delete"), headers=bearer)
        via_proxy = http.post(
            job_api(rids[3], "delete"), auth=alice, headers={**REMOTE, "Origin": PROXY_ORIGIN}
        )
        assert (by_alice.status_code, by_alice.json()["done"]) == (200, 2), by_alice.text
        assert by_alice.json()["user"] == "alice"
        assert (by_token.status_code, by_token.json()["done"]) == (200, 1), by_token.text
        assert (via_proxy.status_code, via_proxy.json()["done"]) == (200, 1), via_proxy.text
        assert dead_letters(control) == (set(), 0)
        assert control.llen(KEY) == 2

        entries = audit(http, bearer)
        assert http.get("/audit").status_code == 401
        audit_page = http.get("/audit", auth=alice)
    assert [summary(e) for e in entries] == [
        ("alice", REMOTE["X-Forwarded-For"], "delete", "dramatiq", KEY, "dead", "selection", 1, 0, 0),
        ("token:ci", "127.0.0.1", "delete", "dramatiq", KEY, "dead", "selection", 1, 0, 0),
        ("alice", REMOTE["X-Forwarded-For"], "retry", "dramatiq", KEY, "dead", "selection", 2, 0, 0),
    ]
    assert audit_page.status_code == 200
    assert "token:ci" in audit_page.text
    # The audit names each control as its button did: a dead letter's retry is "Requeue".
    assert audit_page.text.count('<td data-field="action" data-action="retry">Requeue</td>') == 1
    assert audit_page.text.count('<td data-field="action" data-action="delete">Delete</td>') == 2


def test_metrics_public_opens_metrics_only(redis_url: str, tmp_path: Path) -> None:
    """metrics_public = true lets Prometheus scrape without credentials; pages and the API stay closed."""
    config = auth_config(tmp_path / "callboard.toml", new_token(), metrics_public=True)
    board = Callboard([f"{TARGET}={redis_url}"], ["--config", str(config)]).start(poll_interval=0.2)
    try:
        status, body = board.get("/metrics")
        assert status == 200
        assert "callboard_up" in body
        assert board.get("/")[0] == 401
        assert board.get("/api/v1/queues")[0] == 401
        assert board.get("/healthz")[0] == 200
    finally:
        board.stop()


def test_public_address_needs_auth_or_an_explicit_opt_out(redis_url: str) -> None:
    """`serve --host 0.0.0.0` without auth exits with status 2 and says why, before binding anything;
    with --allow-unauthenticated it serves."""
    port = free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "callboard", "serve", "--host", "0.0.0.0", "--port", str(port)]
        + ["--redis", f"{TARGET}={redis_url}"],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2, refused
    assert "refusing to serve 0.0.0.0 without authentication" in refused.stderr
    assert "--allow-unauthenticated" in refused.stderr
    assert "Traceback" not in refused.stderr

    board = Callboard([f"{TARGET}={redis_url}"], ["--host", "0.0.0.0", "--allow-unauthenticated"])
    board.start(poll_interval=0.2)
    try:
        assert board.get("/healthz") == (200, "ok\n")
    finally:
        board.stop()
