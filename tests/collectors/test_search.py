"""Search on real Redis and Valkey, over layouts the frameworks write themselves.

Dramatiq messages are sent through a real RedisBroker (ready, delayed), fetched by a real consumer
(in flight), and dead-lettered the way its nack leaves them. Arq jobs and results are written with
arq's own `serialize_job` / `serialize_result` (pickle) under arq's own key prefixes, so a mistake
in the collector's key names or decoding shows up here.
"""

from __future__ import annotations

import os
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job, serialize_result
from redis.asyncio import Redis

from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.dramatiq.config import DramatiqConfig
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.search import COUNT, FOLDS_INTO_ASCII, Hit, Query, Scan, prefilter
from callboard.collectors.target import TargetCollector
from callboard.dashboard.searches import KEEP_HITS, MAX_RUNNING, SearchBusy, Searches, SearchRequest
from tests.collectors.conftest import BrokerFactory, make_actor
from tests.servers import free_port

DEFAULT = QueueKeys("dramatiq", "default")
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/billing.py", line 12, in charge\n'
    "    raise PaymentDeclined(card)\n"
    "billing.PaymentDeclined: card 4242 declined\n"
)


async def collected(aredis: Redis) -> TargetCollector:
    """A collector that has discovered the keys (queues, ack sets) and read every Arq result."""
    tc = TargetCollector("main", aredis, DramatiqCollector(), ArqCollector())
    for _ in range(5):
        snap = await tc.collect()
        if snap.discovery.complete and tc.arq.results.complete:
            break
    assert snap.discovery.complete and tc.arq.results.complete
    return tc


async def run(tc: TargetCollector, query: Query, queue: str | None = None) -> tuple[Scan, list[Hit]]:
    framework = None if queue is None else ("dramatiq" if queue.startswith("dramatiq:") else "arq")
    scan = Scan(tc.redis, query, tc.search_sources(framework, queue))
    await scan.measure()
    hits = await scan.lookup()
    while not scan.done:
        hits += await scan.step()
    return scan, hits


def found(hits: list[Hit]) -> dict[str, tuple[str, str]]:
    """job id -> (state, field matched)."""
    return {h.job.job_id: (h.job.state, h.matched) for h in hits}


@pytest.fixture
def dramatiq_jobs(brokers: BrokerFactory, sync_redis: redis.Redis) -> dict[str, Any]:
    """One message in each Dramatiq state, sent and fetched by real brokers; their ids by state."""
    charge = make_actor(brokers(), "default", name="charge")
    fetched = charge.send("bob@example.com", 7)
    consumer = brokers().consume("default", prefetch=1, timeout=100)
    held = next(consumer)
    assert held is not None and held.message_id == fetched.message_id
    ready = charge.send("alice@example.com", 42, note="Grüße aus Köln")
    charge.send("carol@example.com", 8)
    delayed = charge.send_with_options(args=("dave@example.com",), delay=600_000)
    dead = charge.message_with_options(args=("erin@example.com", 4242), retries=3, traceback=TRACEBACK)
    dead_rid = str(uuid.uuid4())
    sync_redis.zadd(DEFAULT.dead, {dead_rid: int(time.time() * 1000)})
    sync_redis.hset(DEFAULT.dead_msgs, dead_rid, dead.copy(options={"redis_message_id": dead_rid}).encode())
    return {
        "ready": ready.options["redis_message_id"],
        "in_flight": fetched.options["redis_message_id"],
        "delayed": delayed.options["redis_message_id"],
        "dead": dead_rid,
        "delayed_message_id": delayed.message_id,
    }


