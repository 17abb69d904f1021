"""Static files: named by a content hash, cached for a year by browsers, gzipped once.

Pages link `/static/<path>?v=<hash>` (templating.static), where the hash is the first 10 hex digits
of the file's SHA-256. Such a URL always names the same bytes, so it is answered with
`Cache-Control: public, max-age=31536000, immutable`: a browser that has it never asks again, and a
new release changes the URL. A URL without the current hash (an old page after an upgrade, a hand-typed
link) still gets the file, with `no-cache` and an ETag, so it can never be cached as the wrong bytes.

Files are read and gzipped (level 9) when first asked for, then kept in memory: htmx and uPlot are
about 100 kB raw and 38 kB gzipped, sent compressed to every browser that accepts gzip. Each request
costs a `stat` of the file, so an edited file is served (and hashed) anew without a restart. Only
files under `static/` are served: a name is looked up, never joined into a path by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from callboard.dashboard.rendercache import GZIP_MIN

#: For a URL that carries the file's current hash.
IMMUTABLE = "public, max-age=31536000, immutable"
#: For any other URL of the file: the browser may keep it, but asks (ETag) before each use.
REVALIDATE = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    #: None for files under GZIP_MIN bytes: compressing them saves less than it costs.
    gzipped: bytes | None
    #: The first 10 hex digits of the body's SHA-256: the `v` of its URL.
    digest: str
    media_type: str
    #: What it was read from (size, mtime in ns): a change reloads it.
    stamp: tuple[int, int]


def _media_type(name: str) -> str:
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


class Assets:
    """The files under `root`, as they are now."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._loaded: dict[str, Asset] = {}

    def get(self, name: str) -> Asset | None:
        """The file `name` (a path below root, `/`-separated), or None when there is no such file."""
        # Names only: no empty, `.` or `..` segment (so no absolute path either), no backslash.
        if "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
            return None
        file = self.root / name
        try:
            info = file.stat()
        except OSError:
            return None
        stamp = (info.st_size, info.st_mtime_ns)
        kept = self._loaded.get(name)
        if kept is not None and kept.stamp == stamp:
            return kept
        if not file.is_file():
            return None
        body = file.read_bytes()
        asset = Asset(
            body=body,
            gzipped=gzip.compress(body, 9, mtime=0) if len(body) >= GZIP_MIN else None,
            digest=hashlib.sha256(body).hexdigest()[:10],
            media_type=_media_type(name),
            stamp=stamp,
        )
        self._loaded[name] = asset
        return asset

    def digest(self, name: str) -> str:
        asset = self.get(name)
        return asset.digest if asset is not None else "missing"


def respond(request: Request, asset: Asset) -> Response:
    """The file, gzipped when accepted; immutable when the URL's `v` is its hash; 304 on a match.

    `Vary: Accept-Encoding` goes with the gzipped body and with a 304 of a file that has one; on the
    plain body of such a file the app's GZipMiddleware adds it (it does so for every uncompressed
    answer of GZIP_MIN bytes or more), so it is never there twice."""
    gzipped = asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", "")
    etag = f'"{asset.digest}{"-gz" if gzipped else ""}"'
    headers = {
        "Cache-Control": IMMUTABLE if request.query_params.get("v") == asset.digest else REVALIDATE,
        "ETag": etag,
    }
    if etag in request.headers.get("if-none-match", ""):
        if asset.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        return Response(status_code=304, headers=headers)
    if gzipped and asset.gzipped is not None:
        headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(asset.gzipped, headers=headers, media_type=asset.media_type)
    return Response(asset.body, headers=headers, media_type=asset.media_type)


def endpoint(assets: Assets) -> Callable[[Request], Awaitable[Response]]:
    """The `/static/{path:path}` route's endpoint."""

    async def static_file(request: Request) -> Response:
        asset = assets.get(request.path_params["path"])
        if asset is None:
            raise HTTPException(404, "No such file.")
        return respond(request, asset)

    return static_file
