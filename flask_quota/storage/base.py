"""The storage contract: one call evaluates all of a request's checks.

A storage runs :data:`~flask_quota.algorithms.DECIDERS` (memory) or their Lua twins (Redis)
over a batch of :class:`Check` and answers with one :class:`BatchResult`: short-circuit at the
first refusal, and all-or-nothing: unless every check admits, no state changes at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..algorithms import Decision, Rule
from ..errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One limit to apply to one identity in this request."""

    key: str
    rule: Rule
    cost: int = 1
    #: Evaluated and reported, never refusing; not charged when it would have refused.
    dry_run: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.cost, bool) or not isinstance(self.cost, int) or self.cost < 0:
            raise ConfigurationError(f"cost must be an int >= 0, got {self.cost!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """The answer to one batch.

    ``decisions`` holds one entry per check evaluated, in order; evaluation stops after the
    first refusing (non-dry-run) check, so it may be shorter than the batch.
    """

    decisions: tuple[Decision, ...]
    #: Index of the check that refused the request, or ``None`` if it was admitted.
    refused_index: int | None
    #: The storage's clock when it decided, in microseconds since the epoch.
    now_us: int

    @property
    def allowed(self) -> bool:
        """Whether every (non-dry-run) check admitted the request, and it was charged."""
        return self.refused_index is None


class Storage(Protocol):
    """What the extension needs of a backend."""

    def evaluate(self, checks: Sequence[Check]) -> BatchResult:
        """Decide and, if all admit, charge every check, in one atomic step.

        :raises StorageError: when the backend cannot be reached or times out.
        """
        ...

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the state under ``keys`` (a reset)."""
        ...
