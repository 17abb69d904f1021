"""collectors/flow.py and the companion's recorder: the flow layout, written and read back."""

from __future__ import annotations

import json

import dramatiq

from callboard.collectors.flow import (
    BUCKETS,
    TOTAL_KEY,
    Series,
    bucket,
    field,
    hour_key,
    minute_key,
    parse_series,
    quantile,
    series_names,
    tallies,
)
from callboard.companion.recorder import Recorder

ODD = Series("dramatiq", "ns:with:colons", "q\nnewline", 'actor "quoted" \udcff')


def test_buckets_hold_their_upper_bound_and_everything_beyond_lands_in_the_last() -> None:
    assert bucket(0.0) == 0 and bucket(0.005) == 0 and bucket(0.0051) == 1
    assert bucket(1.0) == BUCKETS.index(1.0) and bucket(1e9) == len(BUCKETS) - 1


def test_any_name_round_trips_through_the_series_hash() -> None:
    assert field("d3", ODD) == f"d3:{ODD.id}" and len(ODD.id) == 12
    assert parse_series(ODD.encode()) == ODD
    for junk in ("", "not json", '["a", "b"]', "[1, 2, 3, 4]", "{}"):
        assert parse_series(junk) is None, junk


def test_the_recorder_adds_up_per_minute_hour_and_total_and_the_reader_reads_it_back() -> None:
    recorder = Recorder()
    at = 1_800_000_030.0  # 30 s into a minute
    for duration in (0.03, 0.04, 0.3):
        recorder.record(ODD, "succeeded", at, duration, wait=0.2)
    recorder.record(ODD, "failed", at, 0.03)
    recorder.record(ODD, "skipped", at)
    batch = recorder.take()
    assert batch.jobs == 5 and recorder.take().jobs == 0
    keys = {key for key, _, _ in batch.commands()}
    assert keys == {minute_key(30_000_000), hour_key(500_000), TOTAL_KEY}
    assert batch.expiring == {minute_key(30_000_000): 26 * 3600, hour_key(500_000): 8 * 86400}
    written = {name: amount for key, name, amount in batch.commands() if key == TOTAL_KEY}
    assert batch.names == {ODD.id: ODD.encode()}
    found, unknown = tallies(written, series_names(batch.names))
    [tally] = found.values()
    assert unknown == set()
    assert tally.outcomes == {"succeeded": 3, "failed": 1, "skipped": 1}
    assert tally.runs == 4 and tally.durations[bucket(0.03)] == 3 and tally.durations[bucket(0.3)] == 1
    assert sum(tally.waits) == 3 and round(tally.wait_sum, 6) == 0.6
    assert round(tally.duration_sum, 6) == 0.4


def test_a_lost_batch_is_counted_as_dropped() -> None:
    recorder = Recorder()
    recorder.record(ODD, "succeeded", 0.0, 0.01)
    recorder.lost(recorder.take())
    assert recorder.dropped == 1


def test_tallies_skip_what_is_not_ours_and_report_ids_they_cannot_name() -> None:
    other = Series("arq", "arq", "arq:queue", "f")
    fields = {field("s", ODD): b"2", "garbage": b"1", "zz:" + ODD.id: b"5", field("f", ODD): b"x"}
    fields[field("s", other)] = b"3"
    # An unknown stat and a count that is not a number add nothing; the series' real count stays;
    # the series the names do not know yet is reported, not guessed.
    found, unknown = tallies(fields, {ODD.id: ODD})
    assert {s: t.outcomes for s, t in found.items()} == {ODD: {"succeeded": 2}}
    assert unknown == {other.id}


def test_series_names_skip_entries_whose_id_is_not_their_hash() -> None:
    other = Series("arq", "arq", "arq:queue", "f")
    names = series_names({ODD.id: ODD.encode(), "aaaaaaaaaaaa": other.encode(), other.id: "not json"})
    assert names == {ODD.id: ODD}


def test_quantiles_are_bucket_upper_bounds() -> None:
    counts = [0] * len(BUCKETS)
    assert quantile(counts, 0.5) is None
    counts[bucket(0.03)], counts[bucket(0.3)] = 95, 5
    assert quantile(counts, 0.5) == 0.05 and quantile(counts, 0.95) == 0.05 and quantile(counts, 0.99) == 0.5


def test_the_dramatiq_companion_records_only_the_queues_it_is_given() -> None:
    from callboard.companion.dramatiq import FlowMiddleware

    middleware = FlowMiddleware(queues=("default",))
    for queue in ("default", "default.DQ", "reports"):
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=queue, actor_name="work", args=(), kwargs={}, options={}
        )
        middleware.before_process_message(None, message)
        middleware.after_process_message(None, message)
        middleware.after_ack(None, message)
        middleware.after_skip_message(None, message)
    batch = middleware.recorder.take()
    # default and its delay queue: a success and a skip each; reports: nothing.
    assert batch.jobs == 4
    assert {json.loads(v)[2] for v in batch.names.values()} == {"default"}
