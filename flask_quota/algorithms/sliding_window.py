"""sliding_window: the weighted two-window counter.

State: ``(window_start_us, current, previous)`` for calendar-aligned windows. The estimate is
``ceil(previous * (period - elapsed) / period) + current``: the previous window's count,
weighted by how much of it the sliding window still covers. Rounding the weight up is the
integer form of comparing the real-valued estimate with the limit, and it is what makes the
bound below hold: rounded down, a previous window bunched at its end would let a full second
``count`` through within one period.

Bound (tested): within one calendar window at most ``count`` units are admitted, exactly;
over any sliding span of one period fewer than ``2 * count`` can be, and only when the previous
window's traffic bunched at its very end (the estimate assumes it was spread evenly).

The weighting is the one place where an intermediate is not an integer: products such as
``previous * (period - elapsed)`` can pass 2**53. Python computes it on floats in the same
order as Lua does on its doubles, so both round identically (IEEE 754) and agree bit for bit.
"""

from __future__ import annotations

import math

from ._base import Decision, Outcome, Rule

SlidingWindowState = tuple[int, int, int]


def _weighted(previous: int, uncovered_us: int, period_us: int) -> int:
    """``ceil(previous * uncovered / period)``, computed as Lua computes it."""
    return math.ceil(float(previous) * float(uncovered_us) / float(period_us))


def _wait_for_room(room: int, count: int, period_us: int) -> int:
    """The least elapsed time into a window at which ``count`` weighted by the rest fits ``room``.

    ``ceil(count * (period - e) / period) <= room`` from ``e = period - floor(room * period /
    count)`` on, exactly; should float rounding of large products disagree, step on until
    :func:`_weighted` does, so a retry at ``retry_after`` is never refused.
    """
    elapsed = period_us - math.floor(float(room) * float(period_us) / float(count))
    while _weighted(count, period_us - elapsed, period_us) > room:
        elapsed += 1
    return elapsed


def decide(
    state: SlidingWindowState | None, now_us: int, rule: Rule, cost: int
) -> Outcome[SlidingWindowState]:
    """Admit ``cost`` if the weighted estimate stays within the limit."""
    period = rule.period_us
    window_start = now_us - now_us % period
    elapsed = now_us - window_start
    current = previous = 0
    if state is not None:
        if state[0] == window_start:
            current, previous = state[1], state[2]
        elif state[0] == window_start - period:
            previous = state[1]
    used = _weighted(previous, period - elapsed, period) + current
    if used + cost <= rule.capacity:
        current += cost
        used += cost
        ttl = window_start + 2 * period - now_us
        decision = Decision(
            allowed=True,
            limit=rule.capacity,
            remaining=rule.capacity - used,
            reset_after_us=_reset_after(current, previous, period, elapsed),
            retry_after_us=0,
        )
        return Outcome(decision, (window_start, current, previous), ttl)
    room = rule.capacity - current - cost
    if cost > rule.capacity:
        wait = period
    elif room >= 0:
        # Refused with room in this window means previous > 0: wait for its weight to fade.
        wait = max(1, _wait_for_room(room, previous, period) - elapsed)
    else:
        # Only the next window can admit it (current > 0 here), once this one has faded enough.
        later = max(0, _wait_for_room(rule.capacity - cost, current, period))
        wait = period - elapsed + later
    decision = Decision(
        allowed=False,
        limit=rule.capacity,
        remaining=max(0, rule.capacity - used),
        reset_after_us=_reset_after(current, previous, period, elapsed),
        retry_after_us=wait,
    )
    return Outcome(decision, None, 0)


def _reset_after(current: int, previous: int, period: int, elapsed: int) -> int:
    """Until the estimate is 0: the end of the next window if this one has counts."""
    if current > 0:
        return 2 * period - elapsed
    if previous > 0:
        return period - elapsed
    return 0
