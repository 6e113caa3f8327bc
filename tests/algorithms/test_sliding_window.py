"""sliding_window, worked by hand: 4 per 10 s over calendar windows [W, W + P), [W + P, ...).

The estimate is ``floor(previous * (P - elapsed) / P) + current``; every expected number below
is that formula (or the docstring's retry and reset rules) evaluated on paper.
"""

from __future__ import annotations

from flask_quota.algorithms import Algorithm, Decision, Rule
from flask_quota.algorithms.sliding_window import decide
from flask_quota.limits import Limit

S = 1_000_000
P = 10 * S
#: A window start: 1_764_000_000 s is a multiple of 10 s.
W = 1_764_000_000 * S
RULE = Rule.build(Algorithm.SLIDING_WINDOW, Limit(count=4, multiple=10))


def admitted(remaining: int, reset_after_us: int) -> Decision:
    return Decision(
        allowed=True, limit=4, remaining=remaining, reset_after_us=reset_after_us, retry_after_us=0
    )


def refused(remaining: int, reset_after_us: int, retry_after_us: int) -> Decision:
    return Decision(
        allowed=False,
        limit=4,
        remaining=remaining,
        reset_after_us=reset_after_us,
        retry_after_us=retry_after_us,
    )


def test_rule_and_window_start() -> None:
    assert (RULE.count, RULE.capacity, RULE.period_us) == (4, 4, P)
    assert W % P == 0


def test_first_request_counts_in_the_current_window() -> None:
    outcome = decide(None, W + 2 * S, RULE, 1)
    # current 1, no previous: the estimate is 0 only once the next window has ended.
    assert outcome.decision == admitted(3, 2 * P - 2 * S)
    assert outcome.state == (W, 1, 0)
    assert outcome.ttl_us == 18 * S


def test_cost_above_one_fills_the_window() -> None:
    outcome = decide((W, 1, 0), W + 5 * S, RULE, 3)
    assert outcome.decision == admitted(0, 15 * S)
    assert outcome.state == (W, 4, 0)


def test_full_window_retries_just_past_the_next_window_start() -> None:
    # Regression: retry_after was 4 s, landing on W + P where the previous window still
    # weighs floor(4 * P / P) = 4 and the request is refused again. The first instant with
    # room is one microsecond later: floor(4 * (P - 1) / P) = 3.
    outcome = decide((W, 4, 0), W + 6 * S, RULE, 1)
    assert outcome.decision == refused(0, 14 * S, 4 * S + 1)
    assert (outcome.state, outcome.ttl_us) == (None, 0)
    assert not decide((W, 4, 0), W + P, RULE, 1).decision.allowed
    assert decide((W, 4, 0), W + P + 1, RULE, 1).decision == admitted(0, 2 * P - 1)


def test_retry_while_the_previous_window_fades() -> None:
    # Regression: at W + P, previous 4 and cost 3 need the weight down to 1, i.e.
    # 4 * (P - e) / P < 2, e > P / 2. retry_after was P / 2 exactly, where the weight is 2.
    outcome = decide((W, 4, 0), W + P, RULE, 3)
    assert outcome.decision == refused(0, P, P // 2 + 1)
    assert decide((W, 4, 0), W + P + P // 2, RULE, 3).decision == refused(2, P // 2, 1)
    assert decide((W, 4, 0), W + P + P // 2 + 1, RULE, 3).decision == admitted(
        0, 2 * P - P // 2 - 1
    )


def test_retry_when_the_boundary_falls_between_microseconds() -> None:
    # previous 3, cost 3: the weight must drop to 1: 3 * (P - e) / P < 2, e > P / 3, so
    # e = 3_333_334 (the weight there is floor(3 * 6_666_666 / P) = floor(1.9999998) = 1).
    outcome = decide((W, 3, 0), W + P, RULE, 3)
    assert outcome.decision == refused(1, P, 3_333_334)
    assert not decide((W, 3, 0), W + P + 3_333_333, RULE, 3).decision.allowed
    assert decide((W, 3, 0), W + P + 3_333_334, RULE, 3).decision.allowed


def test_previous_window_is_weighted_by_what_the_sliding_span_still_covers() -> None:
    # 2.5 s into the next window: previous 4 weighs floor(4 * 7.5 / 10) = 3.
    first = decide((W, 4, 0), W + P + 2_500_000, RULE, 1)
    assert first.decision == admitted(0, 2 * P - 2_500_000)
    assert first.state == (W + P, 1, 4)
    assert first.ttl_us == 17_500_000
    # 5 s in: floor(4 * 5 / 10) = 2, plus current 1 = 3 used: one more fits.
    second = decide(first.state, W + P + 5 * S, RULE, 1)
    assert second.decision == admitted(0, 15 * S)
    assert second.state == (W + P, 2, 4)


def test_refused_in_the_next_window_when_this_one_is_full() -> None:
    # current 3 + cost 2 > 4: only the next window can admit it, once 3 weighs at most 2:
    # 3 * (P - e) / P < 3 holds from e = 1 on.
    outcome = decide((W, 3, 0), W + 6 * S, RULE, 2)
    assert outcome.decision == refused(1, 14 * S, 4 * S + 1)


def test_cost_above_capacity_waits_one_period() -> None:
    assert decide(None, W + 2 * S, RULE, 5).decision == refused(4, 0, P)
    assert decide((W, 1, 0), W + 2 * S, RULE, 5).decision == refused(3, 18 * S, P)


def test_peek_reports_without_charging() -> None:
    outcome = decide((W, 4, 0), W + 6 * S, RULE, 0)
    assert outcome.decision == admitted(0, 14 * S)
    assert outcome.state == (W, 4, 0)
    assert decide(None, W + 6 * S, RULE, 0).decision == admitted(4, 0)


def test_windows_two_periods_old_are_forgotten() -> None:
    assert decide((W, 4, 0), W + 2 * P, RULE, 1).decision == admitted(3, 2 * P)
    # A previous window's own previous never carries over.
    assert decide((W + P, 0, 4), W + 2 * P, RULE, 4).decision == admitted(0, 2 * P)


def test_state_past_its_ttl_is_no_state() -> None:
    outcome = decide(None, W + 2 * S, RULE, 1)
    expires = W + 2 * S + outcome.ttl_us
    assert expires == W + 2 * P
    for cost in range(6):
        assert decide(outcome.state, expires, RULE, cost) == decide(None, expires, RULE, cost)
    # Inside the TTL the state still counts: at W + P it weighs floor(1 * P / P) = 1.
    assert decide(outcome.state, W + P, RULE, 1).decision == admitted(2, 2 * P)
    assert decide(None, W + P, RULE, 1).decision == admitted(3, 2 * P)


def test_at_most_count_in_one_calendar_window() -> None:
    state = None
    admitted_count = 0
    for second in range(10):
        outcome = decide(state, W + second * S, RULE, 1)
        if outcome.decision.allowed:
            admitted_count += 1
            state = outcome.state
    assert admitted_count == 4
