"""Who may do what: authentication, read-only mode and the cross-site guard, as one ASGI middleware.

Order of checks for every request:
1. `/healthz` (and `/metrics` when `metrics_public`) pass untouched.
2. With auth configured, a request needs HTTP basic credentials of a configured user (password
   stored as an scrypt hash) or a bearer token whose SHA-256 is configured; else 401.
3. Unsafe methods (anything but GET, HEAD, OPTIONS): refused with 403 in read-only mode (except
   stopping a search, which changes no job); refused
   with 403 when they come from another site: `Sec-Fetch-Site` must be `same-origin` (or `none`,
   typed by the user); without it, `Origin` must be this host (or a trusted origin); with neither
   (scripts, curl), the request must be authenticated or come from loopback.

The user name (or `token:<name>`, or `anonymous`) is put in `scope["state"]["user"]` for the audit log.
Basic auth verifies an scrypt hash (~50 ms of CPU on purpose); browsers resend credentials on every
poll, so verified credentials are remembered by their SHA-256 (bounded), and a wrong password costs
the full price every time.
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

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: POSTs that change nothing in Redis, so read-only mode allows them (still behind auth and the
#: cross-site guard): stopping a search, which only ends Callboard's own reads.
READ_ONLY_POSTS = re.compile(r"/api/v1/searches/[^/]+/stop")
#: scrypt cost: N=2^15, r=8, p=1 takes ~50 ms and 32 MiB here; an attacker's guesses cost the same.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AuthConfig:
    #: user name -> "scrypt$N$r$p$salt$hash" (base64), from `callboard hash-password`.
    users: Mapping[str, str] = field(default_factory=dict)
    #: token name -> "sha256$hex", from `callboard new-token`.
    tokens: Mapping[str, str] = field(default_factory=dict)
    #: Let Prometheus scrape without credentials (the figures are not secret to everyone).
    metrics_public: bool = False
    #: Origins besides this host allowed to POST (e.g. "https://ops.example.com" behind a proxy).
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


class AccessGuard:
    def __init__(self, app: ASGIApp, auth: AuthConfig, read_only: bool) -> None:
        self.app = app
        self.auth = auth
        self.read_only = read_only
        self._verified: OrderedDict[bytes, str] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        if path == "/healthz" or (path == "/metrics" and self.auth.metrics_public):
            await self.app(scope, receive, send)
            return
        user = self._user(headers)
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

    def _user(self, headers: Headers) -> str | None:
        header = headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            hashed = hash_token(value.strip())
            for name, expected in self.auth.tokens.items():
                if hmac.compare_digest(hashed, expected):
                    return f"token:{name}"
            return None
        if scheme.lower() != "basic" or not value:
            return None
        try:
            name, sep, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, binascii.Error):
            return None
        if not sep or name not in self.auth.users:
            return None
        key = hashlib.sha256(f"{name}\0{password}\0{self.auth.users[name]}".encode()).digest()
        if key in self._verified:
            self._verified.move_to_end(key)
            return name
        if not verify_password(password, self.auth.users[name]):
            return None
        self._verified[key] = name
        while len(self._verified) > 256:
            self._verified.popitem(last=False)
        return name

    def _cross_site(self, scope: Scope, headers: Headers, authenticated: bool) -> str | None:
        site = headers.get("sec-fetch-site")
        if site is not None:
            return None if site in ("same-origin", "none") else f"Sec-Fetch-Site is {site!r}"
        origin = headers.get("origin")
        if origin is not None:
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin == own or origin in self.auth.trusted_origins:
                return None
            return f"Origin {origin!r} is not this site ({own})"
        client = scope.get("client")
        if authenticated or (client and is_loopback(client[0])):
            return None
        return "no Sec-Fetch-Site or Origin header, not authenticated and not from loopback"


async def _deny(scope: Scope, send: Send, status: int, message: str, basic: bool = False) -> None:
    headers = Headers(scope=scope)
    wants_json = scope["path"].startswith("/api/") or "application/json" in headers.get("accept", "")
    if wants_json:
        body, content_type = json.dumps({"error": message}).encode(), "application/json"
    else:
        body, content_type = (message + "\n").encode(), "text/plain; charset=utf-8"
    out = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if basic:
        out.append((b"www-authenticate", b'Basic realm="Callboard", charset="UTF-8"'))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
