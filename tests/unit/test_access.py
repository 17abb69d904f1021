"""The access guard (dashboard/access.py), driven as the ASGI middleware it is, in front of a real app.

Each request goes through `AccessGuard.__call__` exactly as uvicorn sends it; the app behind it only
answers 200 and keeps the scope it was given, so a test sees both what the guard answered and who it
let through as whom. The throttle's clock is the only thing replaced (a hand-turned one: no test
waits). tests/integration/test_access.py checks the same rules against a real `callboard serve`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from callboard.dashboard.access import (
    AccessGuard,
    AuthConfig,
    hash_password,
    hash_token,
    is_loopback,
    new_token,
    valid_hash,
    verify_password,
)
from callboard.dashboard.hosts import AllowedHosts
from callboard.dashboard.throttle import FailureThrottle

HOST = "127.0.0.1:8000"
LOCAL = ("127.0.0.1", 50000)
#: A client that is not on loopback (TEST-NET-3).
REMOTE = ("203.0.113.7", 50000)
PASSWORD = "correct horse"
#: One scrypt hash for the module (~50 ms each).
ANN = hash_password(PASSWORD, salt=b"0123456789abcdef")
TOKEN = "t0ken-for-the-scraper"
AUTH = AuthConfig(users={"ann": ANN}, tokens={"scraper": hash_token(TOKEN)})
NO_AUTH = AuthConfig()


@dataclass
class App:
    """The app behind the guard: answers 200 "ok" and keeps every scope it is given."""

    seen: list[Scope] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def call(
    guard: AccessGuard,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    client: tuple[str, int] | None = LOCAL,
    scheme: str = "http",
    host: str | None = HOST,
) -> Answer:
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if host is not None:
        pairs.insert(0, ("host", host))
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": scheme,
        "headers": [(k.lower().encode(), v.encode()) for k, v in pairs],
        "client": client,
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    start, body = sent
    return Answer(
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        body["body"],
    )


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def guarded(
    auth: AuthConfig = NO_AUTH, read_only: bool = False, hosts: AllowedHosts | None = None
) -> tuple[AccessGuard, App]:
    app = App()
    return AccessGuard(app, auth, read_only, hosts), app


# -- hosts -------------------------------------------------------------------------------------------


async def test_a_foreign_host_is_refused_before_anything_else_but_healthz_passes() -> None:
    guard, app = guarded(AUTH)
    answer = await call(guard, "POST", "/api/v1/queues", host="rebind.example:8000")
    assert answer.status == 400
    assert answer.json() == {
        "error": "Host not allowed ('rebind.example:8000'): add it with --allowed-host / allowed_hosts."
    }
    assert (await call(guard, path="/healthz", host="10.1.2.3:8000", client=REMOTE)).status == 200
    assert [s["path"] for s in app.seen] == ["/healthz"]


async def test_two_host_headers_or_none_from_afar_are_refused() -> None:
    guard, app = guarded()
    twice = await call(guard, headers=[("host", "localhost")], host=HOST)
    assert twice.status == 400 and b"('127.0.0.1:8000', 'localhost')" in twice.body
    nothing = await call(guard, host=None, client=REMOTE)
    assert (nothing.status, nothing.body) == (
        400,
        b"Host not allowed (none): add it with --allowed-host / allowed_hosts.\n",
    )
    long = await call(guard, host="h" * 300)
    assert long.status == 400 and repr("h" * 100).encode() in long.body and b"h" * 101 not in long.body
    assert (await call(guard, host=None, client=None)).status == 400
    assert (await call(guard, host=None)).body == b"ok"  # HTTP/1.0 from a script on this machine
    assert (await call(guard, host="not a host")).status == 400
    assert len(app.seen) == 1


async def test_non_http_scopes_pass_untouched() -> None:
    guard, app = guarded(AUTH, read_only=True)

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        raise AssertionError(message)

    await guard({"type": "lifespan"}, receive, send)
    assert app.seen == [{"type": "lifespan"}]


# -- authentication ------------------------------------------------------------------------------------


async def test_without_auth_everyone_is_anonymous() -> None:
    guard, app = guarded()
    assert (await call(guard, client=REMOTE)).status == 200
    assert app.seen[0]["state"]["user"] == "anonymous"


async def test_basic_and_bearer_credentials_name_the_user() -> None:
    guard, app = guarded(AUTH)
    assert (await call(guard, headers=basic("ann", PASSWORD))).status == 200
    assert (
        await call(guard, headers={"Authorization": "BASIC " + basic("ann", PASSWORD)["Authorization"][6:]})
    ).status == 200
    assert (await call(guard, headers=bearer(TOKEN))).status == 200
    assert (await call(guard, headers={"Authorization": f"bearer  {TOKEN} "})).status == 200
    assert [s["state"]["user"] for s in app.seen] == ["ann", "ann", "token:scraper", "token:scraper"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("ann", "wrong"),
        basic("bob", PASSWORD),
        {"Authorization": "Basic " + base64.b64encode(b"ann").decode()},  # no colon
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff:x").decode()},  # not UTF-8
        {"Authorization": "Basic"},
        bearer("wrong"),
        {"Authorization": "Bearer"},
        {"Authorization": f"Token {TOKEN}"},
    ],
)
async def test_anything_else_is_asked_for_credentials(headers: dict[str, str]) -> None:
    guard, app = guarded(AUTH)
    answer = await call(guard, headers=headers)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="Callboard", charset="UTF-8"'
    assert answer.body == b"Authentication required.\n"
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["content-length"] == str(len(answer.body))
    assert app.seen == []


async def test_metrics_public_opens_metrics_only() -> None:
    guard, app = guarded(AuthConfig(users={"ann": ANN}, metrics_public=True))
    assert (await call(guard, path="/metrics", client=REMOTE)).status == 200
    assert (await call(guard, path="/metrics/x", client=REMOTE)).status == 401
    assert (await call(guard, path="/", client=REMOTE)).status == 401
    closed, _ = guarded(AUTH)
    assert (await call(closed, path="/metrics")).status == 401
    assert "state" not in app.seen[0]  # nobody signed in: no user to record


async def test_wrong_tokens_are_throttled_per_client_and_a_right_one_never_is() -> None:
    guard, _ = guarded(AUTH)
    clock = Clock()
    guard._clients = FailureThrottle(burst=2, per_second=0.5, clock=clock)
    for _ in range(2):
        assert (await call(guard, headers=bearer("guess"), client=REMOTE)).status == 401
    throttled = await call(guard, path="/api/v1/queues", headers=bearer("guess"), client=REMOTE)
    assert throttled.status == 429
    assert throttled.headers["retry-after"] == "2"
    assert throttled.json() == {
        "error": "Too many failed sign-ins from this address or for this user: try again in 2 s."
    }
    assert (await call(guard, headers=bearer(TOKEN), client=REMOTE)).status == 200
    # Other addresses have their own bucket; an IPv6 client is counted by its /64.
    assert (await call(guard, headers=bearer("guess"), client=("203.0.113.8", 1))).status == 401
    v6 = guarded(AUTH)[0]
    v6._clients = FailureThrottle(burst=1, per_second=0.5, clock=clock)
    assert (await call(v6, headers=bearer("guess"), client=("2001:db8:0:1::1", 1))).status == 401
    assert (await call(v6, headers=bearer("guess"), client=("2001:db8:0:1::ffff", 1))).status == 429
    assert (await call(v6, headers=bearer("guess"), client=("2001:db8:0:2::1", 1))).status == 401
    assert (await call(v6, headers=bearer("guess"), client=("not-an-address", 1))).status == 401
    assert (await call(v6, headers=bearer("guess"), client=("not-an-address", 2))).status == 429
    assert (await call(v6, headers=bearer("guess"), client=None)).status == 401  # counted as "unknown"
    assert (await call(v6, headers=bearer("guess"), client=None)).status == 429
    clock.now += 2
    assert (await call(guard, headers=bearer("guess"), client=REMOTE)).status == 401


async def test_wrong_passwords_are_throttled_per_user_but_do_not_lock_out_a_signed_in_browser() -> None:
    guard, app = guarded(AUTH)
    clock = Clock()
    guard._users = FailureThrottle(burst=2, per_second=1.0, clock=clock)
    assert (await call(guard, headers=basic("ann", PASSWORD), client=REMOTE)).status == 200
    for address in ("203.0.113.1", "203.0.113.2"):  # other addresses: only the user's bucket empties
        assert (await call(guard, headers=basic("ann", "guess"), client=(address, 1))).status == 401
    attacker = await call(guard, headers=basic("ann", "guess"), client=("203.0.113.3", 1))
    assert (attacker.status, attacker.headers["retry-after"]) == (429, "1")
    # The browser that signed in resends verified credentials: neither scrypt nor the throttle.
    assert (await call(guard, headers=basic("ann", PASSWORD), client=REMOTE)).status == 200
    # Right credentials not yet verified are throttled like any attempt...
    fresh, _ = guarded(AUTH)
    fresh._users = FailureThrottle(burst=1, per_second=1.0, clock=clock)
    assert (await call(fresh, headers=basic("ann", "guess"))).status == 401
    assert (await call(fresh, headers=basic("ann", PASSWORD))).status == 429
    # ... and a success gives its token back.
    clock.now += 1
    assert (await call(fresh, headers=basic("ann", PASSWORD))).status == 200
    assert (await call(fresh, headers=basic("ann", "guess"))).status == 401
    assert [s["state"]["user"] for s in app.seen] == ["ann", "ann"]


async def test_the_guards_own_buckets_allow_ten_failures_per_user_then_refuse() -> None:
    guard, _ = guarded(AUTH)
    clock = Clock()
    guard._users._clock = guard._clients._clock = clock  # the real buckets, on a clock that stands still
    for i in range(10):  # from ten addresses: only the user's bucket empties
        assert (await call(guard, headers=basic("ann", "guess"), client=(f"203.0.113.{i}", 1))).status == 401
    refused = await call(guard, headers=basic("ann", "guess"), client=("203.0.113.99", 1))
    assert (refused.status, refused.headers["retry-after"]) == (429, "1")


async def test_verified_credentials_are_remembered_up_to_256() -> None:
    guard, _ = guarded(AUTH)
    for i in range(256):
        guard._verified[f"earlier-{i}".encode()] = "someone"
    assert (await call(guard, headers=basic("ann", PASSWORD))).status == 200
    assert len(guard._verified) == 256
    assert b"earlier-0" not in guard._verified and b"earlier-1" in guard._verified
    assert list(guard._verified.values())[-1] == "ann"  # the newest is kept, the oldest goes


async def test_unknown_users_and_malformed_headers_cost_a_client_token() -> None:
    guard, _ = guarded(AUTH)
    guard._clients = FailureThrottle(burst=2, per_second=1.0, clock=Clock())
    assert (await call(guard, headers=basic("bob", "x"))).status == 401
    assert (await call(guard, headers={"Authorization": "Basic !!!"})).status == 401
    assert (await call(guard, headers=basic("bob", "x"))).status == 429
    assert (await call(guard, headers={})).status == 401  # no credentials at all is no guess


async def test_credentials_in_a_scheme_callboard_does_not_take_are_no_guess() -> None:
    """`Negotiate ...` from a proxy, or an API key header, is refused without costing a token."""
    guard, _ = guarded(AUTH)
    guard._clients = FailureThrottle(burst=1, per_second=1.0, clock=Clock())
    for header in ("Apikey c2VjcmV0", "Token c2VjcmV0", "Negotiate YWJj", "Basic", "Bearer"):
        assert (await call(guard, headers={"Authorization": header})).status == 401, header
    assert (await call(guard, headers=bearer("guess"))).status == 401  # the first real guess
    assert (await call(guard, headers=bearer("guess"))).status == 429


# -- read-only mode and the cross-site guard ------------------------------------------------------------


async def test_read_only_refuses_changes_but_not_reads_or_stopping_a_search() -> None:
    guard, app = guarded(read_only=True)
    same = {"Sec-Fetch-Site": "same-origin"}
    refused = await call(guard, "POST", "/api/v1/queues/t/arq/q/delete", same)
    assert (refused.status, refused.json()) == (
        403,
        {"error": "Callboard runs read-only: controls are disabled."},
    )
    assert (await call(guard, "DELETE", "/queues/x", same)).status == 403
    assert (await call(guard, "POST", "/api/v1/searches/s1/stop/more", same)).status == 403
    assert (await call(guard, "POST", "/api/v1/searches/s1/stop", same)).status == 200
    for method in ("GET", "HEAD", "OPTIONS"):
        assert (await call(guard, method, "/queues/x", client=REMOTE)).status == 200
    # Stopping a search is still a POST: the cross-site guard applies.
    cross = await call(guard, "POST", "/api/v1/searches/s1/stop", {"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    assert len(app.seen) == 4


@pytest.mark.parametrize(
    ("headers", "client", "refusal"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, LOCAL, "Sec-Fetch-Site is 'cross-site'"),
        ({"Sec-Fetch-Site": "same-site"}, LOCAL, "Sec-Fetch-Site is 'same-site'"),
        # Sec-Fetch-Site decides when present, whatever the Origin says.
        ({"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:8000"}, LOCAL, "Sec-Fetch-Site"),
        ({"Origin": "http://127.0.0.1:8000.evil.example"}, LOCAL, "Origin 'http://127.0.0.1:8000.evil"),
        ({"Origin": "http://localhost:8000"}, LOCAL, "Origin 'http://localhost:8000' is not this site"),
        ({"Origin": "null"}, LOCAL, "Origin 'null' is not this site"),
        ({}, REMOTE, "no Sec-Fetch-Site or Origin header, not authenticated and not from loopback"),
        ({}, None, "no Sec-Fetch-Site or Origin header"),
    ],
)
async def test_cross_site_posts_are_refused_and_say_why(
    headers: dict[str, str], client: tuple[str, int] | None, refusal: str
) -> None:
    guard, app = guarded()
    answer = await call(guard, "POST", "/queues/x/purge", headers, client=client)
    assert answer.status == 403
    assert answer.body.startswith(f"Cross-site request refused: {refusal}".encode()), answer.body
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert app.seen == []


@pytest.mark.parametrize(
    ("headers", "client", "scheme"),
    [
        ({"Sec-Fetch-Site": "same-origin"}, REMOTE, "http"),
        ({"Sec-Fetch-Site": "none"}, REMOTE, "http"),  # typed in the address bar
        ({"Origin": "http://127.0.0.1:8000"}, REMOTE, "http"),
        ({"Origin": "https://ops.example.com"}, REMOTE, "http"),  # trusted
        ({}, LOCAL, "http"),  # curl on this machine
        ({}, ("::1", 1), "http"),
    ],
)
async def test_same_site_posts_pass(headers: dict[str, str], client: tuple[str, int], scheme: str) -> None:
    guard, app = guarded(AuthConfig(trusted_origins=("https://ops.example.com",)))
    assert (await call(guard, "POST", "/queues/x/purge", headers, client=client, scheme=scheme)).body == b"ok"
    assert app.seen[0]["state"]["user"] == "anonymous"


async def test_an_origin_must_match_scheme_host_and_port_of_an_allowed_host() -> None:
    hosts = AllowedHosts.for_server(("ops.example.com",), "0.0.0.0")
    guard, _ = guarded(hosts=hosts)

    async def post(origin: str, host: str, scheme: str = "https") -> int:
        answer = await call(guard, "POST", "/x", {"Origin": origin}, client=REMOTE, scheme=scheme, host=host)
        return answer.status

    assert await post("https://ops.example.com", "ops.example.com") == 200  # default port both sides
    assert await post("https://ops.example.com:443", "ops.example.com") == 200
    assert await post("http://ops.example.com", "ops.example.com", scheme="http") == 200
    assert await post("http://ops.example.com", "ops.example.com") == 403  # not this scheme
    assert await post("https://ops.example.com:8443", "ops.example.com") == 403
    assert await post("https://ops.example.com", "ops.example.com:8443") == 403


async def test_an_authenticated_script_may_post_without_browser_headers() -> None:
    guard, app = guarded(AUTH)
    answer = await call(guard, "POST", "/api/v1/queues/t/arq/q/delete", bearer(TOKEN), client=REMOTE)
    assert answer.status == 200 and app.seen[0]["state"]["user"] == "token:scraper"


async def test_denials_answer_json_to_the_api_and_to_clients_that_ask_for_it() -> None:
    guard, _ = guarded(read_only=True)
    same = {"Sec-Fetch-Site": "same-origin"}
    page = await call(guard, "POST", "/queues/x/purge", same)
    assert page.body == b"Callboard runs read-only: controls are disabled.\n"
    asked = await call(guard, "POST", "/queues/x/purge", {**same, "Accept": "text/html, application/json"})
    assert asked.headers["content-type"] == "application/json"
    api = await call(guard, "POST", "/api/v1/queues/t/arq/q/delete", same)
    assert api.headers["content-type"] == "application/json"
    assert api.headers["content-length"] == str(len(api.body))
    assert "www-authenticate" not in api.headers


# -- the helpers ---------------------------------------------------------------------------------------


def test_is_loopback() -> None:
    for host in ("localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"):
        assert is_loopback(host), host
    others: list[str | None] = [None, "", "10.0.0.1", "::", "example.com", "localhost.example"]
    for other in others:
        assert not is_loopback(other), other


def test_passwords_hash_with_scrypt_and_verify() -> None:
    assert ANN.startswith("scrypt$32768$8$1$" + base64.b64encode(b"0123456789abcdef").decode() + "$")
    assert verify_password(PASSWORD, ANN)
    assert not verify_password(PASSWORD + " ", ANN)
    scheme, *rest = ANN.split("$")
    for other in ("bcrypt", "zscrypt"):  # sorted before and after "scrypt"
        assert not verify_password(PASSWORD, "$".join([other, *rest]))
    for broken in ("scrypt$1$2", ANN + "$x", ANN.replace("$8$", "$eight$"), ANN[:-2] + "!!"):
        assert not verify_password(PASSWORD, broken), broken
    fresh = hash_password(PASSWORD)
    assert fresh != hash_password(PASSWORD)  # a fresh salt each time: 16 random bytes
    assert len(base64.b64decode(fresh.split("$")[4])) == 16 and verify_password(PASSWORD, fresh)


def test_tokens_are_256_random_bits() -> None:
    token = new_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32 and token != new_token()
    assert valid_hash(hash_token(token))


def test_valid_hash() -> None:
    assert valid_hash(ANN) and valid_hash(hash_token(TOKEN))
    others = ("scrypt$1$2$3$4", ANN + "$x", "sha256$a$b", "sha256", PASSWORD)
    for encoded in (*others, "md5$abc", "zzz$abc", "md5$1$2$3$4$5", "zzz$1$2$3$4$5"):
        assert not valid_hash(encoded), encoded
