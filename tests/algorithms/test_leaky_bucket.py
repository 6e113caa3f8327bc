"""leaky_bucket, worked by hand: a queue of 4 drained one unit per 2.5 s (4 per 10 s).

State is ``drained_at``; ``backlog = drained_at - now``, ``queued = ceil(backlog / 2.5 s)``.
A request waits ``backlog`` (its ``delay_us``) if it fits and that is within ``max_delay``.
"""

from __future__ import annotations

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.algorithms.leaky_bucket import decide
from flask_quota.limits import Limit
from tests.algorithms._decisions import admitted, refused

S = 1_000_000
T = 1_764_000_000 * S
LIMIT = Limit(count=4, multiple=10)
#: Waits of up to 5 s: two queued units.
RULE = Rule.build(Algorithm.LEAKY_BUCKET, LIMIT, max_delay_us=5 * S)
#: No waiting at all: a request passes only on an empty queue.
RULE_NO_DELAY = Rule.build(Algorithm.LEAKY_BUCKET, LIMIT)
#: Waits never limit: only the queue's capacity does.
RULE_PATIENT = Rule.build(Algorithm.LEAKY_BUCKET, LIMIT, max_delay_us=60 * S)


def test_rule_numbers() -> None:
    assert (RULE.capacity, RULE.emission_us, RULE.max_delay_us) == (4, 2_500_000, 5 * S)


def test_an_empty_queue_passes_at_once() -> None:
    outcome = decide(None, T, RULE, 1)
    assert outcome.decision == admitted(3, 2_500_000, 0)
    assert (outcome.state, outcome.ttl_us) == (T + 2_500_000, 2_500_000)


def test_queued_requests_wait_their_turn_up_to_max_delay() -> None:
    second = decide(T + 2_500_000, T, RULE, 1)
    assert second.decision == admitted(2, 5 * S, 2_500_000)
    assert second.state == T + 5 * S
    third = decide(second.state, T, RULE, 1)
    assert third.decision == admitted(1, 7_500_000, 5 * S)
    assert third.state == T + 7_500_000
    # A fourth fits the queue (3 + 1 <= 4) but would wait 7.5 s > 5 s: 2.5 s until it would not.
    fourth = decide(third.state, T, RULE, 1)
    assert fourth.decision == refused(1, 7_500_000, 2_500_000)
    assert (fourth.state, fourth.ttl_us) == (None, 0)


def test_the_queue_drains_continuously() -> None:
    # 1 s later the backlog is 6.5 s: still 3 queued, and 1.5 s too long a wait.
    assert decide(T + 7_500_000, T + S, RULE, 1).decision == refused(1, 6_500_000, 1_500_000)
    later = decide(T + 7_500_000, T + 2_500_000, RULE, 1)
    assert later.decision == admitted(1, 7_500_000, 5 * S)
    assert later.state == T + 10 * S


def test_a_full_queue_refuses_until_a_unit_drains() -> None:
    outcome = decide(T + 10 * S, T, RULE_PATIENT, 1)
    assert outcome.decision == refused(0, 10 * S, 2_500_000)
    assert not decide(T + 10 * S, T + 2_499_999, RULE_PATIENT, 1).decision.allowed
    assert decide(T + 10 * S, T + 2_500_000, RULE_PATIENT, 1).decision == admitted(
        0, 10 * S, 7_500_000
    )


def test_cost_above_one_takes_that_many_places() -> None:
    outcome = decide(None, T, RULE, 2)
    assert outcome.decision == admitted(2, 5 * S, 0)
    assert outcome.state == T + 5 * S


def test_retry_waits_for_the_delay_as_well_as_for_room() -> None:
    # Regression: with no delay allowed, a full queue (10 s of backlog) and cost 1, the retry
    # was 2.5 s (when the unit fits) although the request must also find the queue empty,
    # which takes the whole 10 s.
    full = decide(None, T, RULE_NO_DELAY, 4)
    assert full.decision == admitted(0, 10 * S, 0)
    assert full.state == T + 10 * S
    assert decide(full.state, T, RULE_NO_DELAY, 1).decision == refused(0, 10 * S, 10 * S)
    assert not decide(full.state, T + 2_500_000, RULE_NO_DELAY, 1).decision.allowed
    assert not decide(full.state, T + 10 * S - 1, RULE_NO_DELAY, 1).decision.allowed
    assert decide(full.state, T + 10 * S, RULE_NO_DELAY, 1).decision == admitted(3, 2_500_000, 0)


def test_cost_above_capacity_waits_one_period() -> None:
    assert decide(None, T, RULE, 5).decision == refused(4, 0, 10 * S)
    assert decide(T + 2_500_000, T, RULE, 5).decision == refused(3, 2_500_000, 10 * S)


def test_peek_on_an_empty_queue_stores_nothing() -> None:
    outcome = decide(None, T, RULE, 0)
    assert outcome.decision == admitted(4, 0, 0)
    assert outcome.ttl_us == 0


def test_emission_is_rounded_up_so_the_rate_is_never_exceeded() -> None:
    rule = Rule.build(Algorithm.LEAKY_BUCKET, Limit(count=3))
    assert rule.emission_us == 333_334
    assert decide(None, T, rule, 3).decision == admitted(0, 1_000_002, limit=3)


def test_state_past_its_ttl_is_no_state() -> None:
    outcome = decide(None, T, RULE, 1)
    expires = T + outcome.ttl_us
    for cost in range(6):
        assert decide(outcome.state, expires, RULE, cost) == decide(None, expires, RULE, cost)
    # One microsecond earlier a unit is still queued: 4 more do not fit.
    assert decide(outcome.state, expires - 1, RULE, 4).decision == refused(3, 1, 1)
    assert decide(None, expires - 1, RULE, 4).decision.allowed
