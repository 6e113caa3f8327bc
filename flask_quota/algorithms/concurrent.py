"""concurrent: a slot among ``capacity`` for one request in flight (``@quota.concurrent``).

State: the leases held, as ``(expires_at_us, token)`` pairs. A request takes a lease when
admitted and gives it back when it ends; a lease whose worker died expires on its own after
``lease_us``. Not a strategy for rate limits: the dispatcher runs it after every check admitted.
"""

from __future__ import annotations

from ._base import Decision, Outcome

ConcurrentState = tuple[tuple[int, str], ...]

#: A refused request is told to retry within a second: leases usually end long before expiry.
MAX_RETRY_US = 1_000_000


def acquire(
    state: ConcurrentState | None, now_us: int, capacity: int, lease_us: int, token: str
) -> Outcome[ConcurrentState]:
    """Take a lease for ``token`` if fewer than ``capacity`` live leases are held."""
    live = tuple(lease for lease in state or () if lease[0] > now_us)
    if len(live) < capacity:
        decision = Decision(
            allowed=True,
            limit=capacity,
            remaining=capacity - len(live) - 1,
            reset_after_us=lease_us,
            retry_after_us=0,
        )
        return Outcome(decision, (*live, (now_us + lease_us, token)), lease_us)
    expiries = sorted(expires for expires, _ in live)
    decision = Decision(
        allowed=False,
        limit=capacity,
        remaining=0,
        reset_after_us=expiries[-1] - now_us,
        retry_after_us=min(MAX_RETRY_US, expiries[0] - now_us),
    )
    return Outcome(decision, None, 0)


def release(state: ConcurrentState | None, token: str) -> ConcurrentState:
    """The leases without ``token``'s."""
    return tuple(lease for lease in state or () if lease[1] != token)
