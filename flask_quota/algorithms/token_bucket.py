"""token_bucket: ``capacity`` tokens (``burst``), one more every ``emission_us``.

State: ``(tokens, refilled_at_us)``. Tokens arrive whole, at multiples of the emission interval
after ``refilled_at``, so the arithmetic stays in integers. Allows bursts up to the capacity
and holds the long-run rate.
"""

from __future__ import annotations

from ._base import Decision, Outcome, Rule, refusal_retry_us

TokenBucketState = tuple[int, int]


def decide(
    state: TokenBucketState | None, now_us: int, rule: Rule, cost: int
) -> Outcome[TokenBucketState]:
    """Admit ``cost`` if that many tokens are in the bucket."""
    capacity, interval = rule.capacity, rule.emission_us
    tokens, refilled_at = state if state is not None else (capacity, now_us)
    if tokens < capacity:
        # A clock that stepped back refills nothing rather than draining the bucket.
        earned = max(0, now_us - refilled_at) // interval
        tokens = min(capacity, tokens + earned)
        refilled_at += earned * interval
    if tokens >= capacity:
        tokens, refilled_at = capacity, now_us
    into_interval = max(0, now_us - refilled_at)
    if cost <= tokens:
        tokens -= cost
        reset = (capacity - tokens) * interval - into_interval if tokens < capacity else 0
        decision = Decision(
            allowed=True,
            limit=capacity,
            remaining=tokens,
            reset_after_us=reset,
            retry_after_us=0,
        )
        return Outcome(decision, (tokens, refilled_at), reset)
    decision = Decision(
        allowed=False,
        limit=capacity,
        remaining=tokens,
        reset_after_us=(capacity - tokens) * interval - into_interval,
        retry_after_us=refusal_retry_us(rule, cost, (cost - tokens) * interval - into_interval),
    )
    return Outcome(decision, None, 0)
