"""StatsD counters and the check timer, sent with the ``statsd`` package's client.

One UDP pipeline per request (one packet for all of its counters), fire-and-forget: the client
swallows socket errors, so metrics never raise into a request. Off (a no-op) unless
``QUOTA_STATSD_HOST`` is set, so callers never test ``if metrics``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from functools import lru_cache
from typing import Final, Protocol

from statsd import StatsClient

from .errors import ConfigurationError

ALLOWED: Final = "allowed"
DENIED: Final = "denied"
BYPASSED: Final = "bypassed"
NEAR_LIMIT: Final = "near_limit"
DRY_RUN_DENIED: Final = "dry_run_denied"
STORAGE_ERROR: Final = "storage_error"
CHECK_TIMER: Final = "check"
#: Gauges, sent when they change: the live emergency factor and the load-adaptive factor.
EMERGENCY_FACTOR: Final = "emergency_factor"
ADAPTIVE_FACTOR: Final = "adaptive_factor"

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_\-]+")


@lru_cache(maxsize=1024)
def denied_metric(limit_name: str) -> str:
    """``denied.<limit name>``, the name made safe for Graphite (``[A-Za-z0-9_-]``)."""
    return f"{DENIED}.{_UNSAFE.sub('_', limit_name).strip('_') or 'unnamed'}"


class Metrics(Protocol):
    def send(self, counters: Iterable[str], check_ms: float | None = None) -> None:
        """Count each of ``counters`` once and time the check, in one packet."""
        ...

    def gauge(self, name: str, value: float) -> None:
        """Set a gauge (rare: on a change of the emergency or adaptive factor)."""
        ...


class NullMetrics:
    """StatsD off."""

    def send(self, counters: Iterable[str], check_ms: float | None = None) -> None:
        return None

    def gauge(self, name: str, value: float) -> None:
        return None


class StatsdMetrics:
    """StatsD on: counters under ``prefix``."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        try:
            self._client = StatsClient(host, port, prefix=prefix)
        except (OSError, UnicodeError) as err:
            raise ConfigurationError(
                f"invalid QUOTA_STATSD_HOST {host!r} (port {port}): {err}"
            ) from None
        # The client's UDP socket goes with this object (and so with its app's state), so
        # discarded apps leave no socket behind (no ResourceWarning in users' test suites).
        weakref.finalize(self, self._client.close)

    def send(self, counters: Iterable[str], check_ms: float | None = None) -> None:
        pipe = self._client.pipeline()
        for name in counters:
            pipe.incr(name)
        if check_ms is not None:
            pipe.timing(CHECK_TIMER, check_ms)
        pipe.send()

    def gauge(self, name: str, value: float) -> None:
        self._client.gauge(name, value)


def metrics_for(host: str | None, port: int, prefix: str) -> Metrics:
    """The metrics sink the settings ask for."""
    if not host:
        return NullMetrics()
    return StatsdMetrics(host, port, prefix)


__all__ = ["Metrics", "NullMetrics", "StatsdMetrics", "denied_metric", "metrics_for"]
