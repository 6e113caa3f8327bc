"""Load-adaptive limits: ``QUOTA_ADAPTIVE`` scales every limit by a factor in (0, 1].

Any callable returning such a factor works (CPU load, queue depth, a feature flag). The
built-in :class:`InFlight` follows this process's requests in flight: at or below ``soft`` the
factor is 1; it falls linearly to ``floor`` at ``hard`` and stays there beyond. From config
files and ``FLASK_QUOTA_ADAPTIVE`` it is spelt ``"in_flight:<soft>:<hard>[:<floor>]"``.

The factor is quantized to steps of 0.01 before use (so scaled rules are cached), logged and
sent as the ``adaptive_factor`` gauge when it changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ._state import current_state
from .errors import ConfigurationError

_SPEC_RE: Final = re.compile(r"in_flight:(\d+):(\d+)(?::([0-9.]+))?")


@dataclass(frozen=True, slots=True)
class InFlight:
    """A factor from this process's requests in flight (counted by the extension)."""

    soft: int
    hard: int
    floor: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.soft < self.hard:
            raise ConfigurationError(
                f"invalid in_flight(soft={self.soft!r}, hard={self.hard!r}): need 0 <= soft < hard"
            )
        if not 0 < self.floor <= 1:
            raise ConfigurationError(f"invalid in_flight floor {self.floor!r}: expected (0, 1]")

    def __call__(self) -> float:
        return self.factor_for(current_state().in_flight.count)

    def factor_for(self, in_flight: int) -> float:
        """The factor at ``in_flight`` requests (this one included)."""
        if in_flight <= self.soft:
            return 1.0
        if in_flight >= self.hard:
            return self.floor
        share = (in_flight - self.soft) / (self.hard - self.soft)
        return 1.0 - share * (1.0 - self.floor)


def in_flight(soft: int, hard: int, floor: float = 0.1) -> InFlight:
    """``QUOTA_ADAPTIVE = in_flight(soft=32, hard=64)``: see :class:`InFlight`."""
    return InFlight(soft, hard, floor)


def parse_adaptive(text: str) -> InFlight:
    """``"in_flight:32:64"`` or ``"in_flight:32:64:0.2"`` from config, or an error naming it."""
    match = _SPEC_RE.fullmatch(text.strip())
    if match is None:
        raise ConfigurationError(
            f"invalid QUOTA_ADAPTIVE {text!r}: expected a callable or 'in_flight:<soft>:<hard>'"
            "[:<floor>]"
        )
    try:
        return InFlight(int(match[1]), int(match[2]), float(match[3]) if match[3] else 0.1)
    except ValueError as err:  # ConfigurationError too; float("1.2.3") before it
        raise ConfigurationError(f"invalid QUOTA_ADAPTIVE {text!r}: {err}") from None
