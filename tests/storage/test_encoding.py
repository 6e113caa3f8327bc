"""How states are encoded in Redis: compact where it matters, exact everywhere."""

from __future__ import annotations

import redis

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.algorithms.sliding_window import decide
from flask_quota.keys import limit_key
from flask_quota.limits import parse_limit
from flask_quota.storage import MemoryStorage
from flask_quota.storage.base import Check
from tests._support import ClockedRedisStorage, ManualClock

HOUR_US = 3_600_000_000
#: How many window indexes a packed window state tells apart (its low bits: index mod 4).
INDEXES = 4
#: Where a packed sliding_window state keeps its previous count.
PACK = 2**25


def key(prefix: str, algorithm: Algorithm) -> str:
    return limit_key(prefix, "enc", algorithm, 3600, "user:1")


def test_fixed_window_state_is_one_integer(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.FIXED_WINDOW, parse_limit("100000/hour"))
    k = key(key_prefix, Algorithm.FIXED_WINDOW)
    index = clock.now_us // 3_600_000_000
    storage.evaluate([Check(key=k, rule=rule, cost=3)])
    assert redis_client.get(k) == str(3 * INDEXES + index % INDEXES).encode()
    storage.evaluate([Check(key=k, rule=rule, cost=4000)])  # added in place
    assert redis_client.get(k) == str(4003 * INDEXES + index % INDEXES).encode()
    assert redis_client.object("encoding", k) == b"int"


