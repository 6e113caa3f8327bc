"""leaky_bucket: a queue of ``capacity`` units (``burst``) drained one per ``emission_us``.

State: ``drained_at_us``, when the queue will be empty. A request that finds it empty passes at
once; one that fits waits its turn (``delay_us``), unless that exceeds ``max_delay_us``; one that
does not fit is refused. The output is a smooth stream at the limit's rate.
"""

from __future__ import annotations

from ._base import Decision, Outcome, Rule, refusal_retry_us

LeakyBucketState = int


def decide(
    state: LeakyBucketState | None, now_us: int, rule: Rule, cost: int
) -> Outcome[LeakyBucketState]:
    """Queue ``cost`` units if they fit and their turn comes within ``max_delay_us``."""
    capacity, interval = rule.capacity, rule.emission_us
    backlog = max(0, (state if state is not None else now_us) - now_us)
    queued = -(-backlog // interval)
    fits = queued + cost <= capacity
    # A peek (cost 0) queues nothing, so it neither waits nor is refused for the wait.
    if fits and (backlog <= rule.max_delay_us or cost == 0):
        drained_in = backlog + cost * interval
        decision = Decision(
            allowed=True,
            limit=capacity,
            remaining=capacity - queued - cost,
            reset_after_us=drained_in,
            retry_after_us=0,
            delay_us=backlog if cost > 0 else 0,
        )
        return Outcome(decision, now_us + drained_in, drained_in)
    # Admitted once the delay is short enough and the cost fits, whichever comes last; it fits
    # once ceil(backlog / interval) <= capacity - cost (the second term is <= 0 when it fits).
    wait = max(backlog - rule.max_delay_us, backlog - (capacity - cost) * interval)
    decision = Decision(
        allowed=False,
        limit=capacity,
        remaining=max(0, capacity - queued),
        reset_after_us=backlog,
        retry_after_us=refusal_retry_us(rule, cost, wait),
    )
    return Outcome(decision, None, 0)
