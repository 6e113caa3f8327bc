"""Types shared by the six algorithms and the storages that run them.

Every time is an integer number of microseconds: exact in Lua's doubles (below 2**53),
rounded up to whole seconds only when a response is written.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import ConfigurationError
from ..limits import Limit

State = TypeVar("State")


class Algorithm(enum.StrEnum):
    """The algorithm names: the same string in config, modules, Lua files, docs and metrics."""

    FIXED_WINDOW = "fixed_window"
    SLIDING_WINDOW = "sliding_window"
    SLIDING_LOG = "sliding_log"
    TOKEN_BUCKET = "token_bucket"
    LEAKY_BUCKET = "leaky_bucket"
    GCRA = "gcra"

    @classmethod
    def parse(cls, value: str) -> Algorithm:
        """The algorithm named ``value`` (in any case, as the other options' names), or a
        :class:`ConfigurationError` listing the names."""
        try:
            return cls(value.lower() if isinstance(value, str) else value)
        except ValueError:
            names = ", ".join(a.value for a in cls)
            raise ConfigurationError(
                f"invalid strategy {value!r}: expected one of {names}"
            ) from None


#: Algorithms whose capacity is ``burst`` rather than the limit's count.
BUCKET_ALGORITHMS = frozenset({Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET, Algorithm.GCRA})


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A limit compiled for one algorithm: the numbers its ``decide`` (and Lua twin) reads.

    Built once at start-up (or once per distinct dynamic limit), never per request.
    """

    algorithm: Algorithm
    count: int
    period_us: int
    #: The most cost admitted at once: the count for windows and logs, ``burst`` for buckets.
    capacity: int
    #: Microseconds per unit of cost, rounded up so a rate is never exceeded.
    emission_us: int
    #: leaky_bucket only: the longest delay admitted; a request needing more is refused.
    max_delay_us: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ConfigurationError(f"burst must be at least 1, got {self.capacity!r}")
        if self.max_delay_us < 0:
            raise ConfigurationError(f"max delay must be >= 0, got {self.max_delay_us!r}")

    @classmethod
    def build(
        cls,
        algorithm: Algorithm,
        limit: Limit,
        *,
        burst: int | None = None,
        max_delay_us: int = 0,
    ) -> Rule:
        """Compile ``limit`` for ``algorithm``; ``burst`` only matters to the bucket algorithms."""
        capacity = limit.count
        if algorithm in BUCKET_ALGORITHMS and burst is not None:
            if isinstance(burst, bool) or not isinstance(burst, int):
                raise ConfigurationError(f"burst must be an int, got {burst!r}")
            capacity = burst
        return cls(
            algorithm=algorithm,
            count=limit.count,
            period_us=limit.period_us,
            capacity=capacity,
            emission_us=-(-limit.period_us // limit.count),
            max_delay_us=max_delay_us,
        )


def scale_rule(rule: Rule, factor: float) -> Rule:
    """``rule`` with its count and capacity multiplied by ``factor`` (never below 1): the
    emergency switch and load-adaptive limits. Keys do not hold the count, so counters carry
    over."""
    count = max(1, int(rule.count * factor))
    return Rule(
        algorithm=rule.algorithm,
        count=count,
        period_us=rule.period_us,
        capacity=max(1, int(rule.capacity * factor)),
        emission_us=-(-rule.period_us // count),
        max_delay_us=rule.max_delay_us,
    )


@dataclass(slots=True)
class Decision:
    """One limit's answer to one request, as both Python and Lua compute it.

    Not frozen, like the storage's per-request values (``Check``, ``Subject``, ``Slot``,
    ``BatchResult``): several are built per request, and a frozen dataclass's ``__init__``
    (``object.__setattr__`` per field) costs 2.5 times as much. Treat them as values.
    """

    allowed: bool
    #: The capacity reported to clients (``X-RateLimit-Limit``).
    limit: int
    #: Units left after this request (after charging it, when it was admitted).
    remaining: int
    #: Microseconds until the limit is whole again (window rolled over, bucket full).
    reset_after_us: int
    #: Microseconds until a refused request would be admitted; 0 when admitted.
    retry_after_us: int
    #: leaky_bucket only: how long an admitted request must wait for its turn.
    delay_us: int = 0


@dataclass(frozen=True, slots=True)
class Outcome(Generic[State]):
    """What ``decide`` returns: the decision, and the state to store if the batch commits.

    ``ttl_us`` is how long the new state matters; past it the state is equivalent to no state,
    which is what lets storages expire it (a ``ttl_us`` <= 0 means: delete it).
    """

    decision: Decision
    state: State | None
    ttl_us: int


def refusal_retry_us(rule: Rule, cost: int, wait_us: int) -> int:
    """``wait_us``, unless ``cost`` exceeds the capacity: then no wait helps, so a full period."""
    return rule.period_us if cost > rule.capacity else wait_us
