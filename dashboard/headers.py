"""Security headers on every response, as the outermost ASGI middleware.

Outermost so that nothing escapes them: pages, fragments, the API, static files, 404s and 405s, and the
Host and access guards' own 400/401/403/429 answers. The policy allows only Callboard's own files:
- `script-src 'self'`: no inline script or event handler and no `eval` (htmx runs with `allowEval`
  off; `static/app.js` drives the live parts), so injected markup cannot run code;
- `style-src 'self'`: no `style=` attributes or `<style>` (htmx's indicator styles are off);
- `img-src 'self' data:`: the empty `data:` favicon; `connect-src 'self'`: htmx polls;
- `frame-ancestors 'none'` and `X-Frame-Options: DENY` (older browsers): no page can frame the
  dashboard, so no click on it can be borrowed (clickjacking);
- `form-action 'self'`, `base-uri 'none'`: injected markup cannot send a form elsewhere or rebase links.
`Referrer-Policy: same-origin` rather than `no-referrer`: under `no-referrer` browsers send
`Origin: null` on same-origin POSTs, and the cross-site guard falls back to `Origin` where
`Sec-Fetch-Site` is missing (plain http on a name, not loopback); `same-origin` still sends nothing to
other sites (queue names and job ids in URLs stay here). Costs a few header tuples per response.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ours replace any the app set: one policy, whatever answered.
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in _NAMES]
                message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
