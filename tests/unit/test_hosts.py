"""The hosts Callboard answers under, and the parsing of Host and Origin (dashboard/hosts.py).

DNS rebinding is stopped here or nowhere: each case is a name a rebinding page could send, or one a
real deployment sends and must keep working. tests/hostile/test_host.py sends the same over HTTP.
"""

from __future__ import annotations

import pytest

from callboard.dashboard.hosts import AllowedHosts, normalise_entry, origin_parts, split_host


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("Example.COM:8080", ("example.com", 8080)),
        ("  localhost  ", ("localhost", None)),
        ("localhost.:8000", ("localhost", 8000)),  # the trailing dot names the same host
        ("my_host-1.internal", ("my_host-1.internal", None)),
        ("host:0", ("host", 0)),
        ("host:65535", ("host", 65535)),
        ("[::1]:8000", ("::1", 8000)),
        ("[0:0:0:0:0:0:0:1]", ("::1", None)),  # IPv6 compressed, as an entry is
        ("[FE80::1]", ("fe80::1", None)),
    ],
)
def test_split_host_reads_host_and_port(value: str, parsed: tuple[str, int | None]) -> None:
    assert split_host(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "",
        ":8000",  # no host
        "host:",  # a colon and no port
        "host:65536",
        "host:99999",
        "host:-1",
        "host:80a",
        "a b",
        "a/b",
        "user@host",
        "h\u00e9te",  # not ASCII
        "[::1",  # no closing bracket
        "[::1]8000",  # no colon before the port
        "[::1]:",
        "[not-v6]:80",
        "[127.0.0.1]",  # brackets hold IPv6 only
    ],
)
def test_split_host_refuses_what_is_not_a_host(value: str) -> None:
    assert split_host(value) is None


@pytest.mark.parametrize(
    ("origin", "parts"),
    [
        ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000)),
        ("HTTPS://Ops.Example.com", ("https", "ops.example.com", 443)),
        ("http://board", ("http", "board", 80)),
        ("https://[::1]:8443", ("https", "::1", 8443)),
    ],
)
def test_origin_parts_fill_in_default_ports(origin: str, parts: tuple[str, str, int]) -> None:
    assert origin_parts(origin) == parts


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "ftp://board",
        "http://",
        "http://board/",
        "http://board?x=1",
        "http://board#top",
        "http://user@board",
        "http://[::1",  # urlsplit itself refuses it
        "http://board:99999",
    ],
)
def test_origin_parts_refuse_what_is_not_an_origin(origin: str) -> None:
    assert origin_parts(origin) is None


def test_the_server_allows_loopback_names_and_a_specific_bind_address() -> None:
    assert AllowedHosts.for_server((), "127.0.0.1").entries == ("localhost", "*.localhost", "127.0.0.1")
    assert AllowedHosts.for_server((), "[::1]").entries == ("localhost", "*.localhost", "::1")
    assert AllowedHosts.for_server((), "Board.Example").entries == (
        "localhost",
        "*.localhost",
        "board.example",
    )
    # Every address (0.0.0.0, ::) is no name a browser sends; nor is a socket path.
    for bind in ("0.0.0.0", "::", "[::]", "/run/callboard.sock"):
        assert AllowedHosts.for_server((), bind).entries == ("localhost", "*.localhost"), bind
    extra = ("Ops.Example.com", "ops.example.com", "*.Corp.Example")
    assert AllowedHosts.for_server(extra, "0.0.0.0").entries == (
        "localhost",
        "*.localhost",
        "ops.example.com",
        "*.corp.example",
    )


def test_allows_exact_names_subdomains_of_wildcards_and_any_loopback_address() -> None:
    hosts = AllowedHosts.for_server(("ops.example.com", "*.corp.example", "10.0.0.5"), "0.0.0.0")
    assert not hosts.anything
    for host in ("ops.example.com", "a.corp.example", "a.b.corp.example", "10.0.0.5", "localhost"):
        assert hosts.allows(host), host
    for host in ("127.0.0.1", "127.9.9.9", "::1", "board.localhost"):
        assert hosts.allows(host), host
    for host in (
        "example.com",
        "evil.ops.example.com",
        "ops.example.com.evil",
        "corp.example",  # a wildcard is subdomains only
        "evilcorp.example",  # ... and needs the dot
        "localhost.evil",
        "10.0.0.6",
        "0.0.0.0",
    ):
        assert not hosts.allows(host), host
    assert not AllowedHosts().allows("localhost")  # loopback names come from for_server
    assert AllowedHosts().allows("127.0.0.1")  # a loopback address cannot be rebound


def test_a_star_allows_anything() -> None:
    hosts = AllowedHosts.for_server(("*",), "0.0.0.0")
    assert hosts.anything and hosts.allows("whatever.example") and hosts.allows("10.1.2.3")


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        (" Ops.Example.COM. ", "ops.example.com"),
        ("*", "*"),
        ("*.Corp.Example", "*.corp.example"),
        ("[FE80::1]", "fe80::1"),
        ("fe80:0:0::1", "fe80::1"),
        ("10.0.0.5", "10.0.0.5"),
    ],
)
def test_entries_are_normalised(entry: str, normalised: str) -> None:
    assert normalise_entry(entry) == normalised


@pytest.mark.parametrize(
    "entry", ["", "http://ops.example.com", "ops.example.com:8000", "*.", "*.*.example", "a/b", "*.10.0.0.1"]
)
def test_entries_that_are_no_host_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="is not a host name or address"):
        normalise_entry(entry)
