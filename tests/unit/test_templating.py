"""dashboard.templating: the Jinja filters every page prints through, the static URLs, the environment."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from markupsafe import Markup

import callboard
from callboard.dashboard import urls
from callboard.dashboard.templating import (
    ago,
    asset_dir,
    bytes_,
    compact,
    duration,
    make_templates,
    pretty,
    printable,
    static,
    when,
)

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (None, "—"),
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (KIB, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (KIB * 1023, "1023.0 KiB"),
        # 1.9 MiB: dividing with int() at each step used to show "1.0 MiB" (1945 KiB -> 1 MiB).
        (int(1.9 * MIB), "1.9 MiB"),
        (MIB - 1, "1.0 MiB"),  # 1023.999 KiB rounds to the next unit, never to "1024.0 KiB"
        (MIB, "1.0 MiB"),
        (GIB - 1, "1.0 GiB"),
        (GIB, "1.0 GiB"),
        (int(7.3 * GIB), "7.3 GiB"),
        (TIB - 1, "1.0 TiB"),
        (TIB, "1.0 TiB"),
        (int(1.9 * TIB), "1.9 TiB"),
        (1024 * TIB, "1024.0 TiB"),  # TiB is the largest unit
    ],
)
def test_bytes_is_exact_in_binary_units(n: int | None, shown: str) -> None:
    assert bytes_(n) == shown


def test_bytes_below_one_kib_are_whole_bytes() -> None:
    assert [bytes_(n) for n in (5, 512, 1000)] == ["5 B", "512 B", "1000 B"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "—"),
        (0, "0 s"),
        (0.0004, "0 s"),
        (-3, "0 s"),  # a deadline just passed (failures page: next expiry - now)
        (0.001, "1 ms"),
        (0.25, "250 ms"),
        (0.9996, "999 ms"),  # rounded, but never up to "1000 ms"
        (1, "1.0 s"),
        (2.345, "2.3 s"),
        (9.96, "9.9 s"),  # never "10.0 s"
        (10, "10 s"),
        (42.4, "42 s"),
        (59.7, "59 s"),  # never "60 s"
        (60, "1 min 0 s"),
        (90, "1 min 30 s"),
        (3599.9, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (5400, "1 h 30 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d 0 h"),
        (200_000, "2 d 7 h"),
    ],
)
def test_duration(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        (None, "—"),
        (NOW, "0 s ago"),
        (NOW - 5, "5.0 s ago"),
        (NOW - 90, "1 min 30 s ago"),
        (NOW - 2 * 86400 - 3 * 3600, "2 d 3 h ago"),
        (NOW + 30, "in 30 s"),
        (NOW + 3600, "in 1 h 0 min"),
    ],
)
def test_ago_with_a_fixed_now(ts: float | None, shown: str) -> None:
    assert ago(ts, now=NOW) == shown


def test_ago_takes_a_now_of_zero_as_given() -> None:
    """`now` is a time, not a flag: 0 (the epoch) must not be replaced by the clock."""
    assert ago(-60, now=0.0) == "1 min 0 s ago"
    assert ago(60, now=0.0) == "in 1 min 0 s"


def test_when_is_utc() -> None:
    assert when(None) == "—"
    assert when(0) == "1970-01-01 00:00:00 UTC"
    assert when(NOW + 0.9) == "2023-11-14 22:13:20 UTC"


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (None, "—"),
        (0, "0"),
        (9_999, "9,999"),
        (10_000, "10.0k"),
        (-25_000, "-25.0k"),
        (999_949, "999.9k"),
        (999_999, "1.0M"),  # not "1000.0k"
        (1_234_567, "1.2M"),
        (999_999_999, "1.0G"),
        (3_200_000_000, "3.2G"),
    ],
)
def test_compact(n: int | None, shown: str) -> None:
    assert compact(n) == shown


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


def test_pretty_is_indented_json_in_the_given_order_with_unicode_kept() -> None:
    assert pretty({"b": 1, "a": ["é", None]}) == '{\n  "b": 1,\n  "a": [\n    "é",\n    null\n  ]\n}'


def test_pretty_falls_back_to_repr() -> None:
    assert pretty({"x": Opaque()}) == '{\n  "x": "<Opaque>"\n}'  # a value JSON cannot hold
    circular: list[Any] = []
    circular.append(circular)
    assert pretty(circular) == "[[...]]"  # JSON refuses a cycle; the page still shows something


def test_printable_escapes_lone_surrogates_and_leaves_everything_else() -> None:
    assert printable("file-\udcff.txt") == "file-\\udcff.txt"
    assert printable("\ud800") == "\\ud800"
    fine = "naïve ✓"
    assert printable(fine) is fine
    assert printable(None) is None
    assert printable(3) == 3 and printable(2.5) == 2.5
    markup = printable(Markup("<b>\udcff</b>"))
    assert isinstance(markup, Markup) and markup == Markup("<b>\\udcff</b>")

    class Named:
        def __str__(self) -> str:
            return "id-\udc80"

    assert printable(Named()) == "id-\\udc80"


def test_static_urls_carry_the_content_hash() -> None:
    for name in ("app.css", "app.js"):
        digest = hashlib.sha256((asset_dir("static") / name).read_bytes()).hexdigest()[:10]
        assert static(name) == f"/static/{name}?v={digest}"
    assert static("no-such-file.js") == "/static/no-such-file.js?v=missing"


FILTERS = {
    "ago": ago,
    "duration": duration,
    "when": when,
    "compact": compact,
    "pretty": pretty,
    "bytes": bytes_,
    "segment": urls.segment,
}


def test_make_templates_registers_every_filter() -> None:
    env = make_templates().env
    assert {name: env.filters[name] for name in FILTERS} == FILTERS
    assert env.globals["static"] is static
    assert all(env.globals[name] is builder for name, builder in urls.BUILDERS.items())
    assert env.finalize is printable


def render(source: str, **context: Any) -> str:
    return make_templates().env.from_string(source).render(**context)


def test_templates_print_through_the_filters() -> None:
    shown = render(
        "{{ n | bytes }}|{{ s | duration }}|{{ ts | ago(now) }}|{{ c | compact }}|{{ name | segment }}",
        n=int(1.9 * MIB),
        s=90,
        ts=NOW - 5,
        now=NOW,
        c=12_345,
        name="a/b",
    )
    assert shown == "1.9 MiB|1 min 30 s|5.0 s ago|12.3k|a%2Fb"


def test_templates_escape_and_survive_lone_surrogates() -> None:
    shown = render("{{ name }} {{ static('app.css') }}", name="<x>\udcff")
    assert shown.startswith("&lt;x&gt;\\udcff /static/app.css?v=")
    assert re.fullmatch(r".*\?v=[0-9a-f]{10}", shown)
    shown.encode("utf-8")  # the page encodes: a raw surrogate would raise here


def test_asset_dir_is_beside_the_package() -> None:
    assert asset_dir("templates") == callboard.ROOT / "templates"
    assert (asset_dir("templates") / "base.html").is_file()
