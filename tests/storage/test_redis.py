"""RedisStorage on a real server: one round trip, NOSCRIPT, TTLs, all-or-nothing, short-circuit,
dry runs, the server's clock and a dead server; the atomicity rules on memory too."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest
import redis

from flask_quota import StorageError
from flask_quota.algorithms import DECIDERS, Algorithm, Rule
from flask_quota.limits import Limit, Unit, parse_limit
from flask_quota.storage import storage_from_uri
from flask_quota.storage.base import BatchResult, Check, Storage
from flask_quota.storage.memory import MemoryStorage
from flask_quota.storage.redis import RedisStorage
from tests._support import ClockedRedisStorage, ManualClock

S = 1_000_000


def rule(algorithm: Algorithm, limit: str = "4/10 seconds", **options: int) -> Rule:
    if algorithm is Algorithm.LEAKY_BUCKET:
        options.setdefault("max_delay_us", 3_600 * S)
    return Rule.build(algorithm, parse_limit(limit), **options)


@dataclass
class Wire:
    """What a client sent (command names) and how many replies it read: its round trips."""

    sent: list[str] = field(default_factory=list)
    replies: int = 0

    def reset(self) -> None:
        self.sent.clear()
        self.replies = 0


def counting_client(url: str, wire: Wire) -> redis.Redis:
    class CountingConnection(redis.Connection):
        def send_command(self, *args: Any, **kwargs: Any) -> None:
            name = str(args[0]).upper()
            if name == "SCRIPT":
                name += " " + str(args[1]).upper()
            wire.sent.append(name)
            super().send_command(*args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            wire.replies += 1
            return super().read_response(*args, **kwargs)

    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    return redis.Redis(connection_pool=pool)


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def counted(redis_server: Any, wire: Wire) -> Iterator[redis.Redis]:
    client = counting_client(redis_server.url, wire)
    yield client
    client.close()


# --- one round trip, NOSCRIPT -----------------------------------------------------------


@pytest.mark.redis
def test_a_batch_of_four_algorithms_is_one_round_trip(
    counted: redis.Redis, wire: Wire, key_prefix: str
) -> None:
    storage = RedisStorage(counted)
    algorithms = [Algorithm.FIXED_WINDOW, Algorithm.SLIDING_LOG, Algorithm.LEAKY_BUCKET]
    algorithms.append(Algorithm.GCRA)
    checks = [Check(key=f"{key_prefix}:{a}", rule=rule(a, "4/hour")) for a in algorithms]
    storage.evaluate(checks)  # connects and loads the script
    wire.reset()
    result = storage.evaluate(checks)
    assert wire.sent == ["EVALSHA"]
    assert wire.replies == 1
    assert result.allowed
    assert [d.remaining for d in result.decisions] == [2, 2, 2, 2]


@pytest.mark.redis
def test_noscript_is_answered_by_loading_the_script_once(
    redis_server: Any, counted: redis.Redis, wire: Wire, key_prefix: str
) -> None:
    if redis_server.process is None:
        pytest.skip("SCRIPT FLUSH only on the server this test run started")
    assert redis_server.port != 6379
    storage = RedisStorage(counted)
    check = Check(key=f"{key_prefix}:gcra", rule=rule(Algorithm.GCRA, "4/hour"))
    assert storage.evaluate([check]).decisions[0].remaining == 3
    counted.script_flush()
    wire.reset()
    result = storage.evaluate([check])
    # The storage's own EVALSHA, answered NOSCRIPT; then redis-py's Script, which loads the
    # script and sends it again.
    assert wire.sent == ["EVALSHA", "EVALSHA", "SCRIPT LOAD", "EVALSHA"]
    # The state outlived the flush: the second request is counted on top of the first.
    assert result.decisions[0].remaining == 2


def test_noscript_on_fakeredis(key_prefix: str) -> None:
    client = fakeredis.FakeRedis()
    storage = RedisStorage(client)
    check = Check(key=f"{key_prefix}:gcra", rule=rule(Algorithm.GCRA, "4/hour"))
    assert storage.evaluate([check]).decisions[0].remaining == 3
    client.script_flush()
    assert storage.evaluate([check]).decisions[0].remaining == 2


# --- TTLs -------------------------------------------------------------------------------


def longest_ttl_us(check_rule: Rule, now_us: int) -> int:
    """The longest any state of this algorithm needs to live, from ``now_us``."""
    period = check_rule.period_us
    algorithm = check_rule.algorithm
    if algorithm is Algorithm.FIXED_WINDOW:
        return period - now_us % period  # the end of the window
    if algorithm is Algorithm.SLIDING_WINDOW:
        return 2 * period - now_us % period  # the end of the next window
    if algorithm is Algorithm.SLIDING_LOG:
        return period  # the newest entry's expiry
    return check_rule.capacity * check_rule.emission_us  # buckets and gcra: time to full


def expiry_ms(client: redis.Redis, key: str) -> int:
    """The key's absolute expiry, Unix milliseconds (Redis 7 ``PEXPIRETIME``)."""
    return int(client.execute_command("PEXPIRETIME", key))


