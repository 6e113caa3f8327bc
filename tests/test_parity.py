"""Python and Lua give the same answers: MemoryStorage against the real script, step by step.

Hypothesis draws a few limits (algorithm, count, period, burst, max_delay), then a sequence
of steps: a time
advance (0, 1 µs, within an emission interval, to the last microsecond of a window, over whole
periods, years), and a batch of 1-4 checks on distinct keys with a cost of 0..capacity + 1 and
a dry-run flag. Every BatchResult (decisions, refused index, clock) must be identical on
:class:`MemoryStorage` and on the dispatcher plus algorithm Lua files, run by real Redis and
by fakeredis (lupa). Batches mix algorithms, so all-or-nothing and the short-circuit at the
first refusal are compared too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_quota.algorithms import BUCKET_ALGORITHMS, Algorithm, Rule
from flask_quota.keys import limit_key, redact
from flask_quota.limits import Limit, Unit
from flask_quota.storage.base import BatchResult, Check
from flask_quota.storage.memory import MemoryStorage
from flask_quota.storage.redis import pack_checks, unpack_reply
from tests._support import ClockedRedisStorage, ManualClock

S = 1_000_000

#: (multiple, unit): from one second to the longest period a limit may have.
PERIODS = [
    (1, Unit.SECOND),
    (7, Unit.SECOND),
    (1, Unit.MINUTE),
    (1, Unit.HOUR),
    (1, Unit.YEAR),
    (10, Unit.YEAR),
]
#: Identities, hostile ones included: they only shape keys, which must stay distinct.
#: Where the clock stops moving forward (the year 2096).
MAX_NOW = 4 * 10**15
IDENTITIES = ["203.0.113.9", "user:42", "key:s3cret", "{tag}:*?%", "x" * 300, "日本\n\x00"]


class PersistingRedisStorage(ClockedRedisStorage):
    """ClockedRedisStorage whose keys expire by the manual clock, late, never by the wall clock.

    Redis expires keys on its own clock; these decisions run on a ManualClock that stands
    still for the milliseconds a step takes, or leaps years ahead. A state written with a
    TTL of 1 µs (``PX 1``) could vanish under Redis while memory, on the manual clock, still
    holds it. So each call goes in one MULTI/EXEC that reads the TTL each key was given and
    then ``PERSIST``s it (no key expires inside a transaction), and a key is deleted only once
    the manual clock is :attr:`EXPIRY_GRACE_PERIODS` periods past that TTL. Until then expiry
    is left to the algorithms: a state past its TTL must decide like no state, which memory
    (that drops it) and Redis (that keeps it) then check against each other. Later, Redis
    would long have expired it, and ``fixed_window`` and ``sliding_window``, which keep their
    window index modulo 4, rely on that. The script, packing and unpacking are the real ones.
    """

    #: How late a key is expired, in periods of its rule: a whole period past its TTL, but
    #: before a ``fixed_window`` or ``sliding_window`` index modulo 4 comes round again.
    EXPIRY_GRACE_PERIODS = 1

    def __init__(self, client: redis.Redis, clock: ManualClock) -> None:
        super().__init__(client, clock)
        #: key -> the manual-clock time it is deleted at, µs
        self.expiries: dict[str, int] = {}

    def evaluate(self, checks: Sequence[Check]) -> BatchResult:
        now_us = self.clock()
        expired = [key for key, at_us in self.expiries.items() if at_us <= now_us]
        if expired:
            self.client.delete(*expired)
            for key in expired:
                del self.expiries[key]
        keys, args = pack_checks(checks)
        pipe = self.client.pipeline(transaction=True)
        self._script(keys=keys, args=[*args, now_us], client=pipe)
        for check in checks:
            pipe.pttl(check.key)
            pipe.persist(check.key)
        replies: list[Any] = pipe.execute()
        for check, ttl_ms in zip(checks, replies[1::2], strict=True):
            if ttl_ms >= 0:  # written now; -1: kept as it was, -2: no state
                grace_us = self.EXPIRY_GRACE_PERIODS * check.rule.period_us
                self.expiries[check.key] = now_us + ttl_ms * 1000 + grace_us
            elif ttl_ms == -2:
                self.expiries.pop(check.key, None)
        return unpack_reply(replies[0], checks)


@dataclass(frozen=True)
class KeySpec:
    """One storage key and the one rule it is checked under.

    Not several counts per key (a live override): a state's TTL is worked out under the rule
    that wrote it, and memory (manual clock) and Redis (wall clock, kept alive here) cannot
    expire it at the same instant, so after a change of rule they may rightly differ.
    """

    key: str
    rule: Rule


@st.composite
def rules_for(draw: st.DrawFn, algorithm: Algorithm, multiple: int, unit: Unit) -> Rule:
    if algorithm is Algorithm.SLIDING_LOG:
        count = draw(st.integers(1, 6))
    else:
        count = draw(st.integers(1, 6) | st.sampled_from([1_000, 1_000_000_000]))
    limit = Limit(count=count, multiple=multiple, unit=unit)
    burst = None
    if algorithm in BUCKET_ALGORITHMS:
        burst = draw(st.none() | st.integers(1, 8))
    max_delay = 0
    if algorithm is Algorithm.LEAKY_BUCKET:
        emission = -(-limit.period_us // limit.count)
        max_delay = draw(
            st.sampled_from([0, 1, emission, 3 * emission]) | st.integers(0, 2 * limit.period_us)
        )
    return Rule.build(algorithm, limit, burst=burst, max_delay_us=max_delay)


@st.composite
def key_specs(draw: st.DrawFn, prefix: str, index: int) -> KeySpec:
    algorithm = draw(st.sampled_from(Algorithm))
    multiple, unit = draw(st.sampled_from(PERIODS))
    rule = draw(rules_for(algorithm, multiple, unit))
    identity = redact(draw(st.sampled_from(IDENTITIES)))
    key = limit_key(prefix, f"scope{index}", algorithm, multiple * int(unit), identity)
    return KeySpec(key, rule)


def costs(capacity: int) -> st.SearchStrategy[int]:
    edges = st.sampled_from(sorted({0, 1, 2, capacity - 1, capacity, capacity + 1}))
    return edges | st.integers(0, capacity + 1)


def advances(specs: Sequence[KeySpec], now_us: int) -> st.SearchStrategy[int]:
    periods = sorted({spec.rule.period_us for spec in specs})
    emissions = sorted({spec.rule.emission_us for spec in specs})
    # To the last microsecond of a window: where bursts bunch and boundaries bite.
    edges = [period - 1 - now_us % period for period in periods]
    return st.one_of(
        st.just(0),
        st.just(1),
        st.sampled_from(emissions + edges + [e + 2 for e in edges]),
        st.integers(2, max(2, 2 * emissions[-1])),
        st.sampled_from(periods).flatmap(lambda p: st.integers(p // 2, 3 * p)),
    )


def batch(data: st.DataObject, specs: Sequence[KeySpec]) -> list[Check]:
    chosen = data.draw(
        st.lists(st.sampled_from(specs), min_size=1, max_size=4, unique_by=lambda s: s.key)
    )
    checks = []
    for spec in chosen:
        checks.append(
            Check(
                key=spec.key,
                rule=spec.rule,
                cost=data.draw(costs(spec.rule.capacity)),
                dry_run=data.draw(st.booleans()),
            )
        )
    return checks


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "fakeredis"])
def lua_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client whose server runs the Lua: the real one, or fakeredis on lupa."""
    if request.param == "redis":
        yield request.getfixturevalue("redis_client")
    else:
        client = fakeredis.FakeRedis()
        yield client
        client.close()


