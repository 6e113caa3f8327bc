"""Live configuration: overrides of named limits and the emergency factor, kept in storage.

Operators change them with ``flask quota set/unset/emergency`` (or :meth:`Quota.set_override`);
every process obeys from its next request on, without a restart and without polling:

- The config is one hash, ``<prefix>:%config``: a field ``limit:<name>`` per override and
  ``emergency``, each a small JSON object with an optional expiry (storage clock, µs), plus a
  ``version`` bumped atomically with every change.
- Each request's storage call already returns that ``version`` (one ``HGET`` inside the same
  script). A process that sees a version it does not know reads the hash once (the only extra
  round trip, and only after a change) and recompiles its limits. Expiries are compared with the
  storage clock the call also returns, so a timed override lapses everywhere at the same instant.

Why not pub/sub or a polling cache: a subscriber thread per worker is one more connection and
failure mode, and polling costs a round trip per interval per process even when nothing changes;
the version rides a call every request makes anyway.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .errors import ConfigurationError
from .keys import escape_scope
from .limits import parse_limits

LIMIT_FIELD: Final = "limit:"
EMERGENCY_FIELD: Final = "emergency"
VERSION_FIELD: Final = "version"
#: Factors are applied in steps of this size, so scaled rules can be cached.
FACTOR_STEP: Final = 0.01


def config_key(prefix: str) -> str:
    """The hash holding the live config under ``QUOTA_KEY_PREFIX``."""
    return f"{escape_scope(prefix)}:%config"


@dataclass(frozen=True, slots=True)
class Override:
    """A limit string that replaces the limit named ``name`` until ``expires_at_us``."""

    name: str
    limit: str
    expires_at_us: int | None = None


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """The stored config as one process last read it."""

    version: int = -1
    overrides: Mapping[str, Override] = field(default_factory=dict)
    emergency_factor: float = 1.0
    emergency_expires_at_us: int | None = None

    def active_overrides(self, now_us: int) -> dict[str, str]:
        """Name -> limit string of the overrides in force at ``now_us``."""
        return {
            name: o.limit
            for name, o in self.overrides.items()
            if o.expires_at_us is None or o.expires_at_us > now_us
        }

    def factor(self, now_us: int) -> float:
        """The emergency factor in force at ``now_us`` (1.0: none)."""
        expires = self.emergency_expires_at_us
        return self.emergency_factor if expires is None or expires > now_us else 1.0

    def next_change_us(self, now_us: int) -> int:
        """When the next timed entry still in force at ``now_us`` lapses (far future if none)."""
        expiries = [o.expires_at_us for o in self.overrides.values() if o.expires_at_us]
        if self.emergency_expires_at_us is not None:
            expiries.append(self.emergency_expires_at_us)
        return min((e for e in expiries if e > now_us), default=2**62)


def validate_factor(factor: float) -> float:
    """A factor in (0, 1], or a :class:`ConfigurationError`."""
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        raise ConfigurationError(f"invalid factor {factor!r}: expected a number in (0, 1]")
    if math.isnan(factor) or not 0 < factor <= 1:
        raise ConfigurationError(f"invalid factor {factor!r}: expected a number in (0, 1]")
    return float(factor)


def quantize(factor: float) -> float:
    """``factor`` in steps of :data:`FACTOR_STEP`, never below one step."""
    return max(FACTOR_STEP, math.floor(factor / FACTOR_STEP + 1e-9) * FACTOR_STEP)


def encode_override(limit: str, expires_at_us: int | None) -> str:
    parse_limits(limit)  # refuse a bad string before any process sees it
    return json.dumps({"limit": limit, "expires_at_us": expires_at_us})


def encode_emergency(factor: float, expires_at_us: int | None) -> str:
    return json.dumps({"factor": validate_factor(factor), "expires_at_us": expires_at_us})


def decode(fields: Mapping[str, str]) -> LiveConfig:
    """The config from the hash's fields; an entry that does not decode is skipped (it cannot
    have been written by this library) rather than taking every process down."""
    overrides: dict[str, Override] = {}
    factor, factor_expiry = 1.0, None
    for name, raw in fields.items():
        try:
            if name.startswith(LIMIT_FIELD):
                entry = json.loads(raw)
                parse_limits(entry["limit"])
                limit_name = name[len(LIMIT_FIELD) :]
                overrides[limit_name] = Override(limit_name, entry["limit"], entry["expires_at_us"])
            elif name == EMERGENCY_FIELD:
                entry = json.loads(raw)
                factor = validate_factor(entry["factor"])
                factor_expiry = entry["expires_at_us"]
        except (ValueError, KeyError, TypeError, ConfigurationError):
            continue
    version = int(fields.get(VERSION_FIELD, "0"))
    return LiveConfig(version, overrides, factor, factor_expiry)