@pytest.mark.redis
@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("cost", [1, 4])
def test_a_key_expires_when_its_state_stops_mattering(
    redis_client: redis.Redis, key_prefix: str, algorithm: Algorithm, cost: int
) -> None:
    # Production storage: the decision time is Redis TIME, the clock Redis expires keys by,
    # so the absolute expiry can be compared with the algorithm's own ttl_us.
    storage = RedisStorage(redis_client)
    check_rule = rule(algorithm)
    key = f"{key_prefix}:{algorithm}"
    result = storage.evaluate([Check(key=key, rule=check_rule, cost=cost)])
    assert result.allowed
    ttl_us = DECIDERS[algorithm](None, result.now_us, check_rule, cost).ttl_us
    assert 0 < ttl_us <= longest_ttl_us(check_rule, result.now_us)
    assert redis_client.pttl(key) > 0
    # Never before the state stops mattering; at most a tick of Redis's millisecond clock
    # (and the rounding up to it) after.
    late_us = expiry_ms(redis_client, key) * 1000 - (result.now_us + ttl_us)
    assert 0 <= late_us < 2000
    if algorithm is Algorithm.FIXED_WINDOW:
        window_end_us = result.now_us - result.now_us % check_rule.period_us + 10 * S
        assert expiry_ms(redis_client, key) * 1000 <= window_end_us + 1000


