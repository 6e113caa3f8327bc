"""token_bucket, worked by hand: 4 tokens, one more every 2.5 s (4 per 10 s).

State is ``(tokens, refilled_at)``; whole tokens arrive at ``refilled_at + k * 2.5 s``.
"""

from __future__ import annotations

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.algorithms.token_bucket import decide
from flask_quota.limits import Limit
from tests.algorithms._decisions import admitted, refused

S = 1_000_000
T = 1_764_000_000 * S + 777
LIMIT = Limit(count=4, multiple=10)
RULE = Rule.build(Algorithm.TOKEN_BUCKET, LIMIT)


def test_rule_numbers() -> None:
    assert (RULE.capacity, RULE.emission_us) == (4, 2_500_000)


def test_a_new_bucket_is_full() -> None:
    outcome = decide(None, T, RULE, 1)
    assert outcome.decision == admitted(3, 2_500_000)
    assert (outcome.state, outcome.ttl_us) == ((3, T), 2_500_000)


def test_cost_above_one_takes_that_many_tokens() -> None:
    outcome = decide((3, T), T, RULE, 3)
    assert outcome.decision == admitted(0, 10 * S)
    assert (outcome.state, outcome.ttl_us) == ((0, T), 10 * S)


def test_empty_bucket_refuses_until_the_next_token() -> None:
    # 1 s after emptying: no token yet (1 s // 2.5 s = 0); the next one is 1.5 s away.
    outcome = decide((0, T), T + S, RULE, 1)
    assert outcome.decision == refused(0, 9 * S, 1_500_000)
    assert (outcome.state, outcome.ttl_us) == (None, 0)
    assert not decide((0, T), T + 2_499_999, RULE, 1).decision.allowed
    later = decide((0, T), T + 2_500_000, RULE, 1)
    assert later.decision == admitted(0, 10 * S)
    assert later.state == (0, T + 2_500_000)


def test_tokens_arrive_whole_and_the_partial_interval_is_kept() -> None:
    # 6 s after emptying: 2 tokens (at 2.5 s and 5 s), 1 s into the third interval.
    outcome = decide((0, T), T + 6 * S, RULE, 2)
    assert outcome.decision == admitted(0, 9 * S)
    assert outcome.state == (0, T + 5 * S)
    assert decide((0, T), T + 6 * S, RULE, 3).decision == refused(2, 4 * S, 1_500_000)


def test_the_bucket_never_holds_more_than_its_capacity() -> None:
    outcome = decide((0, T), T + 60 * S, RULE, 4)
    assert outcome.decision == admitted(0, 10 * S)
    assert outcome.state == (0, T + 60 * S)
    assert not decide((0, T), T + 60 * S, RULE, 5).decision.allowed


def test_burst_sets_the_capacity() -> None:
    rule = Rule.build(Algorithm.TOKEN_BUCKET, LIMIT, burst=8)
    assert (rule.capacity, rule.emission_us) == (8, 2_500_000)
    outcome = decide(None, T, rule, 8)
    assert outcome.decision == admitted(0, 20 * S, limit=8)


def test_cost_above_capacity_waits_one_period() -> None:
    assert decide(None, T, RULE, 5).decision == refused(4, 0, 10 * S)
    assert decide((1, T), T + S, RULE, 5).decision == refused(1, 6_500_000, 10 * S)


def test_peek_reports_without_charging() -> None:
    outcome = decide((0, T), T + S, RULE, 0)
    assert outcome.decision == admitted(0, 9 * S)
    assert (outcome.state, outcome.ttl_us) == ((0, T), 9 * S)
    full = decide(None, T, RULE, 0)
    assert full.decision == admitted(4, 0)
    assert full.ttl_us == 0


def test_a_clock_that_steps_back_refills_nothing() -> None:
    assert decide((0, T), T - S, RULE, 1).decision == refused(0, 10 * S, 2_500_000)


def test_state_past_its_ttl_is_no_state() -> None:
    outcome = decide((3, T), T + S, RULE, 2)
    # 1 token left, 1 s into its interval: full again after 3 * 2.5 s - 1 s = 6.5 s.
    assert outcome.decision == admitted(1, 6_500_000)
    expires = T + S + outcome.ttl_us
    for cost in range(6):
        assert decide(outcome.state, expires, RULE, cost) == decide(None, expires, RULE, cost)
    assert decide(outcome.state, expires - 1, RULE, 4).decision == refused(3, 1, 1)
