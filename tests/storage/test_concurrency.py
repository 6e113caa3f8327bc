"""Real Redis only: 8 processes x 4 threads hammering one identity admit exactly the limit.

Every request is one EVALSHA and Redis runs scripts one at a time, so no interleaving can
over-admit; these tests hold the Lua to it under real contention (spawned processes, each
with its own connection pool and threads).

Time is injected (ClockedRedisStorage) and frozen at one instant shared by every process, so
no window boundary, refill or drain can fall inside a test and change the expected count; the
production clock (Redis TIME) gets one run too, under limits whose boundaries cannot come
near it.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import uuid
from collections.abc import Iterator
from multiprocessing.pool import Pool
from typing import Any

import pytest
import redis

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.limits import parse_limit
from flask_quota.storage.base import Check
from flask_quota.storage.redis import RedisStorage
from tests._support import ClockedRedisStorage, ManualClock

pytestmark = pytest.mark.redis

PROCESSES, THREADS, PER_THREAD = 8, 4, 32
S = 1_000_000
W = 1_764_000_000 * S  # a start of an hour, so of every window used here
HOUR = 3_600 * S

_process_barrier: Any = None


def _remember_barrier(barrier: Any) -> None:
    global _process_barrier
    _process_barrier = barrier


def _rule(algorithm: str, limit: str) -> Rule:
    max_delay = 2 * HOUR if algorithm == Algorithm.LEAKY_BUCKET else 0
    return Rule.build(Algorithm(algorithm), parse_limit(limit), max_delay_us=max_delay)


def hammer(
    url: str, key: str, algorithm: str, limit: str, instants: tuple[int, int] | None
) -> list[int]:
    """One process: 4 threads, each sending PER_THREAD requests once every process is ready.

    ``instants``: the decision time is drawn from ``[low, high]`` for each request (a frozen
    clock when ``low == high``); ``None``: production storage, Redis TIME. Returns the decision
    times of the admitted requests.
    """
    client = redis.Redis.from_url(url)
    check = Check(key=key, rule=_rule(algorithm, limit))
    start = threading.Barrier(THREADS)
    admitted: list[int] = []
    lock = threading.Lock()

    def run(seed: int) -> None:
        draw = random.Random(seed)
        clock = ManualClock()
        storage = RedisStorage(client) if instants is None else ClockedRedisStorage(client, clock)
        start.wait()
        for _ in range(PER_THREAD):
            if instants is not None:
                clock.now_us = draw.randint(*instants)
            result = storage.evaluate([check])
            if result.allowed:
                with lock:
                    admitted.append(result.now_us)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    _process_barrier.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    return admitted


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    with context.Pool(PROCESSES, initializer=_remember_barrier, initargs=(barrier,)) as workers:
        yield workers


def run_all(
    pool: Pool,
    url: str,
    key: str,
    algorithm: Algorithm,
    limit: str,
    instants: tuple[int, int] | None,
) -> list[int]:
    """Every process's admitted decision times, sorted."""
    jobs = [(url, key, algorithm.value, limit, instants)] * PROCESSES
    return sorted(at for times in pool.starmap(hammer, jobs, chunksize=1) for at in times)


@pytest.fixture
def key(key_prefix: str) -> str:
    return f"{key_prefix}:{uuid.uuid4().hex[:8]}:one-identity"


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_one_identity_under_500_per_hour_gets_exactly_500(
    pool: Pool, redis_server: Any, redis_client: redis.Redis, key: str, algorithm: Algorithm
) -> None:
    admitted = run_all(pool, redis_server.url, key, algorithm, "500/hour", (W + S, W + S))
    assert PROCESSES * THREADS * PER_THREAD > 500
    assert len(admitted) == 500
    # The stored state agrees: nothing left at that instant.
    storage = ClockedRedisStorage(redis_client, ManualClock(W + S))
    peek = storage.evaluate([Check(key=key, rule=_rule(algorithm, "500/hour"), cost=0)])
    assert peek.decisions[0].remaining == 0


@pytest.mark.parametrize("algorithm", [Algorithm.FIXED_WINDOW, Algorithm.GCRA])
def test_production_clock_under_500_per_year_gets_exactly_500(
    pool: Pool, redis_server: Any, key: str, algorithm: Algorithm
) -> None:
    # Redis TIME decides. A year-long calendar window ends at most once a year and a GCRA
    # cell takes 17.5 hours to drain, so a second of hammering cannot cross either.
    admitted = run_all(pool, redis_server.url, key, algorithm, "500/year", None)
    assert len(admitted) == 500
    assert admitted[-1] - admitted[0] < 60 * S


def test_sliding_window_admits_exactly_count_within_one_calendar_window(
    pool: Pool, redis_server: Any, key: str
) -> None:
    # Decision times scattered over the whole window (out of order across processes).
    admitted = run_all(
        pool, redis_server.url, key, Algorithm.SLIDING_WINDOW, "500/hour", (W, W + HOUR - 1)
    )
    assert len(admitted) == 500
    assert W <= admitted[0] and admitted[-1] < W + HOUR


def test_sliding_window_stays_below_twice_the_count_across_a_boundary(
    pool: Pool, redis_server: Any, key: str
) -> None:
    # The docstring's worst case: the previous window's 500 bunched at its last microsecond,
    # then the next window hammered 2 µs before its end, where the previous still weighs
    # ceil(500 * 2 µs / 1 h) = 1: 499 more, 999 within one period.
    end_of_first = W + HOUR - 1
    first = run_all(
        pool, redis_server.url, key, Algorithm.SLIDING_WINDOW, "500/hour", (end_of_first,) * 2
    )
    assert len(first) == 500
    end_of_next = W + 2 * HOUR - 2
    second = run_all(
        pool, redis_server.url, key, Algorithm.SLIDING_WINDOW, "500/hour", (end_of_next,) * 2
    )
    assert len(second) == 499
    times = first + second
    busiest = max(sum(1 for at in times if end - HOUR < at <= end) for end in set(times))
    assert busiest == 999 < 2 * 500
