"""Dramatiq's flow estimate: dead letters counted per minute of arrival, queue and actor, once each."""

from __future__ import annotations

from callboard.collectors.dramatiq.deadletters import DeadArrivals
from callboard.collectors.flow import Series, quantile

MINUTE = 29_000_000  # an epoch minute
AT = MINUTE * 60.0


def failed(arrivals: DeadArrivals, since: int = 0) -> dict[int, dict[Series, dict[str, int]]]:
    return {m: {s: t.outcomes for s, t in tallies.items()} for m, tallies in arrivals.since(since).items()}


def test_letters_count_in_the_minute_of_their_score_per_queue_and_actor() -> None:
    arrivals = DeadArrivals(oldest=MINUTE - 59)
    for i in range(3):
        assert arrivals.add(f"a{i}", AT + i, "dramatiq", "default", "charge")
    assert arrivals.add("b", AT + 59.999, "dramatiq", "emails", "charge")  # another queue
    assert arrivals.add("c", AT + 60.0, "dramatiq", "default", "charge")  # the next minute
    assert arrivals.add("d", AT + 1, "other", "default", "send")  # another namespace and actor
    charge = Series("dramatiq", "dramatiq", "default", "charge")
    assert failed(arrivals) == {
        MINUTE: {
            charge: {"failed": 3},
            Series("dramatiq", "dramatiq", "emails", "charge"): {"failed": 1},
            Series("dramatiq", "other", "default", "send"): {"failed": 1},
        },
        MINUTE + 1: {charge: {"failed": 1}},
    }
    assert list(arrivals.since(MINUTE + 1)) == [MINUTE + 1]
    # Failures only: no run or wait times, so every quantile is unknown (the page shows "—").
    tally = arrivals.since(MINUTE)[MINUTE][charge]
    assert tally.runs == 0 and quantile(tally.durations, 0.95) is None and quantile(tally.waits, 0.95) is None


def test_a_letter_read_again_counts_once_and_one_older_than_the_window_not_at_all() -> None:
    arrivals = DeadArrivals(oldest=MINUTE)
    assert arrivals.add("a", AT + 5, "dramatiq", "default", "charge")
    # Read again (a control took it out of the failure groups by a wrong guess; the reader re-walked).
    assert not arrivals.add("a", AT + 5, "dramatiq", "default", "charge")
    assert not arrivals.add("old", AT - 0.001, "dramatiq", "default", "charge")
    assert failed(arrivals) == {MINUTE: {Series("dramatiq", "dramatiq", "default", "charge"): {"failed": 1}}}


def test_the_window_moving_on_forgets_old_minutes_and_their_rids() -> None:
    arrivals = DeadArrivals(oldest=MINUTE)
    arrivals.add("a", AT, "dramatiq", "default", "charge")
    arrivals.add("b", AT + 60, "dramatiq", "default", "charge")
    arrivals.prune(MINUTE + 1)
    assert list(arrivals.counts) == [MINUTE + 1] and list(arrivals.seen) == [MINUTE + 1]
    assert not arrivals.add("late", AT + 30, "dramatiq", "default", "charge")  # its minute has left
    assert list(failed(arrivals)) == [MINUTE + 1]