def run_parity(client: redis.Redis, data: st.DataObject, steps: int) -> None:
    prefix = f"qp{uuid.uuid4().hex[:12]}"
    clock = ManualClock()
    clock.advance(us=data.draw(st.integers(0, 10**9)))
    memory = MemoryStorage(clock=clock)
    lua = PersistingRedisStorage(client, clock)
    specs = [data.draw(key_specs(prefix, index)) for index in range(data.draw(st.integers(1, 4)))]
    try:
        for _ in range(data.draw(st.integers(1, steps))):
            # Times stay far below 2**53 µs (year 2255), where Lua's doubles stop being exact.
            clock.advance(us=min(data.draw(advances(specs, clock.now_us)), MAX_NOW - clock.now_us))
            checks = batch(data, specs)
            expected = memory.evaluate(checks)
            assert lua.evaluate(checks) == expected, (clock.now_us, checks)
        # Whatever state each side kept must still decide alike, now and much later.
        for later in (0, 10 * 365 * 86_400 * S):
            clock.advance(us=later)
            for spec in specs:
                probe = [Check(key=spec.key, rule=spec.rule, cost=1, dry_run=True)]
                assert lua.evaluate(probe) == memory.evaluate(probe)
    finally:
        client.delete(*(spec.key for spec in specs))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_memory_and_lua_agree_step_by_step(lua_client: redis.Redis, data: st.DataObject) -> None:
    run_parity(lua_client, data, steps=20)


