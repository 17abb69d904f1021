"""Least-privilege Redis users, and Redis Cluster: reading works with a read-only ACL and never flaps;
controls refused by the ACL fail with a clear non-2xx answer and change nothing; a cluster node is
named as unsupported instead of shown as an empty target.

Every server here is our own (ACL users are created on it); the default user stays the admin.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any, cast

import dramatiq
import pytest
import redis
from arq.connections import ArqRedis, create_pool
from arq.connections import RedisSettings as ArqRedisSettings
from arq.jobs import serialize_result
from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import NoPermissionError

from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.dramatiq import controls as dramatiq_controls
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.model import TargetSnapshot
from callboard.collectors.target import ClusterUnsupported, TargetCollector
from callboard.dashboard.app import redis_client
from tests.conftest import PREFERRED, SERVERS, flushed
from tests.servers import Callboard, RedisServer, free_port, wait_until

#: The documented minimal read-only user (README, Security): reads, and PING for connection checks.
MINIMAL_READ = ("~*", "+@read", "+ping")
#: What the issue found flapping: reads plus scripts, but no MULTI.
READ_AND_SCRIPTS = ("~*", "+@read", "+ping", "+@scripting")


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    flushed(redis_server)
    client = redis.Redis.from_url(redis_server.url)
    yield client
    for user in cast(list[str], client.acl_users()):
        if user != "default":
            client.acl_deluser(user)
    client.close()


def add_user(admin: redis.Redis, server: RedisServer, name: str, *rules: str) -> str:
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">secret-pw", *rules)  # type: ignore[no-untyped-call]
    return f"redis://{name}:secret-pw@127.0.0.1:{server.port}/0"


def seed(url: str) -> RedisBroker:
    """Real Dramatiq traffic: 6 ready, 2 delayed, 3 dead letters, 1 in flight."""
    broker = RedisBroker(url=url, namespace="dramatiq", maintenance_chance=0)  # type: ignore[no-untyped-call]

    @dramatiq.actor(broker=broker, queue_name="default", max_retries=0)
    def work(n: int) -> None:
        pass

    for i in range(10):
        work.send(i)
    for i in range(2):
        work.send_with_options(args=(i,), delay=600_000)
    consumer = broker.consume("default", prefetch=4, timeout=100)
    taken = [next(consumer) for _ in range(4)]
    for message in taken[:3]:
        assert message is not None
        consumer.nack(message)
    return broker


async def seed_arq(url: str) -> None:
    pool: ArqRedis = await create_pool(ArqRedisSettings.from_dsn(url))
    try:
        for i in range(3):
            await pool.enqueue_job("report", i, _queue_name="arq:queue")
        await pool.enqueue_job("report", 99, _queue_name="arq:queue", _defer_by=600)
    finally:
        await pool.aclose()


async def settled(collector: TargetCollector, cycles: int = 6) -> TargetSnapshot:
    """Collect until discovery has seen everything (a few cycles on a small keyspace)."""
    snapshot = await collector.collect()
    for _ in range(cycles):
        snapshot = await collector.collect()
    return snapshot


def collector_for(url: str) -> TargetCollector:
    # The client the app makes, so its connection handshake is what is tested.
    return TargetCollector("t", redis_client(url, 2.0), DramatiqCollector(), ArqCollector())


def view(snapshot: TargetSnapshot) -> dict[str, Any]:
    return {
        "queues": {
            q.key: (dict(q.counts), q.oldest_ready_age is not None, q.oldest_dead_age is not None)
            for q in snapshot.queues
        },
        "workers": sorted((w.worker_id, w.alive, w.in_flight) for w in snapshot.workers),
        "failures": sorted((g.name, g.exception, g.count) for g in snapshot.failures),
    }


async def test_minimal_read_only_user_reads_the_same_snapshot(
    admin: redis.Redis, redis_server: RedisServer
) -> None:
    broker = seed(redis_server.url)
    await seed_arq(redis_server.url)
    reader_url = add_user(admin, redis_server, "reader", *MINIMAL_READ)
    full, reader = collector_for(redis_server.url), collector_for(reader_url)
    try:
        expected = await settled(full)
        got = await settled(reader)
        assert view(got) == view(expected)
        assert view(got)["queues"]["dramatiq:default"][0] == {
            "ready": 6,
            "in_flight": 1,
            "delayed": 2,
            "dead": 3,
        }
        assert view(got)["queues"]["arq:queue"][0] == {"ready": 3, "deferred": 1, "in_progress": 0}
        # What the ACL costs, said on the page: no INFO, and a few round trips instead of one.
        assert got.server is None and expected.server is not None
        assert any("may not run scripts" in n for n in got.notes)
        assert any("may not run INFO" in n for n in got.notes)
        assert not any("may not" in n for n in expected.notes)
        # Nothing the reader sent was refused after the first cycle: it learned the ACL once.
        refused_before = acl_denials(admin, "reader")
        for _ in range(3):
            assert view(await reader.collect()) == view(expected)
        assert acl_denials(admin, "reader") == refused_before
    finally:
        await full.redis.aclose()
        await reader.redis.aclose()
        broker.client.close()


def acl_denials(admin: redis.Redis, user: str) -> int:
    entries = cast(list[dict[str, Any]], admin.acl_log(count=1000))
    return sum(int(e.get("count", 1)) for e in entries if e.get("username") == user)


async def test_read_and_scripts_user_never_flaps(admin: redis.Redis, redis_server: RedisServer) -> None:
    """The dead-letter reader used MULTI, which this user may not run: every other cycle failed."""
    broker = seed(redis_server.url)
    url = add_user(admin, redis_server, "scripted", *READ_AND_SCRIPTS)
    collector = collector_for(url)
    try:
        snapshots = [await collector.collect() for _ in range(8)]  # raises if one cycle fails
        last = snapshots[-1]
        assert last.round_trips >= 1 and last.server is None  # INFO is still refused
        assert not any("may not run scripts" in n for n in last.notes)
        groups = {(g.name, g.exception, g.pattern): g.count for g in last.failures}
        assert groups == {("work", "(no traceback)", ""): 3}
    finally:
        await collector.redis.aclose()
        broker.client.close()


def post(board: Callboard, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        board.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def failed_result(admin: redis.Redis, job_id: str) -> None:
    """A failed Arq result, written with arq's own serializer (pickle), kept for an hour."""
    now_ms = int(time.time() * 1000)
    raw = serialize_result(
        "report", (1,), {}, 1, now_ms, False, ValueError("boom"), now_ms, now_ms, "r", "arq:queue", job_id
    )
    assert raw is not None
    admin.psetex(f"arq:result:{job_id}", 3_600_000, raw)


