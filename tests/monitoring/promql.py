"""Just enough PromQL reading for the contract tests: which metrics an expression selects, and with which
label matchers. A lexer-level reading, not a parser: the live test runs every expression through a real
Prometheus, which catches what this misses (syntax errors, empty results).
"""

from __future__ import annotations

import re

#: Grafana's built-in variables, as the live test substitutes them (windows long enough for 1 s scrapes).
GRAFANA_BUILTINS = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range_s": "3600",
    "$__range": "1h",
}

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"offset", "bool", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*(\w+)\s*\)\s*$", re.S)


def substitute(expr: str, value: str = ".+") -> str:
    """Grafana's expansion: built-ins by fixed windows, every template variable by `value`."""
    for name, replacement in GRAFANA_BUILTINS.items():
        expr = expr.replace(name, replacement)
    return _VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and numbers left out)."""
    text = _STRING.sub('""', substitute(expr))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # the exponent or unit of a number: 1e3, 5m
            continue
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword, a function or an aggregation
        names.add(word)
    return names


def matcher_labels(expr: str) -> dict[str, set[str]]:
    """metric name -> the label names its `{…}` matchers use, for every `name{…}` in the expression."""
    out: dict[str, set[str]] = {}
    for name, body in _SELECTOR.findall(_STRING.sub(_blank, expr)):
        labels = {label for label in _MATCHER_LABEL.findall(_STRING.sub('""', body)) if label != "__name__"}
        out.setdefault(name, set()).update(labels)
    return out


def _blank(match: re.Match[str]) -> str:
    # Keeps the quotes' positions (so `{…}` bodies stay intact) without braces hiding inside strings.
    return '"' + "x" * (len(match.group(0)) - 2) + '"'


def label_values(query: str) -> tuple[str, str] | None:
    """(selector, label) of a Grafana `label_values(selector, label)` variable query, else None."""
    match = _LABEL_VALUES.match(query)
    return (match.group(1), match.group(2)) if match else None
