"""dashboard/openapi.py: the API document is generated from the routes and the types they answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from callboard.collectors.model import Framework, JobPage
from callboard.dashboard import openapi
from callboard.dashboard.app import create_app
from callboard.dashboard.settings import Settings

ROUTES = create_app(Settings()).routes


def test_every_api_route_is_documented() -> None:
    undocumented = [
        (path, method)
        for path, method, endpoint, _ in openapi._endpoints(ROUTES)
        if path.startswith("/api/v1/") and path != "/api/v1/openapi.json" and endpoint not in openapi.DOCS
    ]
    assert undocumented == []


def test_the_document_lists_each_path_and_method_once_with_its_parameters() -> None:
    doc = openapi.document(ROUTES)
    paths = doc["paths"]
    # One path per literal last segment of the segment routes: the actions are spelled out.
    assert set(paths["/api/v1/queues/{target}/{framework}/{queue}/jobs"]) == {"get"}
    for action in ("retry", "delete", "abort", "recover"):
        assert set(paths[f"/api/v1/queues/{{target}}/{{framework}}/{{queue}}/{action}"]) == {"post"}
    post = paths["/api/v1/jobs/{target}/{framework}/{queue}/{job_id}/abort"]["post"]
    assert post["summary"].startswith("abort one job")
    assert [p["name"] for p in post["parameters"]] == ["target", "framework", "queue", "job_id"]
    jobs = paths["/api/v1/queues/{target}/{framework}/{queue}/jobs"]["get"]
    query = {p["name"]: p["schema"] for p in jobs["parameters"] if p["in"] == "query"}
    assert query["limit"] == {"type": "integer", "minimum": 1, "maximum": 500}
    assert jobs["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobPage"
    }
    assert "503" in jobs["responses"] and "503" not in paths["/api/v1/workers"]["get"]["responses"]
    assert not any(path.startswith(("/fragments", "/queues/", "/jobs/")) for path in paths)


def test_schemas_follow_the_dataclasses_fields_and_types() -> None:
    components: dict[str, Any] = {}
    assert openapi.schema_of(JobPage, components) == {"$ref": "#/components/schemas/JobPage"}
    page = components["JobPage"]
    assert page["required"] == [
        "state", "items", "total", "offset", "limit", "next_cursor", "prev_cursor", "order", "note"
    ]  # fmt: skip
    assert page["properties"]["total"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert page["properties"]["items"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/JobSummary"},
    }
    assert "JobSummary" in components and "Undecodable" in components


@dataclass(frozen=True)
class Sample:
    kind: Framework
    pair: tuple[str, float]
    counts: dict[str, int]
    hidden: object = field(default=None, metadata={"json": False})


def test_enums_fixed_tuples_mappings_and_hidden_fields() -> None:
    components: dict[str, Any] = {}
    openapi.schema_of(Sample, components)
    props = components["Sample"]["properties"]
    assert props["kind"] == {"type": "string", "enum": ["dramatiq", "arq"]}
    assert props["pair"]["prefixItems"] == [{"type": "string"}, openapi.NUMBER]
    assert props["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert "hidden" not in props  # the API leaves json=False fields out, so does the document


def test_a_type_with_no_json_shape_is_an_error_not_a_guess() -> None:
    with pytest.raises(TypeError):
        openapi.schema_of(complex, {})
