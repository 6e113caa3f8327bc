"""fixed_window: one counter per calendar-aligned window (``now - now % period``).

State: ``(window_start_us, used)``. Cheapest of all; a client can spend the limit at the end of
one window and again at the start of the next.
"""

from __future__ import annotations

from ._base import Decision, Outcome, Rule, refusal_retry_us

FixedWindowState = tuple[int, int]


def decide(
    state: FixedWindowState | None, now_us: int, rule: Rule, cost: int
) -> Outcome[FixedWindowState]:
    """Admit ``cost`` if the current window's count stays within the limit."""
    window_start = now_us - now_us % rule.period_us
    window_end_in = window_start + rule.period_us - now_us
    used = state[1] if state is not None and state[0] == window_start else 0
    if used + cost <= rule.capacity:
        used += cost
        decision = Decision(
            allowed=True,
            limit=rule.capacity,
            remaining=rule.capacity - used,
            reset_after_us=window_end_in if used > 0 else 0,
            retry_after_us=0,
        )
        return Outcome(decision, (window_start, used), window_end_in if used > 0 else 0)
    decision = Decision(
        allowed=False,
        limit=rule.capacity,
        remaining=max(0, rule.capacity - used),
        reset_after_us=window_end_in if used > 0 else 0,
        retry_after_us=refusal_retry_us(rule, cost, window_end_in),
    )
    return Outcome(decision, None, 0)