def dead_state(admin: redis.Redis) -> tuple[Any, ...]:
    return (
        sorted(cast(list[bytes], admin.zrange("dramatiq:default.XQ", 0, -1))),
        sorted(cast(list[bytes], admin.hkeys("dramatiq:default.XQ.msgs"))),
        admin.llen("dramatiq:default"),
        admin.hlen("dramatiq:default.msgs"),
    )


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param(MINIMAL_READ, id="read-only"),
        # Allowed to run the script and two of its writes, not the other two: without the
        # script's ACL check first, a dead letter would be removed and never requeued.
        pytest.param((*MINIMAL_READ, "+eval", "+zrem", "+hdel"), id="partial-writes"),
    ],
)
def test_a_control_the_acl_refuses_fails_clearly_and_changes_nothing(
    admin: redis.Redis, redis_server: RedisServer, rules: tuple[str, ...]
) -> None:
    broker = seed(redis_server.url)
    failed_result(admin, "failed-1")
    url = add_user(admin, redis_server, "limited", *rules)
    before = dead_state(admin)
    board = Callboard([f"main={url}"]).start(poll_interval=0.2)
    try:
        wait_until(
            lambda: all(q in board.get("/api/v1/queues")[1] for q in ("dramatiq:default", '"arq:queue"')),
            timeout=20,
            what="queues discovered",
        )
        status, body = post(board, "/api/v1/queues/main/dramatiq/dramatiq:default/retry", {"state": "dead"})
        assert status == 403, body
        assert body["status"] == "failed"
        assert "ACL" in body["error"] and "Nothing more was changed" in body["error"]
        assert dead_state(admin) == before
        status, body = post(board, "/api/v1/queues/main/dramatiq/dramatiq:default/delete", {"state": "ready"})
        assert status == 403, body
        assert dead_state(admin) == before
        # Arq: re-running a failed result is a WATCH/MULTI block, refused whole.
        result = admin.get("arq:result:failed-1")
        status, body = post(board, "/api/v1/queues/main/arq/arq:queue/retry", {"state": "failed"})
        assert status == 403, body
        assert "ACL" in body["error"]
        assert admin.get("arq:result:failed-1") == result and admin.get("arq:job:failed-1") is None
        assert admin.zcard("arq:queue") == 0
    finally:
        board.stop()
        broker.client.close()


