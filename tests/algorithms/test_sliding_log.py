"""sliding_log, worked by hand: 4 per 10 s, one log entry per unit; an entry at ``t`` counts
while ``t > now - P``."""

from __future__ import annotations

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.algorithms.sliding_log import decide
from flask_quota.limits import Limit
from tests.algorithms._decisions import admitted, refused

S = 1_000_000
P = 10 * S
T = 1_764_000_000 * S + 1_234_567
RULE = Rule.build(Algorithm.SLIDING_LOG, Limit(count=4, multiple=10))


def test_first_request_starts_the_log() -> None:
    outcome = decide(None, T, RULE, 1)
    assert outcome.decision == admitted(3, P)
    assert (outcome.state, outcome.ttl_us) == ((T,), P)


def test_cost_above_one_logs_one_entry_per_unit() -> None:
    outcome = decide((T,), T + 2 * S, RULE, 2)
    assert outcome.decision == admitted(1, P)
    assert outcome.state == (T, T + 2 * S, T + 2 * S)


def test_refused_until_enough_of_the_oldest_entries_expire() -> None:
    log = (T, T + 2 * S, T + 2 * S)
    # 3 live + 2 > 4: one entry must go, the oldest (T) at T + P: 7 s from T + 3 s.
    outcome = decide(log, T + 3 * S, RULE, 2)
    assert outcome.decision == refused(1, 9 * S, 7 * S)
    assert (outcome.state, outcome.ttl_us) == (None, 0)
    assert not decide(log, T + P - 1, RULE, 2).decision.allowed
    later = decide(log, T + P, RULE, 2)
    assert later.decision == admitted(0, P)
    assert later.state == (T + 2 * S, T + 2 * S, T + P, T + P)


def test_retry_counts_the_entries_that_must_expire() -> None:
    log = (T, T + 1 * S, T + 2 * S, T + 3 * S)
    # cost 3 needs three entries gone: the third oldest (T + 2 s) expires at T + 12 s.
    assert decide(log, T + 4 * S, RULE, 3).decision == refused(0, 9 * S, 8 * S)
    assert decide(log, T + 12 * S, RULE, 3).decision == admitted(0, P)


def test_cost_above_capacity_waits_one_period() -> None:
    assert decide(None, T, RULE, 5).decision == refused(4, 0, P)
    assert decide((T,), T + S, RULE, 5).decision == refused(3, 9 * S, P)


def test_peek_reports_without_charging() -> None:
    log = (T, T + 1 * S, T + 2 * S, T + 3 * S)
    outcome = decide(log, T + 4 * S, RULE, 0)
    assert outcome.decision == admitted(0, 9 * S)
    assert (outcome.state, outcome.ttl_us) == (log, 9 * S)
    empty = decide(None, T, RULE, 0)
    assert empty.decision == admitted(4, 0)
    assert empty.ttl_us == 0


def test_expired_entries_are_trimmed_on_admission() -> None:
    outcome = decide((T, T + 2 * S), T + 11 * S, RULE, 1)
    assert outcome.decision == admitted(2, P)
    assert outcome.state == (T + 2 * S, T + 11 * S)


def test_the_span_slides_with_no_calendar_boundary() -> None:
    # Four at T; a whole period later, exactly, all four have expired at once.
    full = (T, T, T, T)
    assert decide(full, T + P - 1, RULE, 1).decision == refused(0, 1, 1)
    assert decide(full, T + P, RULE, 4).decision == admitted(0, P)


def test_state_past_its_ttl_is_no_state() -> None:
    outcome = decide((T,), T + 3 * S, RULE, 1)
    # The newest entry sets the TTL: T + 3 s + P.
    assert outcome.ttl_us == P
    expires = T + 3 * S + P
    for cost in range(6):
        assert decide(outcome.state, expires, RULE, cost) == decide(None, expires, RULE, cost)
    assert decide(outcome.state, expires - 1, RULE, 4).decision == refused(3, 1, 1)
