"""HTTP for searches: the page, its live fragment, and the JSON API.

    GET  /search?q=&in=any|id|name|args|error&target=&framework=&queue=    page (starts or joins)
    GET  /fragments/searches/{id}                                         progress + matches (polls)
    GET  /api/v1/search?q=&in=&target=&framework=&queue=                  starts or joins; its state
    GET  /api/v1/searches/{id}                                            its state
    POST /api/v1/searches/{id}/stop                                       stops it (allowed read-only)

A GET starts the search because reading is all it does, and an identical running search is joined,
so reloads and open tabs never multiply the work (dashboard/searches.py).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from callboard.collectors.search import Query
from callboard.dashboard import views
from callboard.dashboard.api import respond
from callboard.dashboard.openapi import Doc, documented
from callboard.dashboard.searches import Search, SearchBusy, SearchError, SearchRequest
from callboard.dashboard.services import services

FIELD_LABELS = {
    "any": "anything",
    "id": "id",
    "name": "actor / function",
    "args": "arguments",
    "error": "error",
}


def _params(request: Request) -> dict[str, Any]:
    p = request.query_params
    return {
        "q": (p.get("q") or "").strip(),
        "field": p.get("in") or "any",
        "target": p.get("target") or None,
        "framework": p.get("framework") or None,
        "queue": p.get("queue") or None,
    }


def _start(request: Request, params: dict[str, Any]) -> tuple[Search, bool]:
    try:
        query = Query(params["q"], params["field"])
        search_request = SearchRequest(query, params["target"], params["framework"], params["queue"])
        return services(request).searches.start(search_request)
    except SearchBusy as exc:
        raise HTTPException(429, str(exc)) from None
    except SearchError as exc:
        raise HTTPException(404 if "unknown target" in str(exc) else 400, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _found(request: Request) -> Search:
    search = services(request).searches.get(request.path_params["search_id"])
    if search is None:
        raise HTTPException(404, "No such search (finished ones are kept for a while only).")
    return search


async def search_page(request: Request) -> Response:
    params = _params(request)
    context: dict[str, Any] = {**params, "fields": FIELD_LABELS, "search": None, "joined": False}
    if params["q"]:
        search, joined = _start(request, params)
        context |= {"search": search.view(), "joined": joined}
    return views.render(request, "pages/search.html", context)


async def search_fragment(request: Request) -> Response:
    return views.render(request, "partials/search_progress.html", {"search": _found(request).view()})


@documented(
    Doc(
        "Start a search of stored jobs (or join the identical one running); its id and progress. "
        "`in`: any, id, name, args or error; scope: every queue, or narrowed by target, framework, queue",
        ("q", "in", "target", "framework", "queue"),
        errors={"429": "Too many different searches are running: stop one, or wait"},
    )
)
async def search_api(request: Request) -> Response:
    params = _params(request)
    if not params["q"]:
        raise HTTPException(400, "Say what to search for: ?q=...")
    search, joined = _start(request, params)
    return _answer(search, joined)


@documented(Doc("A search's progress (scanned, total, matches) and its first 1,000 matches"))
async def search_state(request: Request) -> Response:
    return _answer(_found(request))


@documented(
    Doc(
        "Stop a search (allowed in read-only mode: it changes no job)",
        ok="The search's state",
        errors={
            "400": "A bad request (the search id is a path segment; nothing else is read)",
            "403": "A cross-site request",
            "404": "No such search (finished ones are kept for a while only)",
        },
    )
)
async def search_stop(request: Request) -> Response:
    search = services(request).searches.stop(request.path_params["search_id"])
    if search is None:
        raise HTTPException(404, "No such search (finished ones are kept for a while only).")
    return _answer(search)


def _answer(search: Search, joined: bool = False) -> Response:
    response = respond({**search.view(), "joined": joined})
    response.headers["Location"] = f"/api/v1/searches/{search.id}"
    return response