@pytest.fixture
def cluster_node() -> Iterator[str]:
    """A one-node Redis Cluster of our own, serving every slot."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="callboard-cluster-")
    binary = SERVERS[PREFERRED]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", workdir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    # The cluster bus defaults to port + 10000, past 65535 for a high free port: name a free one.
    args += ["--cluster-port", str(free_port())]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: redis.Redis.from_url(url).ping(), timeout=30, what="cluster node")
        with redis.Redis.from_url(url) as client:
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            wait_until(lambda: client.cluster("info")["cluster_state"] == "ok", timeout=30, what="cluster ok")
            client.set("dramatiq:default.msgs", "x")  # a key of this node
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_a_cluster_node_is_reported_as_unsupported(cluster_node: str) -> None:
    collector = collector_for(cluster_node)
    try:
        with pytest.raises(ClusterUnsupported, match="cluster mode"):
            await collector.collect()
    finally:
        await collector.redis.aclose()
    board = Callboard([f"main={cluster_node}"]).start(poll_interval=0.2)
    try:

        def target() -> dict[str, Any]:
            status, text = board.get("/api/v1/queues")
            data: dict[str, Any] = json.loads(text)["targets"][0]
            return data

        wait_until(lambda: target()["error"], timeout=20, what="a collection error")
        found = target()
        assert found["up"] is False
        assert "cluster mode" in found["error"] and "not support" in found["error"]
        status, page = board.get("/")
        assert status == 200 and "cluster mode" in page
        status, metrics = board.get("/metrics")
        assert status == 200 and 'callboard_up{target="main"} 0.0' in metrics
    finally:
        board.stop()


def test_minimal_user_behind_serve_shows_queues(admin: redis.Redis, redis_server: RedisServer) -> None:
    """End to end: `callboard serve` with the documented read-only user is up and shows counts."""
    broker = seed(redis_server.url)
    url = add_user(admin, redis_server, "reader", *MINIMAL_READ)
    board = Callboard([f"main={url}"]).start(poll_interval=0.2)
    try:

        def dead() -> int | None:
            data = json.loads(board.get("/api/v1/queues")[1])
            row = next((q for q in data["queues"] if q["key"] == "dramatiq:default"), None)
            return row["counts"]["dead"] if row else None

        wait_until(lambda: dead() == 3, timeout=20, what="dead count 3 through a read-only user")
        first = json.loads(board.get("/api/v1/queues")[1])["targets"][0]["collected_at"]

        def later() -> dict[str, Any]:
            target: dict[str, Any] = json.loads(board.get("/api/v1/queues")[1])["targets"][0]
            return target

        # Five more polls (0.2 s each): the target stays up, no cycle failed (no flapping).
        wait_until(lambda: later()["collected_at"] >= first + 1.0, timeout=20, what="five more polls")
        assert later()["up"] is True and later()["errors_total"] == 0
    finally:
        board.stop()
        broker.client.close()


async def test_the_requeue_script_checks_its_acl_before_writing(
    admin: redis.Redis, redis_server: RedisServer
) -> None:
    """Redis checks a script's commands as they run: ZREM and HDEL allowed, HSET and RPUSH refused
    would drop a dead letter without requeuing it. The script's own check refuses before writing."""
    broker = seed(redis_server.url)
    url = add_user(admin, redis_server, "partial", *MINIMAL_READ, "+eval", "+zrem", "+hdel")
    before = dead_state(admin)
    ids = [r.decode() for r in cast(list[bytes], admin.zrange("dramatiq:default.XQ", 0, -1))]
    client = AsyncRedis.from_url(url)  # a plain client: only the script's own check is tested
    try:
        with pytest.raises(NoPermissionError, match="may not run HSET on dramatiq:default.msgs"):
            await dramatiq_controls.apply(client, QueueKeys("dramatiq", "default"), "dead", "retry", ids)
        assert dead_state(admin) == before
    finally:
        await client.aclose()
        broker.client.close()
