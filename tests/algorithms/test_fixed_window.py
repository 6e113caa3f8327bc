"""fixed_window, worked by hand: 4 per 10 s over calendar windows [W, W + P), [W + P, ...)."""

from __future__ import annotations

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.algorithms.fixed_window import decide
from flask_quota.limits import Limit
from tests.algorithms._decisions import admitted, refused

S = 1_000_000
P = 10 * S
#: A window start: 1_764_000_000 s is a multiple of 10 s.
W = 1_764_000_000 * S
RULE = Rule.build(Algorithm.FIXED_WINDOW, Limit(count=4, multiple=10))


def test_first_request_opens_the_window() -> None:
    outcome = decide(None, W + 2 * S, RULE, 1)
    assert outcome.decision == admitted(3, 8 * S)
    assert (outcome.state, outcome.ttl_us) == ((W, 1), 8 * S)


def test_requests_count_up_to_the_limit() -> None:
    state = None
    remainings = []
    for _ in range(4):
        outcome = decide(state, W + 2 * S, RULE, 1)
        assert outcome.decision.allowed
        remainings.append(outcome.decision.remaining)
        state = outcome.state
    assert remainings == [3, 2, 1, 0]
    assert state == (W, 4)
    assert decide(state, W + 2 * S, RULE, 1).decision == refused(0, 8 * S, 8 * S)


def test_cost_above_one_spends_that_many() -> None:
    outcome = decide((W, 1), W + 5 * S, RULE, 3)
    assert outcome.decision == admitted(0, 5 * S)
    assert (outcome.state, outcome.ttl_us) == ((W, 4), 5 * S)


def test_a_cost_that_does_not_fit_waits_for_the_next_window_and_is_not_charged() -> None:
    outcome = decide((W, 2), W + 6 * S, RULE, 3)
    assert outcome.decision == refused(2, 4 * S, 4 * S)
    assert (outcome.state, outcome.ttl_us) == (None, 0)


def test_cost_above_capacity_waits_one_period() -> None:
    assert decide(None, W + 2 * S, RULE, 5).decision == refused(4, 0, P)
    assert decide((W, 1), W + 2 * S, RULE, 5).decision == refused(3, 8 * S, P)


def test_peek_reports_without_charging() -> None:
    outcome = decide((W, 4), W + 6 * S, RULE, 0)
    assert outcome.decision == admitted(0, 4 * S)
    assert (outcome.state, outcome.ttl_us) == ((W, 4), 4 * S)
    empty = decide(None, W + 6 * S, RULE, 0)
    assert empty.decision == admitted(4, 0)
    # Nothing counted: the state matters for no time at all.
    assert empty.ttl_us == 0


def test_the_window_rolls_over_at_its_calendar_end() -> None:
    assert decide((W, 4), W + P - 1, RULE, 1).decision == refused(0, 1, 1)
    outcome = decide((W, 4), W + P, RULE, 1)
    assert outcome.decision == admitted(3, P)
    assert outcome.state == (W + P, 1)
    # The boundary burst the docstring warns about: 4 at the end of one window, 4 at the
    # start of the next, 2 microseconds apart.
    assert decide((W + P, 3), W + P, RULE, 1).decision == admitted(0, P)


def test_an_older_window_is_forgotten() -> None:
    assert decide((W - P, 4), W + S, RULE, 4).decision == admitted(0, 9 * S)


def test_state_past_its_ttl_is_no_state() -> None:
    outcome = decide(None, W + 2 * S, RULE, 1)
    expires = W + 2 * S + outcome.ttl_us
    assert expires == W + P
    for cost in range(6):
        assert decide(outcome.state, expires, RULE, cost) == decide(None, expires, RULE, cost)
    assert decide(outcome.state, expires - 1, RULE, 4).decision == refused(3, 1, 1)
    assert decide(None, expires - 1, RULE, 4).decision == admitted(0, 1)


def test_windows_align_to_the_epoch_not_to_the_first_request() -> None:
    rule = Rule.build(Algorithm.FIXED_WINDOW, Limit(count=1, multiple=7))
    now = W + 3 * S
    # 1_764_000_003 s = 7 * 252_000_000 + 3 s: the 7 s window began 3 s ago.
    assert (now // S) % 7 == 3
    assert decide(None, now, rule, 1).decision.reset_after_us == 4 * S
