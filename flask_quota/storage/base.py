"""The storage contract: one call evaluates all of a request's checks.

A storage runs :data:`~flask_quota.algorithms.DECIDERS` (memory) or their Lua twins (Redis)
over a batch of :class:`Check` and answers with one :class:`BatchResult`: short-circuit at the
first refusal, and all-or-nothing: unless every check admits, no state changes at all.

The per-request values here are plain (not frozen) slotted dataclasses: see
:class:`~flask_quota.algorithms.Decision` for why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ..algorithms import Decision, Rule

#: Fields of the config hash set (to "1", never cleared) once the stored allow list or blocklist
#: is first used: until then a call with the config hash skips those lookups altogether.
ALLOW_IN_USE: Final = "lists:allow"
BLOCK_IN_USE: Final = "lists:block"


@dataclass(slots=True, kw_only=True)
class Subject:
    """An identity a request is checked for, with its list and refusal-counter keys.

    The storage looks these up in the same call as the limits: an allow-listed subject lets
    the request through unchecked, a blocked one refuses it, and a refusal is counted on the
    refused subject's counter (a fixed window of ``alert_window_us``).
    """

    #: The identity, redacted (as stored and shown).
    identity: str
    allow_key: str
    block_key: str
    refusals_key: str


@dataclass(slots=True, kw_only=True)
class Check:
    """One limit to apply to one identity in this request.

    A cost of 0 is a peek: decided and reported, never written. The cost is an int >= 0:
    checked where it comes from (``CompiledSpec.cost``, for a cost callable), not here, since
    a request builds one of these per limit.
    """

    key: str
    rule: Rule
    cost: int = 1
    #: Evaluated and reported, never refusing; not charged when it would have refused.
    dry_run: bool = False
    #: Index of the :class:`Subject` this check counts for, or -1 (none: nothing is counted
    #: against an identity when it refuses).
    subject: int = -1


@dataclass(slots=True, kw_only=True)
class Slot:
    """A concurrency slot to take for this request (``@quota.concurrent``).

    Taken only if every check admits, in the same call; given back with
    :meth:`Storage.release` when the request ends, or expiring after ``lease_us``.
    """

    key: str
    capacity: int
    lease_us: int
    #: Unique per request: names this request's lease.
    token: str
    subject: int = -1


@dataclass(slots=True, kw_only=True)
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
    #: A subject is allow-listed: nothing was checked or charged.
    allowed_by_list: bool = False
    #: Index of the blocked subject that refused the request (no check was evaluated).
    blocked_subject: int | None = None
    #: Microseconds left on that block.
    block_remaining_us: int = 0
    #: The refused subject's refusals in the current alert window, this one included.
    refusals: int = 0
    #: The ``version`` field of the config hash, when one was asked for (0: none yet).
    config_version: int = 0

    @property
    def allowed(self) -> bool:
        """Whether the request may proceed: allow-listed, or admitted (and charged) by every
        non-dry-run check."""
        return self.refused_index is None and self.blocked_subject is None


class Storage(Protocol):
    """What the extension needs of a backend."""

    def evaluate(
        self,
        checks: Sequence[Check],
        subjects: Sequence[Subject] = (),
        alert_window_us: int = 0,
        *,
        slots: Sequence[Slot] = (),
        config_key: str | None = None,
    ) -> BatchResult:
        """Decide and, if all admit, charge every check and take every slot, in one atomic step.

        First, if any of ``subjects`` is allow-listed the request passes unchecked; if one is
        blocked it is refused. A refusal increments the refused subject's counter, which
        expires ``alert_window_us`` after its first refusal. A refusal by a slot has index
        ``len(checks) + k`` and its decision comes last. With ``config_key``, the result
        carries that hash's ``version``: processes learn of live changes at no extra cost.

        :raises StorageError: when the backend cannot be reached or times out.
        """
        ...

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the state under ``keys`` (a reset)."""
        ...

    def release(self, slot: Slot) -> None:
        """Give back the lease ``slot`` took (at the end of its request)."""
        ...

    # Administration (CLI) and live config: rare, so plain commands, never per request.

    def now_us(self) -> int:
        """The storage's clock (Redis ``TIME``), for expiries that every process compares."""
        ...

    def read_config(self, key: str) -> dict[str, str]:
        """Every field of the config hash at ``key``."""
        ...

    def snapshot_config(self, key: str) -> tuple[dict[str, str], int]:
        """The config hash and the storage's clock, in one round trip."""
        ...

    def set_config_field(self, key: str, field: str, value: str) -> None:
        """Set one field without bumping ``version``: for fields the script reads itself."""
        ...

    def update_config(self, key: str, field: str, value: str | None) -> int:
        """Set (or with ``None`` delete) one field and bump ``version``, atomically.

        :returns: the new version.
        """
        ...

    def scan(self, match: str, limit: int | None = None) -> list[str]:
        """Live keys matching the glob ``match`` (Redis ``SCAN``, never ``KEYS``), at most
        ``limit`` of them."""
        ...

    def put(self, key: str, value: str, ttl_ms: int | None) -> None:
        """Store a plain value (a list entry or flag), expiring after ``ttl_ms`` if given."""
        ...

    def get(self, key: str) -> str | None:
        """A plain value stored with :meth:`put` or a refusal counter, as a string."""
        ...

    def ttl_ms(self, key: str) -> int | None:
        """Milliseconds left before ``key`` expires; ``None`` if it does not exist, -1 if it
        never expires."""
        ...
