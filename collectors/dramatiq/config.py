"""What an operator tells Callboard about a target's Dramatiq: namespaces, queues, timeouts, results."""

from __future__ import annotations

from dataclasses import dataclass

from callboard.collectors.dramatiq.keys import DEFAULT_RESULTS_NAMESPACE

#: Dramatiq's default dead_message_ttl: maintenance deletes dead letters older than this.
DEAD_MESSAGE_TTL = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class ResultsConfig:
    """Where an app's Dramatiq results backend keeps results (when it has one)."""

    #: The results backend's `namespace` (Dramatiq's default is `dramatiq-results`).
    namespace: str = DEFAULT_RESULTS_NAMESPACE
    #: Dramatiq 2.2 `use_namespace_prefix_keys=True`: readable keys instead of MD5 hashes.
    prefix_keys: bool = False


@dataclass(frozen=True, slots=True)
class DramatiqConfig:
    #: Broker namespaces to watch (Dramatiq's default is `dramatiq`); when none are listed, every
    #: namespace discovery finds.
    namespaces: tuple[str, ...] = ()
    #: Queue keys (`ns:queue`) always shown, even before discovery finds them.
    queues: tuple[str, ...] = ()
    #: A heartbeat older than this marks the worker stale (Dramatiq's default is 60 s).
    heartbeat_timeout: float = 60.0
    #: A discovered queue with no keys left stays listed this long.
    idle_ttl: float = 3600.0
    #: Where the app's Results middleware keeps results, when it has one; without this table no result
    #: is read.
    results: ResultsConfig | None = None
    #: The broker's dead_message_ttl (seconds): when dead letters become eligible for deletion.
    dead_message_ttl: float = DEAD_MESSAGE_TTL
