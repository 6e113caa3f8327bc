"""Allow list, blocks and refusal counting: looked up inside the same storage call as the
limits, with the same answers on memory and on real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.keys import ALLOW, BLOCK, REFUSALS, identity_key, limit_key
from flask_quota.limits import parse_limit
from flask_quota.storage import MemoryStorage
from flask_quota.storage.base import ALLOW_IN_USE, BLOCK_IN_USE, Check, Storage, Subject
from tests._support import ClockedRedisStorage, ManualClock

RULE = Rule.build(Algorithm.FIXED_WINDOW, parse_limit("2/minute"))
WINDOW_US = 300 * 1_000_000


@pytest.fixture(params=["memory", "redis"])
def make_storage(
    request: pytest.FixtureRequest, clock: ManualClock
) -> Iterator[Callable[[], Storage]]:
    if request.param == "memory":
        storage = MemoryStorage(clock)
        yield lambda: storage
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        storage_r = ClockedRedisStorage(client, clock)
        yield lambda: storage_r


def subject(prefix: str, identity: str) -> Subject:
    return Subject(
        identity=identity,
        allow_key=identity_key(prefix, ALLOW, identity),
        block_key=identity_key(prefix, BLOCK, identity),
        refusals_key=identity_key(prefix, REFUSALS, identity),
    )


def check(prefix: str, identity: str, index: int) -> Check:
    key = limit_key(prefix, "view", Algorithm.FIXED_WINDOW, 60, identity)
    return Check(key=key, rule=RULE, subject=index)


def test_allow_listed_subject_passes_unchecked_and_uncharged(
    make_storage: Callable[[], Storage], key_prefix: str
) -> None:
    storage = make_storage()
    subjects = [subject(key_prefix, "1.2.3.4"), subject(key_prefix, "user:7")]
    checks = [check(key_prefix, "1.2.3.4", 0), check(key_prefix, "user:7", 1)]
    storage.put(subjects[1].allow_key, "1", None)
    for _ in range(5):
        result = storage.evaluate(checks, subjects, WINDOW_US)
        assert result.allowed and result.allowed_by_list and result.decisions == ()
    storage.clear([subjects[1].allow_key])
    first = storage.evaluate(checks, subjects, WINDOW_US)
    assert not first.allowed_by_list
    assert [d.remaining for d in first.decisions] == [1, 1]


def test_blocked_subject_is_refused_with_time_left(
    make_storage: Callable[[], Storage], key_prefix: str
) -> None:
    storage = make_storage()
    subjects = [subject(key_prefix, "1.2.3.4"), subject(key_prefix, "user:7")]
    checks = [check(key_prefix, "1.2.3.4", 0), check(key_prefix, "user:7", 1)]
    storage.put(subjects[1].block_key, "1", 60_000)
    result = storage.evaluate(checks, subjects, WINDOW_US)
    assert not result.allowed
    assert result.blocked_subject == 1
    assert result.refused_index is None and result.decisions == ()
    assert 59_000_000 <= result.block_remaining_us <= 60_000_000
    assert result.refusals == 1
    assert storage.get(subjects[1].refusals_key) == "1"
    # Nothing was charged while blocked.
    storage.clear([subjects[1].block_key])
    assert [d.remaining for d in storage.evaluate(checks, subjects, WINDOW_US).decisions] == [1, 1]


def test_refusals_count_per_refused_subject_within_the_window(
    make_storage: Callable[[], Storage], key_prefix: str, clock: ManualClock
) -> None:
    storage = make_storage()
    subjects = [subject(key_prefix, "user:7")]
    checks = [check(key_prefix, "user:7", 0)]
    counts = [storage.evaluate(checks, subjects, WINDOW_US).refusals for _ in range(6)]
    assert counts == [0, 0, 1, 2, 3, 4]
    ttl = storage.ttl_ms(subjects[0].refusals_key)
    assert ttl is not None and 0 < ttl <= 300_000
    if isinstance(storage, MemoryStorage):  # Redis expires on its own clock, checked by PTTL
        clock.advance(301)
        assert storage.get(subjects[0].refusals_key) is None


def test_a_check_without_subject_counts_no_refusal(
    make_storage: Callable[[], Storage], key_prefix: str
) -> None:
    storage = make_storage()
    subjects = [subject(key_prefix, "user:7")]
    checks = [Check(key=check(key_prefix, "user:7", 0).key, rule=RULE)]
    results = [storage.evaluate(checks, subjects, WINDOW_US) for _ in range(3)]
    assert [r.refusals for r in results] == [0, 0, 0]
    assert not results[-1].allowed
    assert storage.get(subjects[0].refusals_key) is None


def test_peek_of_cost_zero_writes_nothing(
    make_storage: Callable[[], Storage], key_prefix: str
) -> None:
    storage = make_storage()
    for algorithm in Algorithm:
        rule = Rule.build(algorithm, parse_limit("3/minute"), max_delay_us=10**9)
        key = limit_key(key_prefix, "peek", algorithm, 60, "user:1")
        peek = storage.evaluate([Check(key=key, rule=rule, cost=0)])
        assert peek.allowed and peek.decisions[0].remaining == 3
        assert storage.ttl_ms(key) is None, algorithm
        storage.evaluate([Check(key=key, rule=rule, cost=1)])
        after = storage.evaluate([Check(key=key, rule=rule, cost=0)])
        assert after.decisions[0].remaining == 2, algorithm


# --- the lists' keys are sent only once a list is in use (Redis) --------------------------


class RecordingStorage(ClockedRedisStorage):
    """Records the KEYS of each script call."""

    def __init__(self, client: redis.Redis, clock: ManualClock) -> None:
        super().__init__(client, clock)
        self.calls: list[list[str]] = []

    def _run(self, keys: list[bytes], args: list[bytes | str]) -> bytes:
        self.calls.append([key.decode() for key in keys])
        return super()._run(keys, args)


def two_identities(prefix: str) -> tuple[list[Subject], list[Check]]:
    """An IP and a user, each with one limit."""
    subjects = [subject(prefix, "1.2.3.4"), subject(prefix, "user:7")]
    return subjects, [check(prefix, "1.2.3.4", 0), check(prefix, "user:7", 1)]


@pytest.mark.redis
def test_unused_lists_cost_one_key_per_subject(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = RecordingStorage(redis_client, clock)
    subjects, checks = two_identities(key_prefix)
    config = f"{key_prefix}:%config"

    result = storage.evaluate(checks, subjects, WINDOW_US, config_key=config)

    assert result.allowed
    refusal_counters = [s.refusals_key for s in subjects]
    assert storage.calls == [[checks[0].key, checks[1].key, *refusal_counters, config]]


@pytest.mark.redis
def test_a_list_first_used_by_another_process_is_obeyed_at_once(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = RecordingStorage(redis_client, clock)
    subjects, checks = two_identities(key_prefix)
    config = f"{key_prefix}:%config"
    assert storage.evaluate(checks, subjects, WINDOW_US, config_key=config).allowed
    # Another process (the CLI) turns the blocklist on and blocks user:7.
    redis_client.hset(config, BLOCK_IN_USE, "1")
    redis_client.set(subjects[1].block_key, "1", px=60_000)
    storage.calls.clear()

    refused = storage.evaluate(checks, subjects, WINDOW_US, config_key=config)
    again = storage.evaluate(checks, subjects, WINDOW_US, config_key=config)

    assert refused.blocked_subject == 1 and again.blocked_subject == 1
    # Once: a call answered "lists needed", then the same call with the lists' keys; after
    # that every call carries them.
    assert [len(keys) for keys in storage.calls] == [2 + 2 + 1, 2 + 6 + 1, 2 + 6 + 1]


@pytest.mark.redis
def test_a_process_that_reads_the_flags_sends_the_lists_from_its_next_call(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = RecordingStorage(redis_client, clock)
    subjects = [subject(key_prefix, "1.2.3.4")]
    checks = [check(key_prefix, "1.2.3.4", 0)]
    config = f"{key_prefix}:%config"
    redis_client.hset(config, ALLOW_IN_USE, "1")

    storage.read_config(config)
    storage.evaluate(checks, subjects, WINDOW_US, config_key=config)

    assert [len(keys) for keys in storage.calls] == [1 + 3 + 1]


@pytest.mark.redis
def test_the_call_answered_lists_needed_charges_nothing(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    storage = RecordingStorage(redis_client, clock)
    subjects = [subject(key_prefix, "1.2.3.4")]
    checks = [check(key_prefix, "1.2.3.4", 0)]
    config = f"{key_prefix}:%config"
    storage.evaluate(checks, subjects, WINDOW_US, config_key=config)
    redis_client.hset(config, ALLOW_IN_USE, "1")  # in use, but not for this subject

    result = storage.evaluate(checks, subjects, WINDOW_US, config_key=config)

    assert len(storage.calls) == 3
    assert result.allowed and result.decisions[0].remaining == 0  # 2/minute: two charges
    assert int(redis_client.get(checks[0].key) or 0) // 4 == 2  # used * 4 + index mod 4