async def test_dramatiq_fields_and_states(dramatiq_jobs: dict[str, Any], aredis: Redis) -> None:
    j = dramatiq_jobs
    tc = await collected(aredis)

    _, hits = await run(tc, Query("ALICE@example", "args"))
    assert found(hits) == {j["ready"]: ("ready", "args")}
    _, hits = await run(tc, Query("bob@", "args"))
    assert found(hits) == {j["in_flight"]: ("in_flight", "args")}
    assert hits[0].queue == "dramatiq:default" and hits[0].target == "main"
    _, hits = await run(tc, Query("dave", "any"))
    assert found(hits) == {j["delayed"]: ("delayed", "args")}
    # Numbers and keyword values are arguments too; non-ASCII text is escaped in the stored JSON.
    _, hits = await run(tc, Query("4242", "args"))
    assert found(hits) == {j["dead"]: ("dead", "args")}
    _, hits = await run(tc, Query("GRÜSSE aus", "args"))
    assert set(found(hits)) == {j["ready"]}

    _, hits = await run(tc, Query("PaymentDeclined: card 4242", "error"))
    assert found(hits) == {j["dead"]: ("dead", "error")}
    assert hits[0].job.error == "billing.PaymentDeclined: card 4242 declined"
    assert hits[0].job.failed_at is not None
    _, hits = await run(tc, Query("charge", "name"))
    assert sorted(s for s, _ in found(hits).values()) == ["dead", "delayed", "in_flight", "ready", "ready"]
    # The field asked for is the only one matched.
    _, hits = await run(tc, Query("alice", "name"))
    assert hits == []
    _, hits = await run(tc, Query("charge", "error"))
    assert hits == []


async def test_dramatiq_ids(dramatiq_jobs: dict[str, Any], aredis: Redis) -> None:
    j = dramatiq_jobs
    tc = await collected(aredis)
    # A redis message id is found without walking anything: one HGET per hash of each queue.
    scan = Scan(aredis, Query(j["dead"].upper(), "id"), tc.search_sources())
    assert found(await scan.lookup()) == {}  # lookups are exact
    scan = Scan(aredis, Query(j["dead"], "id"), tc.search_sources())
    assert found(await scan.lookup()) == {j["dead"]: ("dead", "id")}
    assert scan.scanned == 0
    # The message_id is not where the structure can find it: the walk does (and a prefix works).
    _, hits = await run(tc, Query(j["delayed_message_id"][:13], "id"))
    assert found(hits) == {j["delayed"]: ("delayed", "id")}
    _, hits = await run(tc, Query(j["in_flight"][:8].upper(), "any"))
    assert found(hits) == {j["in_flight"]: ("in_flight", "id")}


def arq_job(
    function: str, args: tuple[Any, ...], kwargs: dict[str, Any], job_try: int | None = None
) -> bytes:
    return serialize_job(function, args, kwargs, job_try, int(time.time() * 1000))


def arq_result(job_id: str, function: str, args: tuple[Any, ...], ok: bool, value: Any, queue: str) -> bytes:
    now = int(time.time() * 1000)
    raw = serialize_result(function, args, {}, 1, now - 50, ok, value, now - 20, now, "ref", queue, job_id)
    assert raw is not None
    return raw


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def arq_jobs(sync_redis: redis.Redis, tmp_path: Path) -> dict[str, Any]:
    """Arq jobs in every state, and hostile payloads, written as arq writes them."""
    now = int(time.time() * 1000)
    q = default_queue_name
    ids = {
        s: uuid.uuid4().hex
        for s in ("ready", "deferred", "in_progress", "succeeded", "failed", "evil", "bomb")
    }
    marker = tmp_path / "pwned"
    jobs = {
        "ready": (arq_job("send_invoice", ("acme-corp", 1200), {"currency": "EUR"}), now - 1000),
        "deferred": (arq_job("send_invoice", ("globex",), {}), now + 3_600_000),
        "in_progress": (arq_job("resize_image", ("cat.png",), {"width": 640}, 1), now - 500),
        "evil": (arq_job("resize_image", (Evil(marker),), {}), now - 400),
        # Not even a dict: a bare hostile pickle where the job should be.
        "bomb": (pickle.dumps(Evil(marker)), now - 300),
    }
    for state, (raw, due) in jobs.items():
        sync_redis.psetex(job_key_prefix + ids[state], 86_400_000, raw)
        sync_redis.zadd(q, {ids[state]: due})
    sync_redis.psetex(in_progress_key_prefix + ids["in_progress"], 310_000, b"1")
    results = {
        "succeeded": arq_result(ids["succeeded"], "send_invoice", ("initech",), True, "sent", q),
        "failed": arq_result(
            ids["failed"], "charge_card", ("hooli", 99), False, ValueError("card 4242 declined"), q
        ),
    }
    for state, raw in results.items():
        sync_redis.psetex(result_key_prefix + ids[state], 3_600_000, raw)
    return {**ids, "marker": marker}


