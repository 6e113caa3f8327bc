"""Limit values and the limit-string grammar.

Pure: imports nothing from Flask, so the algorithms, storages and CLI share it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from .errors import ConfigurationError

US_PER_SECOND: Final = 1_000_000
#: Bounds that keep every computation exact in Lua's doubles (integers below 2**53).
MAX_COUNT: Final = 1_000_000_000
MAX_PERIOD_S: Final = 10 * 365 * 86_400


class Unit(enum.IntEnum):
    """A period unit, valued in seconds (a month is 30 days, a year 365 days)."""

    SECOND = 1
    MINUTE = 60
    HOUR = 3_600
    DAY = 86_400
    MONTH = 30 * 86_400
    YEAR = 365 * 86_400


_UNIT_NAMES: Final = "second, minute, hour, day, month or year"

_LIMIT_RE: Final = re.compile(
    r"""
    ^\s*(?P<count>[0-9]+)\s*
    (?:/|\s+per\s+|per\s+)\s*
    (?:(?P<multiple>[0-9]+)\s*)?
    (?P<written>(?P<unit>[a-z]+?)s?)\s*$
    """,
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """``count`` units of cost per ``multiple`` × ``unit``: ``"5/10 seconds"`` is 5 per 10 s."""

    count: int
    multiple: int = 1
    unit: Unit = Unit.SECOND

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigurationError(f"limit count must be at least 1, got {self.count!r}")
        if self.multiple < 1:
            raise ConfigurationError(f"limit period must be at least 1, got {self.multiple!r}")
        if self.count > MAX_COUNT:
            raise ConfigurationError(f"limit count must be at most {MAX_COUNT}, got {self.count}")
        if self.period_s > MAX_PERIOD_S:
            raise ConfigurationError(
                f"limit period must be at most 10 years, got {self.period_s} seconds"
            )

    @property
    def period_s(self) -> int:
        """The period in whole seconds."""
        return self.multiple * int(self.unit)

    @property
    def period_us(self) -> int:
        """The period in microseconds, the unit every algorithm computes in."""
        return self.period_s * US_PER_SECOND

    def __str__(self) -> str:
        unit = self.unit.name.lower()
        if self.multiple == 1:
            return f"{self.count}/{unit}"
        return f"{self.count}/{self.multiple} {unit}s"


def parse_limit(text: str) -> Limit:
    """Parse one limit such as ``"10/second"``, ``"10 per second"`` or ``"3 per 2 hours"``.

    :raises ConfigurationError: naming ``text`` and the expected form.
    """
    match = _LIMIT_RE.match(text)
    if match is None:
        raise ConfigurationError(
            f"invalid limit {text!r}: expected '<count>/<unit>', '<count> per <unit>' or "
            f"'<count>/<n> <units>', with unit {_UNIT_NAMES}"
        )
    unit_name = match["unit"].lower()
    try:
        unit = Unit[unit_name.upper()]
    except KeyError:
        raise ConfigurationError(
            f"invalid limit {text!r}: unit must be {_UNIT_NAMES}, got {match['written']!r}"
        ) from None
    count = int(match["count"])
    multiple = int(match["multiple"]) if match["multiple"] is not None else 1
    try:
        return Limit(count=count, multiple=multiple, unit=unit)
    except ConfigurationError as err:
        raise ConfigurationError(f"invalid limit {text!r}: {err}") from None


def parse_limits(text: str) -> tuple[Limit, ...]:
    """Parse ``"10/second;1000/day"``: one or more limits joined by ``;``.

    :raises ConfigurationError: for an empty string, a stray ``;`` or any bad part,
        naming the whole string.
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"invalid limit {text!r}: expected a string such as '10/second'")
    parts = text.split(";")
    limits: list[Limit] = []
    for part in parts:
        if not part.strip():
            raise ConfigurationError(
                f"invalid limit {text!r}: empty part (an empty string or a stray ';')"
            )
        try:
            limits.append(parse_limit(part))
        except ConfigurationError as err:
            if len(parts) == 1:
                raise
            raise ConfigurationError(f"invalid limit {text!r}: {err}") from None
    return tuple(limits)
