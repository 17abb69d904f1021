"""dashboard.words: one plural helper, one place for state names and colours, one name per control,
and the templates and script that use them (no count meets a noun any other way)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callboard.collectors import backends
from callboard.collectors.model import QUEUE_STATES, DiscoveryStatus, Framework, QueueStats, TargetSnapshot
from callboard.dashboard.store import TargetState
from callboard.dashboard.templating import make_templates
from callboard.dashboard.views import _history_series
from callboard.dashboard.words import (
    STATE_LABELS,
    STATE_STYLES,
    TONES,
    action_label,
    noun,
    plural,
    sentence,
    state_class,
    state_label,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("n", "one", "many", "text"),
    [
        (1, "dead letter", None, "1 dead letter"),
        (0, "dead letter", None, "0 dead letters"),
        (2, "dead letter", None, "2 dead letters"),
        (1204, "dead letter", None, "1,204 dead letters"),
        (1, "match", "matches", "1 match"),
        (0, "match", "matches", "0 matches"),
        (1, "dead message", "dead messages", "1 dead message"),
        (None, "queue", None, "— queues"),
    ],
)
def test_plural_puts_the_count_with_the_noun_that_agrees(
    n: int | None, one: str, many: str | None, text: str
) -> None:
    assert plural(n, one, many) == text


def test_noun_alone_is_for_a_number_shown_apart() -> None:
    assert [noun(n, "match", "matches") for n in (0, 1, 2)] == ["matches", "match", "matches"]


@pytest.mark.parametrize(
    ("text", "ended"),
    [
        (
            "Error 111 connecting to 127.0.0.1:6391. Connection refused.",
            "Error 111 connecting to 127.0.0.1:6391. Connection refused.",
        ),
        ("Connect call failed ('127.0.0.1', 6391).", "Connect call failed ('127.0.0.1', 6391)."),
        ("timed out waiting for Redis", "timed out waiting for Redis."),
        ("odd..  ", "odd."),
        (None, ""),
    ],
)
def test_sentence_ends_with_one_full_stop(text: str | None, ended: str) -> None:
    assert sentence(text) == ended


def test_every_state_a_page_or_chart_names_has_one_style() -> None:
    named = {s for kind in backends.KINDS.values() for s in kind.states}
    named |= {s for states in QUEUE_STATES.values() for s in states}
    assert named <= set(STATE_STYLES)
    assert {s: style.label for s, style in STATE_STYLES.items()} == STATE_LABELS


@pytest.mark.parametrize(
    ("dramatiq", "arq"),
    [("in_flight", "in_progress"), ("delayed", "deferred"), ("dead", "failed")],
)
def test_states_that_mean_the_same_in_both_frameworks_share_a_colour(dramatiq: str, arq: str) -> None:
    # Arq's Failed badge was grey where Dramatiq's Dead was red; Deferred and In progress swapped colours.
    assert STATE_STYLES[dramatiq].tone == STATE_STYLES[arq].tone
    assert state_class(dramatiq) == state_class(arq) == f"tone-{STATE_STYLES[arq].tone}"


def test_every_tone_has_its_class_and_variable_in_the_stylesheet() -> None:
    css = (REPO / "static" / "app.css").read_text()
    for tone in TONES:
        assert re.search(rf"--state-{tone}:", css), tone
        assert re.search(rf"\.tone-{tone} \{{[^}}]*--tone: var\(--state-{tone}\)", css), tone


def test_an_unknown_state_has_no_colour_and_reads_as_it_is() -> None:
    assert state_class("orphaned") == ""
    assert state_label("some_state") == "some state"
    assert state_label("deferred") == "Deferred"


def test_the_chart_colours_each_state_as_its_tab() -> None:
    """The depth chart's series carry their state's tone in QUEUE_STATES order: Arq's Deferred is
    drawn in the colour of its tab, not in In progress's."""
    stats = QueueStats(Framework.ARQ, "arq", "arq:queue", "arq:queue", {"ready": 1}, 0.0)
    series = _history_series([(1.0, {"ready": 1, "deferred": 2, "in_progress": 3})], stats)
    assert series["labels"] == ["Ready", "Deferred", "In progress"]
    assert series["tones"] == [STATE_STYLES[s].tone for s in ("ready", "deferred", "in_progress")]
    assert series["data"] == [[1.0], [1], [2], [3]]


