"""sliding_window, worked by hand: 4 per 10 s over calendar windows [W, W + P), [W + P, ...).

The estimate is ``ceil(previous * (P - elapsed) / P) + current``; every expected number below
is that formula (or the docstring's retry and reset rules) evaluated on paper.
"""

from __future__ import annotations

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.algorithms.sliding_window import decide
from flask_quota.limits import Limit
from tests.algorithms._decisions import admitted, refused

S = 1_000_000
P = 10 * S
#: A window start: 1_764_000_000 s is a multiple of 10 s.
W = 1_764_000_000 * S
RULE = Rule.build(Algorithm.SLIDING_WINDOW, Limit(count=4, multiple=10))


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


def test_full_window_retries_once_its_weight_in_the_next_window_leaves_room() -> None:
    # The next window needs ceil(4 * (P - e) / P) <= 3, i.e. e >= P / 4: 4 s + 2.5 s away.
    outcome = decide((W, 4, 0), W + 6 * S, RULE, 1)
    assert outcome.decision == refused(0, 14 * S, 6_500_000)
    assert (outcome.state, outcome.ttl_us) == (None, 0)
    assert not decide((W, 4, 0), W + P + 2_499_999, RULE, 1).decision.allowed
    assert decide((W, 4, 0), W + P + 2_500_000, RULE, 1).decision == admitted(0, 17_500_000)


def test_retry_while_the_previous_window_fades() -> None:
    # At W + P, previous 4 and cost 3 need the weight down to 1: 4 * (P - e) / P <= 1,
    # e >= 3 P / 4. (Regression: a closed form for the old rounding said P / 2 + 1 µs.)
    outcome = decide((W, 4, 0), W + P, RULE, 3)
    assert outcome.decision == refused(0, P, 7_500_000)
    # 1 µs short, the weight is ceil(1.0000004) = 2.
    assert decide((W, 4, 0), W + P + 7_499_999, RULE, 3).decision == refused(2, 2_500_001, 1)
    assert decide((W, 4, 0), W + P + 7_500_000, RULE, 3).decision == admitted(0, 12_500_000)


def test_retry_when_the_boundary_falls_between_microseconds() -> None:
    # previous 3, cost 3: the weight must drop to 1: 3 * (P - e) / P <= 1, e >= 2 P / 3,
    # so e = 6_666_667 (ceil(3 * 3_333_333 / P) = ceil(0.9999999) = 1; one µs earlier it is
    # ceil(1.0000002) = 2).
    outcome = decide((W, 3, 0), W + P, RULE, 3)
    assert outcome.decision == refused(1, P, 6_666_667)
    assert not decide((W, 3, 0), W + P + 6_666_666, RULE, 3).decision.allowed
    assert decide((W, 3, 0), W + P + 6_666_667, RULE, 3).decision.allowed


def test_the_previous_weight_is_rounded_up() -> None:
    # Regression: 1 s into the next window, 4 weigh 3.6. Rounded down (3) a request passed,
    # which let a second full count through within one period (see the next test).
    outcome = decide((W, 4, 0), W + P + S, RULE, 1)
    assert outcome.decision == refused(0, 9 * S, 1_500_000)


def test_a_burst_at_a_window_end_and_the_next_window_stay_below_twice_the_count() -> None:
    state = None
    admitted_at = []
    instants = [W + P - 1] * 4 + [W + P + 1, W + P + 2_500_000, W + P + 5 * S]
    instants += [W + P + 7_500_000, W + 2 * P - 2]
    for now in instants:
        outcome = decide(state, now, RULE, 1)
        if outcome.decision.allowed:
            state = outcome.state
            admitted_at.append(now)
    assert admitted_at == [W + P - 1] * 4 + [W + P + 2_500_000, W + P + 5 * S, W + P + 7_500_000]
    # All seven lie within the one-period span (W + P - 2, W + 2 P - 2]: 7 < 2 * 4.
    assert all(W + P - 2 < at <= W + 2 * P - 2 for at in admitted_at)


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
    # 3 * (P - e) / P <= 2 from e = P / 3, rounded up to 3_333_334 µs.
    outcome = decide((W, 3, 0), W + 6 * S, RULE, 2)
    assert outcome.decision == refused(1, 14 * S, 4 * S + 3_333_334)
    assert not decide((W, 3, 0), W + P + 3_333_333, RULE, 2).decision.allowed
    assert decide((W, 3, 0), W + P + 3_333_334, RULE, 2).decision.allowed


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
    # Inside the TTL the state still counts: at W + P it weighs 1, and until the very end of
    # that window (ceil(1 * 1 / P) = 1).
    assert decide(outcome.state, W + P, RULE, 1).decision == admitted(2, 2 * P)
    assert decide(None, W + P, RULE, 1).decision == admitted(3, 2 * P)
    assert decide(outcome.state, expires - 1, RULE, 4).decision == refused(3, 1, 1)


def test_at_most_count_in_one_calendar_window() -> None:
    state = None
    admitted_count = 0
    for second in range(10):
        outcome = decide(state, W + second * S, RULE, 1)
        if outcome.decision.allowed:
            admitted_count += 1
            state = outcome.state
    assert admitted_count == 4
