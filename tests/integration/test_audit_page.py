"""The audit page and API read entries anyone who can write to Redis may have edited by hand."""

from __future__ import annotations

import json

import redis

from callboard.collectors.audit import AUDIT_KEY
from tests.servers import Callboard


def test_entries_with_odd_times_are_listed_not_a_500(redis_url: str, control: redis.Redis) -> None:
    odd = [{"action": "retry", "finished_at": "soon"}, {"action": "delete", "finished_at": [1]}]
    good = {"action": "purge", "finished_at": 1_700_000_000.0, "target": "main"}
    for entry in [*odd, good]:
        control.lpush(AUDIT_KEY, json.dumps(entry))
    board = Callboard([f"main={redis_url}"]).start()
    try:
        api_status, api_body = board.get("/api/v1/audit")
        page_status, page = board.get("/audit")
    finally:
        board.stop()
    assert api_status == 200, api_body
    actions = [e["action"] for e in json.loads(api_body)["entries"]]
    # The entry with a real time sorts first; the two hand-edited ones still show, after it.
    assert actions[0] == "purge" and sorted(actions[1:]) == ["delete", "retry"]
    assert page_status == 200 and "purge" in page
