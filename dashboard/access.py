"""Who may do what: authentication, read-only mode and the cross-site guard, as one ASGI middleware.

Order of checks for every request:
1. `/healthz` passes untouched (probes send the pod's address as Host).
2. The Host must be one Callboard serves under (dashboard/hosts.py, against DNS rebinding); else 400.
3. `/metrics` passes when `metrics_public`.
4. With auth configured, a request needs HTTP basic credentials of a configured user (password
   stored as an scrypt hash) or a bearer token whose SHA-256 is configured; else 401, or 429 with
   `Retry-After` after too many failures from that address or for that user.
5. Unsafe methods (anything but GET, HEAD, OPTIONS): refused with 403 in read-only mode (except
   stopping a search, which changes no job); refused
   with 403 when they come from another site: `Sec-Fetch-Site` must be `same-origin` (or `none`,
   typed by the user); without it, `Origin` must be this request's own scheme://host:port on an
   allowed host (or a trusted origin); with neither (scripts, curl), the request must be
   authenticated or come from loopback.

The user name (or `token:<name>`, or `anonymous`) is put in `scope["state"]["user"]` for the audit log.
Basic auth verifies an scrypt hash (~50 ms of CPU and 32 MiB on purpose) in a worker thread, two at
most at a time, so guesses never stall the event loop. Browsers resend credentials on every poll, so
verified credentials are remembered by their SHA-256 (bounded) and skip both scrypt and the throttle:
someone guessing a user's password does not lock out that user's open browser. Each unverified
attempt first takes a token from its address's and its user's bucket (dashboard/throttle.py: 10, then
one a second); with none left it is refused at once, with no scrypt work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from callboard.dashboard.hosts import DEFAULT_PORTS, AllowedHosts, origin_parts, split_host
from callboard.dashboard.throttle import FailureThrottle

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: POSTs that change nothing in Redis, so read-only mode allows them (still behind auth and the
#: cross-site guard): stopping a search, which only ends Callboard's own reads.
READ_ONLY_POSTS = re.compile(r"/api/v1/searches/[^/]+/stop")
#: scrypt cost: N=2^15, r=8, p=1 takes ~50 ms and 32 MiB here; an attacker's guesses cost the same.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
#: scrypt runs in worker threads (it releases the GIL), never on the event loop; at most this many at
#: once, so guesses cost at most 2 cores and 64 MiB however many arrive.
SCRYPT_THREADS = 2
#: Failed sign-ins per client address and per user name: this many at once, then one per second.
FAILURE_BURST, FAILURE_REFILL_PER_SECOND = 10, 1.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    #: User name -> password hash (`scrypt$N$r$p$salt$hash`, base64), from `callboard hash-password`;
    #: plain passwords are refused.
    users: Mapping[str, str] = field(default_factory=dict)
    #: Token name -> the token's hash (`sha256$hex`), from `callboard new-token`; clients send the token
    #: as `Authorization: Bearer <token>`.
    tokens: Mapping[str, str] = field(default_factory=dict)
    #: Let `/metrics` answer without credentials, for a Prometheus that sends none (the figures are not
    #: secret to everyone).
    metrics_public: bool = False
    #: Origins besides this host allowed to POST (e.g. `https://ops.example.com` behind a proxy).
    trusted_origins: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_SCRYPT_MAXMEM
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so one fast hash is enough: nobody can guess the preimage.
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def valid_hash(encoded: str) -> bool:
    parts = encoded.split("$")
    return (parts[0] == "scrypt" and len(parts) == 6) or (parts[0] == "sha256" and len(parts) == 2)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Throttled:
    """Too many failed sign-ins: refused without checking, for `retry_after` seconds."""

    retry_after: int


class AccessGuard:
    def __init__(
        self, app: ASGIApp, auth: AuthConfig, read_only: bool, hosts: AllowedHosts | None = None
    ) -> None:
        self.app = app
        self.auth = auth
        self.read_only = read_only
        self.hosts = hosts or AllowedHosts.for_server((), "127.0.0.1")
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        self._clients = FailureThrottle(burst=FAILURE_BURST, per_second=FAILURE_REFILL_PER_SECOND)
        # Keyed by configured user names only (unknown names cost no scrypt), so bounded by the config.
        self._users = FailureThrottle(
            burst=FAILURE_BURST, per_second=FAILURE_REFILL_PER_SECOND, max_keys=len(auth.users) + 1
        )
        self._scrypt = anyio.CapacityLimiter(SCRYPT_THREADS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        # Orchestrator probes send the pod's address as Host: /healthz says nothing and changes nothing.
        if path == "/healthz":
            await self.app(scope, receive, send)
            return
        if not self._host_allowed(scope, headers):
            shown = ", ".join(repr(h[:100]) for h in headers.getlist("host")) or "none"
            message = f"Host not allowed ({shown}): add it with --allowed-host / allowed_hosts."
            await _deny(scope, send, 400, message)
            return
        if path == "/metrics" and self.auth.metrics_public:
            await self.app(scope, receive, send)
            return
        user = await self._user(scope, headers)
        if isinstance(user, Throttled):
            message = (
                "Too many failed sign-ins from this address or for this user: "
                f"try again in {user.retry_after} s."
            )
            extra = [(b"retry-after", str(user.retry_after).encode())]
            await _deny(scope, send, 429, message, extra=extra)
            return
        if self.auth.enabled and user is None:
            await _deny(scope, send, 401, "Authentication required.", basic=True)
            return
        if scope["method"] not in SAFE_METHODS:
            if self.read_only and not READ_ONLY_POSTS.fullmatch(path):
                await _deny(scope, send, 403, "Callboard runs read-only: controls are disabled.")
                return
            why = self._cross_site(scope, headers, authenticated=user is not None)
            if why:
                await _deny(scope, send, 403, f"Cross-site request refused: {why}.")
                return
        scope.setdefault("state", {})["user"] = user or "anonymous"
        await self.app(scope, receive, send)

    def _host_allowed(self, scope: Scope, headers: Headers) -> bool:
        values = headers.getlist("host")
        if not values:
            # HTTP/1.0 without Host: no browser sends that (so no rebinding page can), but nothing
            # vouches for the name either: a script on this machine may, anyone else sends a Host.
            client = scope.get("client")
            return bool(client and is_loopback(client[0]))
        parsed = split_host(values[0]) if len(values) == 1 else None
        return parsed is not None and self.hosts.allows(parsed[0])

    async def _user(self, scope: Scope, headers: Headers) -> str | Throttled | None:
        header = headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        client = _client_key(scope)
        if scheme.lower() == "bearer" and value:
            hashed = hash_token(value.strip())
            for name, expected in self.auth.tokens.items():
                if hmac.compare_digest(hashed, expected):
                    return f"token:{name}"
            # A valid token is never throttled (a hash is cheap, and a scraper behind the same address
            # as a noisy client keeps working); wrong ones are, so guessing is at least slow.
            return self._failed(client)
        if scheme.lower() != "basic" or not value:
            return None
        try:
            name, sep, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, binascii.Error):
            return self._failed(client)
        if not sep or name not in self.auth.users:
            return self._failed(client)
        encoded = self.auth.users[name]
        key = hashlib.sha256(f"{name}\0{password}\0{encoded}".encode()).digest()
        if key in self._verified:  # already verified: an attack on this user does not lock it out
            self._verified.move_to_end(key)
            return name
        wait = max(self._clients.wait(client), self._users.wait(name))
        if wait:
            return Throttled(wait)
        # Taken before the work, given back on success: concurrent guesses cannot outrun the bucket.
        self._clients.take(client)
        self._users.take(name)
        verified = await anyio.to_thread.run_sync(verify_password, password, encoded, limiter=self._scrypt)
        if not verified:
            return None
        self._clients.give_back(client)
        self._users.give_back(name)
        self._verified[key] = name
        while len(self._verified) > 256:
            self._verified.popitem(last=False)
        return name

    def _failed(self, client: str) -> Throttled | None:
        """A cheap failure (wrong token, unknown user, malformed header): counted per client."""
        wait = self._clients.wait(client)
        if wait:
            return Throttled(wait)
        self._clients.take(client)
        return None

    def _cross_site(self, scope: Scope, headers: Headers, authenticated: bool) -> str | None:
        site = headers.get("sec-fetch-site")
        if site is not None:
            return None if site in ("same-origin", "none") else f"Sec-Fetch-Site is {site!r}"
        origin = headers.get("origin")
        if origin is not None:
            if origin in self.auth.trusted_origins or self._own_origin(scope, headers, origin):
                return None
            return f"Origin {origin!r} is not this site"
        client = scope.get("client")
        if authenticated or (client and is_loopback(client[0])):
            return None
        return "no Sec-Fetch-Site or Origin header, not authenticated and not from loopback"

    def _own_origin(self, scope: Scope, headers: Headers, origin: str) -> bool:
        """`origin` is this request's scheme://host:port, and that host is one Callboard serves under
        (equal to the Host header is not enough: a rebinding page sets both to its own name)."""
        parts = origin_parts(origin)
        values = headers.getlist("host")
        host = split_host(values[0]) if len(values) == 1 else None
        if parts is None or host is None or not self.hosts.allows(parts[1]):
            return False
        scheme = str(scope.get("scheme", "http"))
        port = host[1] if host[1] is not None else DEFAULT_PORTS.get(scheme)
        return parts == (scheme, host[0], port)


def _client_key(scope: Scope) -> str:
    """The client address that failed sign-ins are counted against; IPv6 by /64, which one host
    usually holds whole (so it cannot rotate addresses to dodge the throttle)."""
    client = scope.get("client")
    if not client:
        return "unknown"
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return str(client[0])
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def _deny(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    basic: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = Headers(scope=scope)
    wants_json = scope["path"].startswith("/api/") or "application/json" in headers.get("accept", "")
    if wants_json:
        body, content_type = json.dumps({"error": message}).encode(), "application/json"
    else:
        body, content_type = (message + "\n").encode(), "text/plain; charset=utf-8"
    out = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if basic:
        out.append((b"www-authenticate", b'Basic realm="Callboard", charset="UTF-8"'))
    out += extra or []
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
