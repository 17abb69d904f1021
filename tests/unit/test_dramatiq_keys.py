"""Dramatiq key names: classification of SCANned keys, queue keys, and result keys as Dramatiq builds them."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.results.backends.redis import RedisBackend

from callboard.collectors.dramatiq.codec import runnable_since
from callboard.collectors.dramatiq.config import ResultsConfig
from callboard.collectors.dramatiq.keys import (
    AckKey,
    QueueKeys,
    acks_key,
    classify,
    heartbeats_key,
    queue_keys,
    result_key,
)
from callboard.collectors.model import Undecodable

WORKER = str(uuid.UUID(int=7))


@pytest.mark.parametrize("namespace", ["dramatiq", "acme-tasks", "app:dramatiq", "x"])
@pytest.mark.parametrize("queue", ["default", "emails", "my.queue", "a_b-c.d", "_private", "Q9"])
def test_every_per_queue_key_classifies_to_its_queue(namespace: str, queue: str) -> None:
    q = QueueKeys(namespace, queue)
    assert q.ready == f"{namespace}:{queue}"
    for key in (q.msgs, q.delay, q.delay_msgs, q.dead, q.dead_msgs):
        assert classify(key) == ("queue", q.ready, None), key
    assert queue_keys(q.ready) == q


@pytest.mark.parametrize("namespace", ["dramatiq", "acme-tasks", "app:dramatiq"])
@pytest.mark.parametrize("queue", ["default", "my.queue"])
@pytest.mark.parametrize("delayed", [False, True])
def test_ack_sets_classify_to_worker_and_canonical_queue(namespace: str, queue: str, delayed: bool) -> None:
    key = acks_key(namespace, WORKER, queue + (".DQ" if delayed else ""))
    assert key == f"{namespace}:__acks__.{WORKER}.{queue}" + (".DQ" if delayed else "")
    kind, name, ack = classify(key)
    assert (kind, name) == ("acks", namespace)
    assert ack == AckKey(namespace, WORKER, queue, delayed)
    assert ack.key == key


@pytest.mark.parametrize("namespace", ["dramatiq", "acme-tasks", "app:dramatiq"])
def test_heartbeats_key(namespace: str) -> None:
    key = heartbeats_key(namespace)
    assert key == f"{namespace}:__heartbeats__"
    assert classify(key) == ("heartbeats", namespace, None)


@pytest.mark.parametrize(
    "key",
    [
        "session:abc",
        "default.msgs",  # no namespace
        ":default.msgs",  # empty namespace
        "dramatiq:bad name.msgs",  # not a Dramatiq queue name
        "dramatiq:9lives.msgs",  # must start with a letter or underscore
        "dramatiq:.msgs",
        "dramatiq:__acks__.nodot",  # ack set without a queue
        "dramatiq:__acks__." + WORKER + ".",
        "0cc175b9c0f1b6a831c399e269772661",  # a default (MD5) result key
        "celery-task-meta-1",
        "arq:queue",
        "",
    ],
)
def test_keys_that_are_not_dramatiq_queues_are_ignored(key: str) -> None:
    assert classify(key) == ("", None, None)


@pytest.mark.parametrize(
    "name", ["default", "my.queue", "a-b_c", "_x", "Q1", "bad name", "9lives", "é", "a b"]
)
def test_queue_name_rule_matches_dramatiq(name: str) -> None:
    """A queue Dramatiq accepts is found by discovery; one it refuses is never a queue."""
    broker = StubBroker()
    try:
        dramatiq.actor(broker=broker, queue_name=name, actor_name="a")(lambda: None)
        accepted = True
    except ValueError:
        accepted = False
    classified = classify(f"dramatiq:{name}.msgs")[0] == "queue"
    assert classified == accepted


@pytest.mark.parametrize(
    "key", ["dramatiq", "dramatiq:", ":default", "dramatiq:default.DQ", "dramatiq:default.XQ", "dramatiq:b c"]
)
def test_queue_keys_rejects_non_queue_keys(key: str) -> None:
    assert queue_keys(key) is None


def test_queue_keys_splits_on_the_last_colon() -> None:
    assert queue_keys("app:dramatiq:default") == QueueKeys("app:dramatiq", "default")


# -- result keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["dramatiq-results", "custom-results", "a:b"])
@pytest.mark.parametrize("prefix_keys", [False, True])
@pytest.mark.parametrize("queue_name", ["default", "default.DQ", "my.queue", "my.queue.DQ"])
def test_result_key_matches_dramatiq_redis_backend(
    namespace: str, prefix_keys: bool, queue_name: str
) -> None:
    backend = RedisBackend(  # type: ignore[no-untyped-call]
        namespace=namespace, use_namespace_prefix_keys=prefix_keys, url="redis://127.0.0.1:1/0"
    )
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name="compute_total", args=(1,), kwargs={}, options={}
    )
    expected = backend.build_message_key(message)
    config = ResultsConfig(namespace=namespace, prefix_keys=prefix_keys)
    assert result_key(config, queue_name, "compute_total", message.message_id) == expected
    if prefix_keys:
        assert expected == f"{namespace}:{queue_name.removesuffix('.DQ')}:compute_total:{message.message_id}"
    else:
        assert len(expected) == 32
        assert int(expected, 16) >= 0


def test_default_results_config_is_dramatiq_default() -> None:
    backend = RedisBackend(url="redis://127.0.0.1:1/0")  # type: ignore[no-untyped-call]
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="default", actor_name="a", args=(), kwargs={}, options={}
    )
    assert result_key(ResultsConfig(), "default", "a", message.message_id) == backend.build_message_key(
        message
    )


# -- when a ready message became runnable ------------------------------------------------------------


def test_runnable_since_uses_the_latest_known_time() -> None:
    assert runnable_since({"message_timestamp": 1_000_000}) == 1000.0
    retried = {"message_timestamp": 1_000_000, "options": {"requeue_timestamp": 1_005_000, "retries": 1}}
    assert runnable_since(retried) == 1005.0
    eta = {"message_timestamp": 1_000_000, "options": {"eta": 1_060_000}}
    assert runnable_since(eta) == 1060.0
    assert runnable_since({}) is None
    assert runnable_since({"options": "junk", "message_timestamp": "junk"}) is None
    assert runnable_since(Undecodable("x", 0, "")) is None
