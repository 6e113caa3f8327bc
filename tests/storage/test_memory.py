"""MemoryStorage: atomic across threads, bounded under a spray of identities, on the wall
clock looked up at every call."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from unittest import mock

import pytest

from flask_quota.algorithms import Algorithm, Rule
from flask_quota.limits import parse_limit
from flask_quota.storage.base import Check
from flask_quota.storage.memory import MemoryStorage
from tests._support import ManualClock

S = 1_000_000


def rule(algorithm: Algorithm, limit: str) -> Rule:
    max_delay = 2 * 3_600 * S if algorithm is Algorithm.LEAKY_BUCKET else 0
    return Rule.build(algorithm, parse_limit(limit), max_delay_us=max_delay)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads every microsecond, so a read-then-write race would show."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("busy_switching")
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_threads_hammering_one_key_admit_exactly_the_limit(
    algorithm: Algorithm, clock: ManualClock
) -> None:
    # The clock stands still: no window boundary, refill or drain during the test.
    storage = MemoryStorage(clock)
    check = Check(key="hot", rule=rule(algorithm, "500/hour"))
    # A second, roomy limit in every batch: all-or-nothing must hold under contention too.
    other = Check(key="roomy", rule=rule(Algorithm.SLIDING_WINDOW, "100000/hour"))
    threads, per_thread = 8, 100
    start = threading.Barrier(threads)
    admitted = [0] * threads

    def hammer(index: int) -> None:
        start.wait()
        for _ in range(per_thread):
            if storage.evaluate([other, check]).allowed:
                admitted[index] += 1

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(admitted) == 500
    roomy_left = storage.evaluate([Check(key="roomy", rule=other.rule, cost=0)])
    assert roomy_left.decisions[0].remaining == 100_000 - 500


def test_a_spray_of_identities_is_purged_once_their_states_expire(clock: ManualClock) -> None:
    storage = MemoryStorage(clock)
    algorithms = list(Algorithm)
    rules = [rule(algorithm, "1/second") for algorithm in algorithms]
    for index in range(100_000):
        # 10 µs apart, all within one second.
        clock.advance(us=10)
        check = Check(key=f"spray:{index}", rule=rules[index % len(rules)])
        assert storage.evaluate([check]).allowed
    # All still matter but the fixed windows, whose window ended with the last request.
    fixed_windows = len(range(0, 100_000, len(rules)))
    assert len(storage) == 100_000 - fixed_windows
    # The longest TTL among them: sliding_window's, to the end of the window after next.
    clock.advance(2 * S)
    assert storage.evaluate([Check(key="one-more", rule=rules[0])]).allowed
    assert len(storage) == 1
    assert storage.keys() == ["one-more"]
    assert len(storage._deadlines) <= 1  # white-box: the expiry heap is swept too
    assert len(storage._scheduled) <= 1


def test_the_store_stays_bounded_while_the_spray_goes_on(clock: ManualClock) -> None:
    storage = MemoryStorage(clock)
    check_rule = rule(Algorithm.GCRA, "1/second")
    most_held = most_scheduled = 0
    for index in range(50_000):
        clock.advance(us=100)  # a state lives 1 s: 10_000 requests
        assert storage.evaluate([Check(key=f"spray:{index}", rule=check_rule)]).allowed
        most_held = max(most_held, len(storage))
        most_scheduled = max(most_scheduled, len(storage._deadlines))
    assert most_held <= 10_001
    assert most_scheduled <= 10_001


def test_one_hot_key_keeps_one_deadline(clock: ManualClock) -> None:
    storage = MemoryStorage(clock)
    check = Check(key="hot", rule=rule(Algorithm.TOKEN_BUCKET, "10/second"))
    for _ in range(10_000):
        clock.advance(us=150_000)
        storage.evaluate([check])
    assert len(storage) == 1
    assert len(storage._deadlines) == 1


def test_without_a_clock_it_reads_time_time_at_every_call() -> None:
    storage = MemoryStorage()  # constructed before time.time is patched
    check = Check(key="k", rule=rule(Algorithm.FIXED_WINDOW, "1/minute"))
    t0 = 1_800_000_000.25  # 0.25 s past a minute boundary
    with mock.patch("time.time", return_value=t0):
        first = storage.evaluate([check])
        second = storage.evaluate([check])
    assert first.now_us == second.now_us == 1_800_000_000_250_000
    assert first.allowed and not second.allowed
    assert second.decisions[0].retry_after_us == 59_750_000
    with mock.patch("time.time", return_value=t0 + 59.75):
        later = storage.evaluate([check])
    assert later.allowed
    assert later.now_us == 1_800_000_060_000_000
    assert later.decisions[0].reset_after_us == 60 * S
