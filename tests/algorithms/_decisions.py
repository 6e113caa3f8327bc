"""Expected decisions, spelt briefly: the hand-worked tests use a limit of 4 unless told."""

from __future__ import annotations

from flask_quota.algorithms import Decision


def admitted(remaining: int, reset_after_us: int, delay_us: int = 0, *, limit: int = 4) -> Decision:
    return Decision(
        allowed=True,
        limit=limit,
        remaining=remaining,
        reset_after_us=reset_after_us,
        retry_after_us=0,
        delay_us=delay_us,
    )


def refused(
    remaining: int, reset_after_us: int, retry_after_us: int, *, limit: int = 4
) -> Decision:
    return Decision(
        allowed=False,
        limit=limit,
        remaining=remaining,
        reset_after_us=reset_after_us,
        retry_after_us=retry_after_us,
    )
