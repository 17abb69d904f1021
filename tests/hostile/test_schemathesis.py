"""Schemathesis against /api/v1/openapi.json, on a throwaway Redis of ours holding the corpus.

`callboard serve` watches a Redis we started and loaded with tests/hostile/corpus.py (its decode bombs
left out: the latency probe and the crawl cover those; here they would only turn every request into
a wait for the background decode). Schemathesis generates requests for every operation of the
document: valid ones and invalid ones, with free parameters and with real ones from the corpus
(its queues, its jobs). The POST controls run too: they act on the throwaway Redis only.

Checks: no server error (5xx), every answer JSON (errors included: "JSON API errors are JSON with a
message"), and status codes, content types and bodies (schemas generated from the types) as the document says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hostile.conftest import CappedBoard, new_redis, start_board, wait_for_corpus
from tests.hostile.corpus import TARGET, Manifest, flow_series, write_corpus

#: Examples per operation and kind of data (free valid, free invalid, with corpus parameters).
EXAMPLES = 8
REQUEST_TIMEOUT = 20


@dataclass
class ApiBoard:
    board: CappedBoard
    manifest: Manifest
    #: None once discovery listed the corpus; else Schemathesis runs anyway, and this is reported.
    discovery: str | None


@pytest.fixture(scope="module")
def api_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiBoard]:
    server = new_redis()
    board = None
    try:
        board = start_board(server, TARGET)
        with redis.Redis.from_url(server.url) as client:
            manifest = write_corpus(client, tmp_path_factory.mktemp("markers"), with_bombs=False)
        yield ApiBoard(board, manifest, wait_for_corpus(board.url, manifest))
    finally:
        if board is not None:
            board.stop()
        server.stop()


def answers_json(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every answer of the JSON API is JSON, errors included."""
    try:
        json.loads(response.content)
    except ValueError:
        raise AssertionError(
            f"{response.status_code} answer is not JSON ({response.headers.get('content-type')}): "
            f"{response.content[:200]!r}"
        ) from None
    return None


#: Integers at and past every bound, for the query parameters that take one.
_NUMBERS = ["0", "-1", "1", "500", "501", "10" * 16, str(10**32), "1e3", "0x10", " 5", "９"]
BOUNDARIES = {"cursor": _NUMBERS, "limit": _NUMBERS, "page": _NUMBERS}
CHECKS = [
    not_a_server_error,
    answers_json,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


#: (path parameters, query parameters) of a case.
Fixed = tuple[dict[str, str], dict[str, str]]


def corpus_cases(manifest: Manifest, operation: Any) -> list[Fixed]:
    """Parameters from the corpus for `operation`: its queues (on each tab that lists jobs) and jobs,
    those whose names a generic client puts in a URL as they are (odd ones are the crawl's business)."""

    def plain(text: str) -> bool:
        text = text.replace(":", "")
        return text.isascii() and text.isprintable() and not set(text) & set("/%?#~ .") and text != ""

    names = {p.name for p in operation.path_parameters}
    takes_state = "state" in {p.name for p in operation.query}
    out: list[Fixed] = []
    if "job_id" in names:
        for job in manifest.jobs:
            if plain(job.queue) and plain(job.job_id):
                path = {
                    "target": TARGET,
                    "framework": job.framework,
                    "queue": job.queue,
                    "job_id": job.job_id,
                }
                out.append(({k: v for k, v in path.items() if k in names}, {}))
    elif "series_id" in names:  # a task's id is 12 hex digits whatever its names
        out += [({"target": TARGET, "series_id": series.id}, {}) for series in flow_series()]
    elif "queue" in names:
        for q in manifest.queues:
            if plain(q.key):
                path = {"target": TARGET, "framework": q.framework, "queue": q.key}
                out += [(path, {"state": s}) for s in q.states] if takes_state else [(path, {})]
    return out


def cases_with(operation: Any, name: str | None = None) -> Callable[[Any], st.SearchStrategy[Any]]:
    """Cases of `operation` with fixed parameters, and with `name` (a query parameter) set too."""

    def cases(chosen: Any) -> st.SearchStrategy[Any]:
        (path, query), value = chosen if name else (chosen, None)
        query = {**query, name: value} if name else query
        strategy: st.SearchStrategy[Any] = operation.as_strategy(
            path_parameters=path or None, query=query or None
        )
        return strategy

    return cases


def test_schemathesis_finds_no_server_error_and_only_documented_json_answers(api_board: ApiBoard) -> None:
    base = api_board.board.url
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json", timeout=10)
    #: (operation, kind of failure) -> the first report of it, with the curl that replays it.
    found: dict[tuple[str, str], str] = {}
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            found[("?", "unreadable operation")] = str(result.err())
            continue
        operation = result.ok()
        operations += 1
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        strategies = [operation.as_strategy(mode) for mode in modes]
        fixed = corpus_cases(api_board.manifest, operation)
        if fixed:
            strategies.append(st.sampled_from(fixed).flatmap(cases_with(operation)))
        for name in {p.name for p in operation.query} & set(BOUNDARIES):
            boundary = st.tuples(st.sampled_from(fixed or [({}, {})]), st.sampled_from(BOUNDARIES[name]))
            strategies.append(boundary.flatmap(cases_with(operation, name)))

        # Every example runs: each distinct failure is recorded, none stops the generation.
        @settings(max_examples=EXAMPLES * len(strategies), suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(strategies))
        def run(case: Any) -> None:
            try:
                response = case.call(base_url=base, timeout=REQUEST_TIMEOUT)
            except requests.RequestException as exc:
                found.setdefault((case.operation.label, type(exc).__name__), case.as_curl_command())
                return
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                for failure in group.exceptions:
                    kind = f"{failure.code} {response.status_code}"
                    report = f"{failure.title} ({response.status_code} {response.content[:240]!r})"
                    found.setdefault((case.operation.label, kind), f"{report}\n    {case.as_curl_command()}")

        run()
    assert operations >= 10, f"only {operations} operations in the document"
    problems = [api_board.discovery] if api_board.discovery else []
    problems += [f"{label}: {report}"[:1200] for (label, _), report in sorted(found.items())]
    assert not problems, "\n\n".join(problems)
