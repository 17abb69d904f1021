"""The host names Callboard answers under (against DNS rebinding), and parsing of Host and Origin.

DNS rebinding: a page on `rebind.example` whose name then resolves to 127.0.0.1 is, to the browser,
the same origin as the dashboard it reaches: it may read pages and POST controls, and `Sec-Fetch-Site`
says `same-origin`. Only the `Host` header gives it away, so a request is served only when its Host is
one Callboard was told it serves under. IP literals cannot be rebound, but are listed too (the bind
address is added by default). Entries:
- `localhost`, `ops.example.com`, `10.0.0.5`, `::1`: that exact host (case-insensitive, no port);
- `*.example.com`: any subdomain of example.com (not example.com itself);
- `*`: any host (an explicit choice, e.g. behind a proxy that checks Host itself).
Matching costs O(entries) string compares per request; there are a handful.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Loopback names every Callboard accepts (with any 127.0.0.0/8 address and ::1): browsers resolve
#: `localhost` and `*.localhost` to loopback themselves, so they cannot be rebound.
LOOPBACK_NAMES = ("localhost", "*.localhost")
DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str) -> tuple[str, int | None] | None:
    """`host[:port]` from a Host header (or an Origin's netloc): lower-case host without brackets or a
    trailing dot (IPv6 in its compressed form), and the port; None when it is not a well-formed host."""
    value = value.strip().lower()
    if not value.isascii():
        return None
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        try:
            host = str(ipaddress.IPv6Address(inside))
        except ValueError:
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, after = value.partition(":")
        port_text = after if colon else None
        host = host.removesuffix(".")
        # Letters, digits, '-', '.', and '_' (found in some internal names); nothing else.
        if not host or not all(c.isalnum() or c in "-._" for c in host):
            return None
    if port_text is None:
        return host, None
    if not (port_text.isdigit() and int(port_text) < 65536):
        return None
    return host, int(port_text)


def origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an `Origin` header, default ports filled in; None when malformed."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    hostport = split_host(parts.netloc)
    if hostport is None:
        return None
    host, port = hostport
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AllowedHosts:
    #: Normalised entries (see the module docstring); the loopback names are always included.
    entries: tuple[str, ...] = ()

    @classmethod
    def for_server(cls, extra: tuple[str, ...], bind_host: str) -> AllowedHosts:
        """The loopback names, the bind address when it is a specific one, and `extra`."""
        entries = list(LOOPBACK_NAMES)
        address = _ip(bind_host.strip("[]"))
        if address is None or not address.is_unspecified:
            # A bind host that is no host name (e.g. a path) is nothing a browser could send as Host.
            with contextlib.suppress(ValueError):
                entries.append(normalise_entry(bind_host.strip("[]")))
        entries += [normalise_entry(e) for e in extra]
        return cls(tuple(dict.fromkeys(entries)))

    @property
    def anything(self) -> bool:
        return "*" in self.entries

    def allows(self, host: str) -> bool:
        """Whether `host` (already split from its port, as `split_host` returns it) is served."""
        address = _ip(host)
        if address is not None and address.is_loopback:
            return True
        for entry in self.entries:
            if entry == "*" or entry == host:
                return True
            if entry.startswith("*.") and host.endswith(entry[1:]):
                return True
        return False


def normalise_entry(entry: str) -> str:
    """An allowed-host entry as matched: lower case, no brackets or trailing dot, IPv6 compressed;
    ValueError when it is not a host name, an address, `*.name` or `*`."""
    text = entry.strip().lower()
    if text == "*":
        return text
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    address = _ip(name)
    parsed = split_host(f"[{name}]" if isinstance(address, ipaddress.IPv6Address) else name)
    if parsed is None or parsed[1] is not None or (wildcard and address is not None):
        raise ValueError(
            f"{entry!r} is not a host name or address: no scheme or port; '*.example.com' or '*' for more"
        )
    return ("*." if wildcard else "") + parsed[0]