# Sequences that once exposed a Python/Lua fix: the Lua must give the hand-worked numbers too.
W = 1_764_000_000 * S
P = 10 * S


def _sequence(
    client: redis.Redis, algorithm: Algorithm, steps: list[tuple[int, int]], **rule: int
) -> list[BatchResult]:
    rule_ = Rule.build(algorithm, Limit(count=4, multiple=10), **rule)
    key = f"qp{uuid.uuid4().hex[:12]}:{algorithm.value}"
    clock = ManualClock(W)
    memory, lua = MemoryStorage(clock=clock), PersistingRedisStorage(client, clock)
    results = []
    try:
        for now, cost in steps:
            clock.now_us = now
            checks = [Check(key=key, rule=rule_, cost=cost)]
            result = lua.evaluate(checks)
            assert result == memory.evaluate(checks)
            results.append(result)
    finally:
        client.delete(key)
    return results


def test_sliding_window_rounds_the_previous_weight_up_in_lua(lua_client: redis.Redis) -> None:
    steps = [(W + P - 1, 4), (W + P + S, 1), (W + P + 2_499_999, 1), (W + P + 2_500_000, 1)]
    results = _sequence(lua_client, Algorithm.SLIDING_WINDOW, steps)
    assert [r.decisions[0].allowed for r in results] == [True, False, False, True]
    # ceil(4 * 9 / 10) = 4: refused until ceil(4 * (P - e) / P) <= 3, e = 2.5 s.
    assert results[1].decisions[0].retry_after_us == 1_500_000
    assert results[2].decisions[0].retry_after_us == 1


@pytest.mark.parametrize(
    ("algorithm", "last_remaining"),
    # A window later, the fixed window is whole again; the sliding one still weighs 3.
    [(Algorithm.FIXED_WINDOW, 4), (Algorithm.SLIDING_WINDOW, 1)],
)
def test_window_state_is_gone_before_its_packed_index_comes_round(
    lua_client: redis.Redis, algorithm: Algorithm, last_remaining: int
) -> None:
    # The packed state keeps the window index modulo 4: 4 windows on it would read as this
    # window's, were the key not expired before (here by the harness).
    steps = [(W, 3), (W + 4 * P, 3), (W + 5 * P, 0)]
    results = _sequence(lua_client, algorithm, steps)
    assert [r.decisions[0].remaining for r in results] == [1, 1, last_remaining]


def test_leaky_bucket_retry_waits_for_max_delay_in_lua(lua_client: redis.Redis) -> None:
    steps = [(W, 4), (W, 1), (W + 10 * S - 1, 1), (W + 10 * S, 1)]
    results = _sequence(lua_client, Algorithm.LEAKY_BUCKET, steps)
    assert [r.decisions[0].allowed for r in results] == [True, False, False, True]
    assert results[1].decisions[0].retry_after_us == 10 * S