def test_fixed_window_counts_the_largest_limits_exactly(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    redis_storage, memory = ClockedRedisStorage(redis_client, clock), MemoryStorage(clock)
    rule = Rule.build(Algorithm.FIXED_WINDOW, parse_limit("1000000000/hour"))
    k = key(key_prefix, Algorithm.FIXED_WINDOW)
    for cost in (999_999_990, 5, 4, 2, 1, 0):
        checks = [Check(key=k, rule=rule, cost=cost)]
        assert redis_storage.evaluate(checks) == memory.evaluate(checks), cost
    assert redis_storage.evaluate(checks).decisions[0].remaining == 0


def test_fixed_window_reads_the_string_state_of_earlier_versions(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.FIXED_WINDOW, parse_limit("10/hour"))
    k = key(key_prefix, Algorithm.FIXED_WINDOW)
    index = clock.now_us // 3_600_000_000
    for stored, used in [(f"{index} 7", 7), (f"{index - 1} 7", 0), (f"{index + 4} 7", 0)]:
        redis_client.set(k, stored, px=3_600_000)
        result = storage.evaluate([Check(key=k, rule=rule, cost=1)])
        assert result.decisions[0].remaining == 10 - used - 1, stored
        # Rewritten in the integer form, which later requests add to.
        assert redis_client.get(k) == str((used + 1) * INDEXES + index % INDEXES).encode()


def test_fixed_window_state_of_the_last_window_counts_for_nothing(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    # Redis keeps a key through the millisecond it expires in: read then, the state is the
    # last window's.
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.FIXED_WINDOW, parse_limit("4/hour"))
    k = key(key_prefix, Algorithm.FIXED_WINDOW)
    clock.advance(us=HOUR_US - clock.now_us % HOUR_US - 1)  # the window's last microsecond
    assert storage.evaluate([Check(key=k, rule=rule, cost=4)]).allowed
    clock.advance(us=600)  # 599 µs into the next window
    result = storage.evaluate([Check(key=k, rule=rule, cost=4)])
    assert result.allowed and result.decisions[0].remaining == 0


def sliding_window_packed(index: int, current: int, previous: int) -> bytes:
    return str((previous * PACK + current) * INDEXES + index % INDEXES).encode()


def test_sliding_window_state_is_one_integer(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.SLIDING_WINDOW, parse_limit("100/hour"))
    k = key(key_prefix, Algorithm.SLIDING_WINDOW)
    storage.evaluate([Check(key=k, rule=rule, cost=2)])
    index = clock.now_us // HOUR_US
    assert redis_client.get(k) == sliding_window_packed(index, 2, 0)
    assert redis_client.object("encoding", k) == b"int"

    clock.advance(3600)  # the next window: the counts move down, the index on
    storage.evaluate([Check(key=k, rule=rule, cost=5)])
    assert redis_client.get(k) == sliding_window_packed(index + 1, 5, 2)
    assert redis_client.object("encoding", k) == b"int"


def test_sliding_window_packed_index_carries_across_its_wrap(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # The index modulo 4 goes from 3 to 0: the state is still the previous window's.
    last = 4 * 122_500 + 3
    clock = ManualClock(last * HOUR_US + HOUR_US // 2)
    redis_storage, memory = ClockedRedisStorage(redis_client, clock), MemoryStorage(clock)
    rule = Rule.build(Algorithm.SLIDING_WINDOW, parse_limit("10/hour"))
    checks = [Check(key=key(key_prefix, Algorithm.SLIDING_WINDOW), rule=rule, cost=6)]
    assert redis_storage.evaluate(checks) == memory.evaluate(checks)
    assert redis_client.get(checks[0].key) == sliding_window_packed(last, 6, 0)

    clock.advance(3600)  # half way into window 4 * 122_501: ceil(6 / 2) = 3 still count
    result = redis_storage.evaluate(checks)
    assert result == memory.evaluate(checks)
    assert result.decisions[0].remaining == 10 - 3 - 6
    assert redis_client.get(checks[0].key) == sliding_window_packed(last + 1, 6, 6)


def test_sliding_window_counts_past_the_packed_range_exactly(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    redis_storage = ClockedRedisStorage(redis_client, clock)
    memory = MemoryStorage(clock)
    rule = Rule.build(Algorithm.SLIDING_WINDOW, parse_limit("50000000/hour"))
    k = key(key_prefix, Algorithm.SLIDING_WINDOW)
    # (advance µs, cost, the stored form after it): packed while both counts are below 2**25
    steps = [
        (0, PACK - 1, "int"),
        (1, 1, "string"),  # current reaches 2**25
        (1, 5, "string"),
        (HOUR_US, 1, "string"),  # the next window: previous holds 2**25 + 5
        (HOUR_US, 1, "int"),  # and the one after: previous is 1
        (HOUR_US // 2, 0, "int"),
    ]
    for advance_us, cost, form in steps:
        clock.advance(us=advance_us)
        checks = [Check(key=k, rule=rule, cost=cost)]
        result = redis_storage.evaluate(checks)
        assert result == memory.evaluate(checks), cost
        assert result.allowed, cost
        assert redis_client.object("encoding", k) == (b"int" if form == "int" else b"embstr")
        assert (b" " in redis_client.get(k)) == (form == "string"), (advance_us, cost)
    index = clock.now_us // HOUR_US
    assert redis_client.get(k) == sliding_window_packed(index, 1, 1)


def test_sliding_window_reads_the_string_state_of_earlier_versions(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.SLIDING_WINDOW, parse_limit("10/hour"))
    k = key(key_prefix, Algorithm.SLIDING_WINDOW)
    clock.advance(900)  # a quarter into the window
    now_us = clock.now_us
    index, window_start = now_us // HOUR_US, now_us - now_us % HOUR_US
    for stored, state in [
        (f"{index} 3 4", (window_start, 3, 4)),  # this window's: ceil(4 * 3 / 4) + 3 = 6 used
        (f"{index - 1} 4 9", (window_start - HOUR_US, 4, 9)),  # the last: ceil(4 * 3 / 4) = 3
        (f"{index - 2} 8 1", (window_start - 2 * HOUR_US, 8, 1)),  # stale: 0
    ]:
        redis_client.set(k, stored, px=7_200_000)
        result = storage.evaluate([Check(key=k, rule=rule, cost=1)])
        expected = decide(state, now_us, rule, 1)
        assert result.decisions == (expected.decision,), stored
        assert expected.state is not None
        _, current, previous = expected.state
        assert redis_client.get(k) == sliding_window_packed(index, current, previous), stored


def test_sliding_window_state_two_windows_old_is_stale(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    # The key expires at the end of the next window, but Redis keeps it through that
    # millisecond (expired once its clock is past it; a script sees keys as at its start):
    # read then, the state is two windows old and counts for nothing.
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.SLIDING_WINDOW, parse_limit("4/hour"))
    k = key(key_prefix, Algorithm.SLIDING_WINDOW)
    clock.advance(us=HOUR_US - 1)  # the window's last microsecond
    assert storage.evaluate([Check(key=k, rule=rule, cost=4)]).allowed
    stored = redis_client.get(k)
    assert stored == sliding_window_packed(clock.now_us // HOUR_US, 4, 0)

    clock.advance(us=HOUR_US + 600)  # 599 µs into the window after next
    assert redis_client.get(k) == stored
    result = storage.evaluate([Check(key=k, rule=rule, cost=4)])
    assert result.decisions[0].allowed
    assert result.decisions[0].remaining == 0
    assert redis_client.get(k) == sliding_window_packed(clock.now_us // HOUR_US, 4, 0)