@pytest.mark.parametrize(
    ("state", "action", "label"),
    [
        ("dead", "retry", "Requeue"),
        ("delayed", "retry", "Run now"),
        ("failed", "retry", "Re-run"),
        ("succeeded", "retry", "Re-run"),
        ("dead", "delete", "Delete"),
        ("failed", "delete", "Delete result"),
        ("in_progress", "abort", "Abort"),
        ("orphaned", "recover", "Recover"),
        ("", "purge", "Purge"),
    ],
)
def test_a_control_has_one_name(state: str, action: str, label: str) -> None:
    assert action_label(state, action) == label


def test_every_control_a_backend_offers_is_named_after_its_words() -> None:
    # The failures page's group buttons say the backend's own retry word; the queue page's say
    # action_label: both must agree, and so must the audit log, which uses action_label.
    for kind in backends.KINDS.values():
        assert action_label(kind.failed_state, "retry") == kind.words.retry


# -- templates and script: no hand-made plurals, no ad hoc state colours ------------------------------

#: A plural made by hand ('s' if ...), or a printed value followed by a plural noun ("{{ n }} dead letters").
HAND_MADE_PLURAL = re.compile(
    r"""'s' if|"s" if|'' if [^}]*== ?1 else 's'|'es'|n === 1 \? ""|"""
    r"""\}\} (?!(?:this|is|was|has|its|of)\b)(?:[a-z]+ )?[a-z]{2,}s\b"""
)


def _files() -> list[Path]:
    return [*sorted((REPO / "templates").rglob("*.html")), REPO / "static" / "app.js"]


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(REPO)))
def test_counts_meet_nouns_only_through_plural(path: Path) -> None:
    found = [
        f"{i}: {line.strip()[:120]}"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if HAND_MADE_PLURAL.search(line)
    ]
    assert found == []


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(REPO)))
def test_state_colours_come_from_state_class(path: Path) -> None:
    assert "'state-' ~" not in path.read_text() and "state-{{" not in path.read_text()


# -- rendered words -----------------------------------------------------------------------------------

NOW = 1_800_000_000.0


def down(name: str = "127.0.0.1:6391/0", snapshot: bool = False) -> TargetState:
    snap = None
    if snapshot:
        snap = TargetSnapshot(
            target=name, collected_at=NOW - 60, duration=0.001, server=None, queues=(), workers=(),
            discovery=DiscoveryStatus(complete=True, scanned_in_pass=0, passes=1, last_pass_at=None),
            round_trips=1,
        )  # fmt: skip
    return TargetState(
        name,
        "redis://127.0.0.1:6391/0",
        up=False,
        snapshot=snap,
        error="ConnectionError: Error 111 connecting to 127.0.0.1:6391. Connect call failed ('127.0.0.1', 6391).",  # noqa: E501
        errors_total=3,
        last_attempt_at=NOW,
        down_since=NOW - 5,
    )


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def test_the_banner_names_the_target_since_when_and_why_in_sentences() -> None:
    env = make_templates().env
    for target in (down(), down(snapshot=True)):
        shown = text(env.get_template("partials/banner.html").render(targets=[target], poll_ms=2000, now=NOW))
        assert "Redis target “127.0.0.1:6391/0” is unreachable" in shown
        assert "down since 2027-01-15 07:59:55 UTC (5.0 s ago)" in shown
        assert ".." not in shown and "ago.Figures" not in shown  # "6391).." and "ago.Figures" before
    assert "Figures below are as of 1 min 0 s ago. Retrying every 2.0 s." in shown


def test_a_target_not_read_yet_is_not_called_unreachable() -> None:
    env = make_templates().env
    connecting = TargetState("main", "redis://h:1/0")
    assert (
        text(env.get_template("partials/banner.html").render(targets=[connecting], poll_ms=2000, now=NOW))
        == ""
    )


def test_an_empty_state_names_what_is_missing_instead_of_claiming_nothing_exists() -> None:
    env = make_templates().env
    macro = env.get_template("macros/ui.html").module.empty_row  # type: ignore[attr-defined]
    target = down()
    blind = text(str(macro(3, "No worker heartbeats.", [target], True, NOW, ", so its workers are unknown")))
    assert blind == (
        "Nothing to show: Redis target “127.0.0.1:6391/0” is unreachable, down since 2027-01-15 07:59:55 UTC "
        "(5.0 s ago), so its workers are unknown."
    )
    partial = text(
        str(macro(3, "No worker heartbeats.", [target], False, NOW, ", so its workers are unknown"))
    )
    assert partial.startswith("No worker heartbeats. Redis target “127.0.0.1:6391/0” is unreachable")
    assert text(str(macro(3, "No worker heartbeats.", [], False, NOW))) == "No worker heartbeats."