@pytest.mark.redis
def test_a_key_never_expires_before_its_state_stops_mattering(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Regression: PX was ceil(ttl_us / 1000) added to Redis's clock truncated to the
    # millisecond, so a state needed until now + 10_990 µs (91/second: one cell) went at
    # floor_ms(now) + 11 ms, before it stopped mattering whenever now % 1000 > 10 µs.
    storage = RedisStorage(redis_client)
    check_rule = Rule.build(Algorithm.GCRA, Limit(count=91))
    assert check_rule.emission_us == 10_990
    for index in range(10):
        key = f"{key_prefix}:{index}"
        result = storage.evaluate([Check(key=key, rule=check_rule)])
        assert expiry_ms(redis_client, key) * 1000 >= result.now_us + 10_990


@pytest.mark.redis
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_key_keeps_a_bounded_ttl_through_a_sequence(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock, algorithm: Algorithm
) -> None:
    storage = ClockedRedisStorage(redis_client, clock)
    check_rule = rule(algorithm)
    key = f"{key_prefix}:{algorithm}"
    steps = [(0, 1), (0, 3), (S, 1), (2_500_000, 2), (0, 0), (7 * S, 1), (10 * S, 4), (S, 5)]
    steps += [(20 * S, 0), (S // 3, 2), (123_457, 1)]
    written = 0
    window_expiry: tuple[int, int] | None = None  # windows: (window index, PEXPIRETIME)
    for advance_us, cost in steps:
        clock.advance(us=advance_us)
        result = storage.evaluate([Check(key=key, rule=check_rule, cost=cost)])
        if not (result.allowed and cost > 0):
            continue  # nothing written (a refusal, or a peek)
        written += 1
        pttl = redis_client.pttl(key)
        assert pttl > 0, (advance_us, cost)
        window = clock() // check_rule.period_us
        windowed = algorithm in (Algorithm.FIXED_WINDOW, Algorithm.SLIDING_WINDOW)
        if windowed and window_expiry and window_expiry[0] == window:
            # Later writes in a window add in place (INCRBY) and keep the expiry its first
            # write set. (Only the manual clock makes that expiry differ from the window's
            # end here: in production the decision time is the Redis server's own.)
            assert redis_client.pexpiretime(key) == window_expiry[1], (advance_us, cost)
            continue
        assert pttl <= -(-longest_ttl_us(check_rule, clock()) // 1000) + 1, (advance_us, cost)
        window_expiry = (window, int(redis_client.pexpiretime(key)))
    assert written >= 5


# --- all-or-nothing, short-circuit, dry run --------------------------------------------


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis), "fakeredis"],
)
def storage(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Storage]:
    """Each storage on the same frozen manual clock; Redis ones run the real Lua."""
    if request.param == "memory":
        yield MemoryStorage(clock)
    elif request.param == "redis":
        yield ClockedRedisStorage(request.getfixturevalue("redis_client"), clock)
    else:
        client = fakeredis.FakeRedis()
        yield ClockedRedisStorage(client, clock)
        client.close()


def stored(storage: Storage, key: str) -> object:
    """The raw stored state: bytes (or a list of them) on Redis, the state itself in memory."""
    if isinstance(storage, RedisStorage):
        client = storage.client
        if not client.exists(key):
            return None
        if client.type(key) == b"list":
            return client.lrange(key, 0, -1), expiry_ms(client, key)
        return client.get(key), expiry_ms(client, key)
    assert isinstance(storage, MemoryStorage)
    return storage._entries.get(key)  # white-box: the stored state and its expiry


def peek(storage: Storage, check: Check) -> BatchResult:
    return storage.evaluate([Check(key=check.key, rule=check.rule, cost=0, dry_run=True)])


def roomy(key_prefix: str) -> list[Check]:
    """One check per algorithm, each with plenty of room left."""
    return [Check(key=f"{key_prefix}:a:{a}", rule=rule(a, "1000/hour")) for a in Algorithm]


def exhausted(storage: Storage, key_prefix: str) -> Check:
    check = Check(key=f"{key_prefix}:b", rule=rule(Algorithm.FIXED_WINDOW, "1/hour"))
    assert storage.evaluate([check]).allowed
    assert not storage.evaluate([check]).allowed
    return check


@pytest.mark.parametrize(
    "storage", ["memory", pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)
def test_a_thousand_refused_requests_leave_the_other_limits_untouched(
    storage: Storage, key_prefix: str
) -> None:
    limits_a = roomy(key_prefix)
    assert storage.evaluate(limits_a).allowed
    limit_b = exhausted(storage, key_prefix)
    before = [stored(storage, check.key) for check in limits_a]
    peeks_before = [peek(storage, check) for check in limits_a]
    assert all(state is not None for state in before)
    for _ in range(1000):
        result = storage.evaluate([*limits_a, limit_b])
        assert result.refused_index == len(limits_a)
        assert not result.decisions[-1].allowed
    assert [stored(storage, check.key) for check in limits_a] == before
    assert [peek(storage, check) for check in limits_a] == peeks_before
    assert [d.remaining for r in peeks_before for d in r.decisions] == [999] * len(limits_a)


def test_checks_after_the_refusing_one_are_neither_evaluated_nor_charged(
    storage: Storage, key_prefix: str
) -> None:
    first, third, fourth = roomy(key_prefix)[:3]
    refusing = exhausted(storage, key_prefix)
    result = storage.evaluate([first, refusing, third, fourth])
    assert result.refused_index == 1
    assert len(result.decisions) == 2
    assert result.decisions[0].allowed and not result.decisions[1].allowed
    for check in (first, third, fourth):
        assert stored(storage, check.key) is None
        assert peek(storage, check).decisions[0].remaining == 1000


def test_a_refusing_dry_run_neither_stops_the_batch_nor_is_charged(
    storage: Storage, key_prefix: str
) -> None:
    first, third = roomy(key_prefix)[:2]
    refusing = exhausted(storage, key_prefix)
    dry = Check(key=refusing.key, rule=refusing.rule, dry_run=True)
    before = stored(storage, dry.key)
    result = storage.evaluate([first, dry, third])
    assert result.allowed and result.refused_index is None
    assert [d.allowed for d in result.decisions] == [True, False, True]
    assert stored(storage, dry.key) == before
    assert [d.remaining for d in result.decisions] == [999, 0, 999]


def test_a_dry_run_is_charged_when_it_admits_and_never_refuses(
    storage: Storage, key_prefix: str
) -> None:
    dry = Check(key=f"{key_prefix}:dry", rule=rule(Algorithm.SLIDING_LOG, "3/hour"), dry_run=True)
    remainings = []
    for _ in range(3):
        result = storage.evaluate([dry])
        assert result.allowed and result.decisions[0].allowed
        remainings.append(result.decisions[0].remaining)
    assert remainings == [2, 1, 0]
    full = stored(storage, dry.key)
    for _ in range(5):
        result = storage.evaluate([dry])
        assert result.allowed and result.refused_index is None
        assert not result.decisions[0].allowed
    assert stored(storage, dry.key) == full


# --- the server's clock, a dead server --------------------------------------------------


@pytest.mark.redis
def test_production_storage_decides_on_the_servers_clock(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    storage = RedisStorage(redis_client)
    check_rule = Rule.build(Algorithm.FIXED_WINDOW, Limit(count=5, unit=Unit.MINUTE))
    result = storage.evaluate([Check(key=f"{key_prefix}:clock", rule=check_rule)])
    seconds, micros = redis_client.time()
    server_now_us = seconds * S + micros
    assert 0 <= server_now_us - result.now_us < S
    # And the decision used that instant: the window it reports ends on a minute boundary.
    reset_at_us = result.now_us + result.decisions[0].reset_after_us
    assert reset_at_us % (60 * S) == 0


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_a_dead_server_raises_storage_error(key_prefix: str) -> None:
    # Built as the extension builds it: short socket timeouts, no redis-py retries.
    storage = storage_from_uri(f"redis://127.0.0.1:{_dead_port()}/0", timeout_s=0.2)
    assert isinstance(storage, RedisStorage)
    check = Check(key=f"{key_prefix}:dead", rule=rule(Algorithm.GCRA))
    with pytest.raises(StorageError, match="redis unavailable") as raised:
        storage.evaluate([check])
    assert isinstance(raised.value.__cause__, redis.ConnectionError)
    with pytest.raises(StorageError):
        storage.clear([check.key])


#: The test server has redis-server's default 16 databases: SELECT 99 is refused.
MISSING_DB = 99
SET_UP_REFUSAL = (
    "redis unavailable: DB index is out of range (refused while setting up the connection: "
    "check the database number and the credentials in QUOTA_STORAGE_URI)"
)


@pytest.mark.redis
def test_a_database_the_server_lacks_raises_storage_error(
    redis_server: Any, key_prefix: str
) -> None:
    # redis-py sends SELECT while connecting, inside the first command: its ResponseError
    # used to come out of EVALSHA as if the script had failed (a 500 in every fail mode).
    url = f"{redis_server.url.rsplit('/', 1)[0]}/{MISSING_DB}"
    storage = storage_from_uri(url)
    assert isinstance(storage, RedisStorage)
    check = Check(key=f"{key_prefix}:db", rule=rule(Algorithm.GCRA))

    with pytest.raises(StorageError) as raised:
        storage.evaluate([check])
    with pytest.raises(StorageError) as raised_by_get:
        storage.get(check.key)
    storage.client.close()

    assert str(raised.value) == str(raised_by_get.value) == SET_UP_REFUSAL
    assert isinstance(raised.value.__cause__, redis.ConnectionError)
    assert isinstance(raised.value.__cause__.__cause__, redis.ResponseError)


@pytest.mark.redis
def test_an_error_of_the_script_still_propagates_on_a_client_that_catches_set_up(
    redis_server: Any, key_prefix: str
) -> None:
    # Only the connection's set-up is an outage: the same client running a script that fails
    # raises the script's ResponseError, a bug for a 500, never the fail mode.
    built = storage_from_uri(redis_server.url)
    assert isinstance(built, RedisStorage)
    storage = RedisStorage(built.client, script_source="return redis.error_reply('ERR boom')")
    check = Check(key=f"{key_prefix}:bug", rule=rule(Algorithm.GCRA))

    with pytest.raises(redis.ResponseError, match="boom") as raised:
        storage.evaluate([check])
    built.client.close()

    assert not isinstance(raised.value, redis.ConnectionError)
