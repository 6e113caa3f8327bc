"""gcra: the generic cell rate algorithm; one timestamp per identity.

State: the theoretical arrival time (TAT). Each unit pushes it ``emission_us`` ahead; a request
is admitted while the TAT stays within ``capacity * emission_us`` of now. Same long-run shape as
token_bucket, continuous rather than in whole tokens, and the smallest state of all.
"""

from __future__ import annotations

from ._base import Decision, Outcome, Rule, refusal_retry_us

GcraState = int


def decide(state: GcraState | None, now_us: int, rule: Rule, cost: int) -> Outcome[GcraState]:
    """Admit ``cost`` if the TAT it leads to is within the burst tolerance."""
    interval = rule.emission_us
    window = rule.capacity * interval
    tat = max(state if state is not None else now_us, now_us)
    new_tat = tat + cost * interval
    allow_at = new_tat - window
    if cost <= rule.capacity and now_us >= allow_at:
        decision = Decision(
            allowed=True,
            limit=rule.capacity,
            remaining=max(0, (window - (new_tat - now_us)) // interval),
            reset_after_us=new_tat - now_us,
            retry_after_us=0,
        )
        return Outcome(decision, new_tat, new_tat - now_us)
    decision = Decision(
        allowed=False,
        limit=rule.capacity,
        remaining=max(0, (window - (tat - now_us)) // interval),
        reset_after_us=tat - now_us,
        retry_after_us=refusal_retry_us(rule, cost, allow_at - now_us),
    )
    return Outcome(decision, None, 0)