async def test_arq_fields_states_and_ids(arq_jobs: dict[str, Any], aredis: Redis) -> None:
    j = arq_jobs
    tc = await collected(aredis)

    _, hits = await run(tc, Query("acme", "args"))
    assert found(hits) == {j["ready"]: ("ready", "args")}
    _, hits = await run(tc, Query("1200", "args"))  # an int: pickled in binary, still found
    assert found(hits) == {j["ready"]: ("ready", "args")}
    _, hits = await run(tc, Query("globex", "any"))
    assert found(hits) == {j["deferred"]: ("deferred", "args")}
    _, hits = await run(tc, Query("resize_image", "name"))
    assert {i: s for i, (s, _) in found(hits).items()} == {
        j["in_progress"]: "in_progress",
        j["evil"]: "ready",
    }
    _, hits = await run(tc, Query("initech", "args"))
    assert found(hits) == {j["succeeded"]: ("succeeded", "args")}
    _, hits = await run(tc, Query("ValueError: card 4242", "error"))
    assert found(hits) == {j["failed"]: ("failed", "error")}
    assert hits[0].job.error == "ValueError: card 4242 declined"
    _, hits = await run(tc, Query("invoice", "error"))
    assert hits == []

    # Ids: queued jobs and results are found at once, and a prefix by the walk.
    for state in ("deferred", "succeeded"):
        scan = Scan(aredis, Query(j[state], "id"), tc.search_sources())
        assert found(await scan.lookup()) == {j[state]: (state, "id")}
    _, hits = await run(tc, Query(j["failed"][:10], "id"))
    assert found(hits) == {j["failed"]: ("failed", "id")}


async def test_hostile_pickles_are_shown_never_run(arq_jobs: dict[str, Any], aredis: Redis) -> None:
    j = arq_jobs
    tc = await collected(aredis)
    _, hits = await run(tc, Query("touch", "args"))
    assert found(hits) == {j["evil"]: ("ready", "args")}
    assert "posix.system" in hits[0].job.call_preview
    _, hits = await run(tc, Query("posix.system", "any"))
    assert set(found(hits)) == {j["evil"]}  # the bare pickle is not a job: only its id can match
    _, hits = await run(tc, Query(j["bomb"], "any"))
    assert found(hits) == {j["bomb"]: ("ready", "id")}
    assert hits[0].job.undecodable is not None and hits[0].job.undecodable.reason == "not a dict"
    assert not j["marker"].exists()


def test_prefilter_words() -> None:
    words = prefilter(Query("ValueError: card 4242 — Grüße", "error"))
    assert words.text_words == (b"valueerror", b"card", b"4242", b"gr", b"e")
    # Pickle stores numbers (and None, True, False) in binary: those words are not required there.
    assert words.binary_words == (b"valueerror", b"card", b"gr")
    assert prefilter(Query("None true", "args")).binary_words == ()


def test_the_characters_that_fold_into_ascii_are_all_known() -> None:
    every = "".join(c for c in map(chr, range(0x80, 0x110000)) if any(x.isascii() for x in c.casefold()))
    assert every == FOLDS_INTO_ASCII


