"""How states are encoded in Redis: compact where it matters, exact everywhere."""

from __future__ import annotations

import redis

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.keys import limit_key
from flask_quota.limits import parse_limit
from flask_quota.storage import MemoryStorage
from flask_quota.storage.base import Check
from tests._support import ClockedRedisStorage, ManualClock

PACK = 2**21


def key(prefix: str, algorithm: Algorithm) -> str:
    return limit_key(prefix, "enc", algorithm, 3600, "user:1")


def test_fixed_window_state_is_one_integer(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.FIXED_WINDOW, parse_limit("100/hour"))
    storage.evaluate([Check(key=key(key_prefix, Algorithm.FIXED_WINDOW), rule=rule, cost=3)])

    stored = redis_client.get(key(key_prefix, Algorithm.FIXED_WINDOW))
    assert stored == str((clock.now_us // 3_600_000_000) * PACK + 3).encode()
    assert redis_client.object("encoding", key(key_prefix, Algorithm.FIXED_WINDOW)) == b"int"


def test_fixed_window_counts_past_the_packed_range_exactly(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    redis_storage = ClockedRedisStorage(redis_client, clock)
    memory = MemoryStorage(clock)
    rule = Rule.build(Algorithm.FIXED_WINDOW, parse_limit("3000000/hour"))
    k = key(key_prefix, Algorithm.FIXED_WINDOW)
    for cost in (PACK - 1, 1, 5, 900_000, 100_000, 0):
        checks = [Check(key=k, rule=rule, cost=cost)]
        assert redis_storage.evaluate(checks) == memory.evaluate(checks), cost
        clock.advance(1)
    assert b" " in redis_client.get(k)  # past 2**21 units: the "index used" form


def test_sliding_window_state_stores_the_window_index(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = ClockedRedisStorage(redis_client, clock)
    rule = Rule.build(Algorithm.SLIDING_WINDOW, parse_limit("100/hour"))
    k = key(key_prefix, Algorithm.SLIDING_WINDOW)
    storage.evaluate([Check(key=k, rule=rule, cost=2)])

    assert redis_client.get(k) == f"{clock.now_us // 3_600_000_000} 2 0".encode()
