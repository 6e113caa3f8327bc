"""sliding_log: an exact log of admission times, one entry per unit of cost.

State: the admission times, oldest first. Exact over every sliding span; memory and time per
request grow with the limit's count, so keep it for small limits (logins, expensive calls).
"""

from __future__ import annotations

from ._base import Decision, Outcome, Rule, refusal_retry_us

SlidingLogState = tuple[int, ...]


def decide(
    state: SlidingLogState | None, now_us: int, rule: Rule, cost: int
) -> Outcome[SlidingLogState]:
    """Admit ``cost`` if the entries younger than one period leave room for it."""
    period = rule.period_us
    entries = state or ()
    expired = 0
    while expired < len(entries) and entries[expired] <= now_us - period:
        expired += 1
    live = entries[expired:]
    used = len(live)
    if used + cost <= rule.capacity:
        live = live + (now_us,) * cost
        reset = live[-1] + period - now_us if live else 0
        decision = Decision(
            allowed=True,
            limit=rule.capacity,
            remaining=rule.capacity - len(live),
            reset_after_us=reset,
            retry_after_us=0,
        )
        return Outcome(decision, live, reset)
    reset = live[-1] + period - now_us if live else 0
    # The oldest entries must expire until ``cost`` fits: the last of them sets the wait.
    must_expire = used + cost - rule.capacity
    wait = live[must_expire - 1] + period - now_us if must_expire <= used else reset
    decision = Decision(
        allowed=False,
        limit=rule.capacity,
        remaining=max(0, rule.capacity - used),
        reset_after_us=reset,
        retry_after_us=refusal_retry_us(rule, cost, wait),
    )
    return Outcome(decision, None, 0)
