"""The words and colours pages share: state names and colours, control labels, and plurals.

Tabs, badges, counts and charts all name and colour a state from STATE_STYLES, so Arq's "Deferred"
cannot be purple in a tab and amber in the chart; controls, their confirmations and the audit log all
name an action with `action_label`; every count that meets a noun goes through `plural`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StateStyle:
    #: The name tabs, badges and chart legends show.
    label: str
    #: The colour: CSS class `tone-<tone>` and variable `--state-<tone>` (static/app.css). States that
    #: mean the same thing in both frameworks share one (Dramatiq's dead letters, Arq's failed results).
    tone: str


#: Every state a page, chart or control names, in both frameworks.
STATE_STYLES: dict[str, StateStyle] = {
    "ready": StateStyle("Ready", "ready"),
    "in_flight": StateStyle("In flight", "running"),
    "in_progress": StateStyle("In progress", "running"),
    "delayed": StateStyle("Delayed", "waiting"),
    "deferred": StateStyle("Deferred", "waiting"),
    "dead": StateStyle("Dead", "failed"),
    "failed": StateStyle("Failed", "failed"),
    "succeeded": StateStyle("Succeeded", "done"),
}

#: Every tone of STATE_STYLES (static/app.css defines a class and a variable for each).
TONES: tuple[str, ...] = tuple(dict.fromkeys(s.tone for s in STATE_STYLES.values()))

#: A state's name by state: what templates call `state_labels`.
STATE_LABELS: dict[str, str] = {state: style.label for state, style in STATE_STYLES.items()}


def state_class(state: str) -> str:
    """The CSS class that colours `state` (`tone-failed`); "" for a state no style names."""
    style = STATE_STYLES.get(state)
    return f"tone-{style.tone}" if style else ""


def state_label(state: str) -> str:
    """The name of `state`; an unknown state (from Redis) as it is, underscores as spaces."""
    style = STATE_STYLES.get(state)
    return style.label if style else state.replace("_", " ")


#: The label of a retry by the state it acts on: what the button says, and so the audit log.
_RETRY = {"dead": "Requeue", "delayed": "Run now", "failed": "Re-run", "succeeded": "Re-run"}


def action_label(state: str, action: str) -> str:
    """What a control is called on jobs in `state`: its button, its confirmation, its audit row."""
    if action == "retry":
        return _RETRY.get(state, "Retry")
    if action == "delete":
        return "Delete result" if state in ("failed", "succeeded") else "Delete"
    if action == "recover":
        return "Recover"
    if action == "abort":
        return "Abort"
    return action.replace("_", " ").capitalize()


def noun(n: int | float | None, one: str, many: str | None = None) -> str:
    """`one` when `n` is 1, else `many` (by default `one` + "s"): for a number shown apart."""
    return one if n == 1 else (many if many is not None else one + "s")


def plural(n: int | float | None, one: str, many: str | None = None) -> str:
    """`n` and its noun: "1 dead letter", "1,204 dead letters", "0 matches" (`many` = "matches")."""
    number = "—" if n is None else f"{n:,}"
    return f"{number} {noun(n, one, many)}"


def sentence(text: str | None) -> str:
    """`text` ended by one full stop: a Redis error that ends in "." gets no second one."""
    stripped = (text or "").strip().rstrip(".").rstrip()
    return stripped + "." if stripped else ""