async def test_progress_counts_and_duplicates(brokers: BrokerFactory, aredis: Redis) -> None:
    work = make_actor(brokers(), "default", name="bulk")
    for i in range(COUNT * 2 + 500):
        work.send(i, f"order-{i}")
    tc = await collected(aredis)
    scan = Scan(aredis, Query("order-1", "args"), tc.search_sources())
    await scan.measure()
    assert scan.total == COUNT * 2 + 500
    seen = [scan.scanned]
    hits: list[Hit] = []
    while not scan.done:
        hits += await scan.step()
        seen.append(scan.scanned)
    assert seen == sorted(seen) and len(set(seen)) >= 3  # several steps, each one further
    assert scan.scanned == scan.total
    expected = {f"order-{i}" for i in range(COUNT * 2 + 500) if str(i).startswith("1")}
    assert len(hits) == len(expected) == 1111
    # The same entries returned again (as SCAN may while a hash rehashes) are not counted twice.
    scan.index, scan.cursor = 0, 0
    again: list[Hit] = []
    while not scan.done:
        again += await scan.step()
    assert again == []


async def test_searches_join_stop_cap_and_fail(brokers: BrokerFactory, aredis: Redis) -> None:
    work = make_actor(brokers(), "default", name="bulk")
    for i in range(KEEP_HITS + 300):
        work.send(i, f"order-{i}")
    tc = await collected(aredis)
    searches = Searches({"main": tc})
    request = SearchRequest(Query("order-", "args"), "main", "dramatiq", DEFAULT.ready)

    first, joined = searches.start(request)
    second, joined_again = searches.start(request)
    assert (joined, joined_again, second.id) == (False, True, first.id)
    assert first.task is not None
    await first.task
    view = first.view()
    assert (view["status"], view["matches"], view["kept"]) == ("finished", KEEP_HITS + 300, KEEP_HITS)
    assert view["scanned"] == view["total"] == KEEP_HITS + 300
    # One path segment per name; ":" stays readable (dashboard.urls.segment).
    assert view["hits"][0]["url"].startswith("/jobs/main/dramatiq/dramatiq:default/")
    third, joined = searches.start(request)  # the first has finished: a new one runs
    assert not joined and third.id != first.id

    stopped, _ = searches.start(SearchRequest(Query("order-7", "args")))
    searches.stop(stopped.id)  # before it has taken a step
    assert stopped.task is not None
    await stopped.task
    assert (stopped.status, stopped.stopped, stopped.view()["scanned"]) == ("stopped", "stopped by a user", 0)

    searches.stop(third.id)  # nothing runs now (a no-op if it has ended already)
    assert third.task is not None
    await third.task
    crowd = []  # different searches, started with no await between them: all still running
    with pytest.raises(SearchBusy):
        for i in range(MAX_RUNNING + 1):
            crowd.append(searches.start(SearchRequest(Query(f"order-{i}", "args")))[0])
    assert [s.status for s in crowd] == ["running"] * MAX_RUNNING
    for search in crowd:
        searches.stop(search.id)

    idle = Searches({"main": tc}, budget=0.0, idle_timeout=0.0)
    unwatched, _ = idle.start(SearchRequest(Query("order-8", "args")))
    assert unwatched.task is not None
    await unwatched.task
    assert unwatched.status == "stopped"
    assert unwatched.stopped is not None and "nobody watched" in unwatched.stopped

    gone = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    known = DramatiqCollector(DramatiqConfig(queues=(DEFAULT.ready,)))
    broken = Searches({"gone": TargetCollector("gone", gone, known)})
    failed, _ = broken.start(SearchRequest(Query("x")))
    assert failed.task is not None
    await failed.task
    assert failed.status == "failed" and failed.error and failed.error.startswith("Redis failed")
    await gone.aclose()
    await searches.close()


async def test_found_by_id_ends_at_once(dramatiq_jobs: dict[str, Any], aredis: Redis) -> None:
    tc = await collected(aredis)
    searches = Searches({"main": tc})
    search, _ = searches.start(SearchRequest(Query(dramatiq_jobs["ready"], "id")))
    assert search.task is not None
    await search.task
    view = search.view()
    assert (view["status"], view["found_by_id"], view["scanned"], view["matches"]) == ("finished", True, 0, 1)
    await searches.close()
