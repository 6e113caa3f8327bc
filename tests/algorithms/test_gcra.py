"""gcra, worked by hand: 4 per 10 s, so one cell every 2.5 s and a tolerance of 4 cells (10 s).

State is the theoretical arrival time (TAT); a request of ``cost`` cells is admitted when
``max(TAT, now) + cost * 2.5 s - 10 s <= now``.
"""

from __future__ import annotations

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.algorithms.gcra import decide
from flask_quota.limits import Limit
from tests.algorithms._decisions import admitted, refused

S = 1_000_000
T = 1_764_000_000 * S + 4_321
LIMIT = Limit(count=4, multiple=10)
RULE = Rule.build(Algorithm.GCRA, LIMIT)


def test_first_request_pushes_the_tat_one_cell_ahead() -> None:
    outcome = decide(None, T, RULE, 1)
    assert outcome.decision == admitted(3, 2_500_000)
    assert (outcome.state, outcome.ttl_us) == (T + 2_500_000, 2_500_000)


def test_cost_above_one_spends_the_whole_tolerance() -> None:
    outcome = decide(T + 2_500_000, T, RULE, 3)
    assert outcome.decision == admitted(0, 10 * S)
    assert outcome.state == T + 10 * S


def test_refused_until_the_tat_is_within_tolerance_again() -> None:
    outcome = decide(T + 10 * S, T, RULE, 1)
    assert outcome.decision == refused(0, 10 * S, 2_500_000)
    assert (outcome.state, outcome.ttl_us) == (None, 0)
    # 1 s later: 9 s ahead, still no room for a 2.5 s cell; 1.5 s to go.
    assert decide(T + 10 * S, T + S, RULE, 1).decision == refused(0, 9 * S, 1_500_000)
    assert not decide(T + 10 * S, T + 2_499_999, RULE, 1).decision.allowed
    later = decide(T + 10 * S, T + 2_500_000, RULE, 1)
    assert later.decision == admitted(0, 10 * S)
    assert later.state == T + 12_500_000


def test_room_comes_back_continuously() -> None:
    # 5 s after a full burst the TAT is 5 s ahead: two cells of room.
    assert decide(T + 10 * S, T + 5 * S, RULE, 2).decision == admitted(0, 10 * S)
    assert decide(T + 10 * S, T + 5 * S, RULE, 3).decision == refused(2, 5 * S, 2_500_000)


def test_burst_sets_the_tolerance() -> None:
    rule = Rule.build(Algorithm.GCRA, LIMIT, burst=2)
    assert (rule.capacity, rule.emission_us) == (2, 2_500_000)
    outcome = decide(None, T, rule, 2)
    assert outcome.decision == admitted(0, 5 * S, limit=2)
    assert decide(outcome.state, T, rule, 1).decision == refused(0, 5 * S, 2_500_000, limit=2)


def test_cost_above_capacity_waits_one_period() -> None:
    assert decide(None, T, RULE, 5).decision == refused(4, 0, 10 * S)
    assert decide(T + 2_500_000, T, RULE, 5).decision == refused(3, 2_500_000, 10 * S)


def test_peek_reports_without_charging() -> None:
    outcome = decide(T + 10 * S, T + S, RULE, 0)
    assert outcome.decision == admitted(0, 9 * S)
    assert (outcome.state, outcome.ttl_us) == (T + 10 * S, 9 * S)
    empty = decide(None, T, RULE, 0)
    assert empty.decision == admitted(4, 0)
    assert empty.ttl_us == 0


def test_emission_is_rounded_up_so_the_rate_is_never_exceeded() -> None:
    rule = Rule.build(Algorithm.GCRA, Limit(count=3))
    assert rule.emission_us == 333_334
    outcome = decide(None, T, rule, 3)
    assert outcome.decision == admitted(0, 1_000_002, limit=3)


def test_a_tat_in_the_past_counts_as_now() -> None:
    assert decide(T - 60 * S, T, RULE, 4).decision == admitted(0, 10 * S)


def test_state_past_its_ttl_is_no_state() -> None:
    outcome = decide(None, T, RULE, 1)
    expires = T + outcome.ttl_us
    for cost in range(6):
        assert decide(outcome.state, expires, RULE, cost) == decide(None, expires, RULE, cost)
    assert decide(outcome.state, expires - 1, RULE, 4).decision == refused(3, 1, 1)
