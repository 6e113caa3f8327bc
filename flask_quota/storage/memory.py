"""``memory://``: the embedded storage, for one process (tests, development, small apps).

Runs the Python algorithms over a dict under one lock, so a batch is atomic across threads.
Expired states are dropped on access and swept from a heap of deadlines at each call, so a
spray of distinct identities costs memory only for as long as their states matter.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..algorithms import DECIDERS, Decision
from .base import BatchResult, Check

Clock = Callable[[], int]


def system_clock_us() -> int:
    """Wall-clock microseconds, looked up through the ``time`` module at every call.

    So freezegun, time-machine and friends, which patch ``time.time``, move it too.
    """
    return int(time.time() * 1_000_000)


class MemoryStorage:
    """Thread-safe in-process storage with the same answers as the Redis one.

    :param clock: microseconds since the epoch; tests inject a manual clock, production
        leaves the default :func:`system_clock_us`.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> (state, expires_at_us)
        self._entries: dict[str, tuple[Any, int]] = {}
        #: (deadline_us, key), one per key in ``_scheduled``; re-pushed if the key lived on.
        self._deadlines: list[tuple[int, str]] = []
        self._scheduled: set[str] = set()

    def now_us(self) -> int:
        """The storage's clock."""
        return self._clock() if self._clock is not None else system_clock_us()

    def evaluate(self, checks: Sequence[Check]) -> BatchResult:
        """Decide every check in order; commit their states only if all admit."""
        with self._lock:
            now = self.now_us()
            self._sweep(now)
            decisions: list[Decision] = []
            writes: list[tuple[str, Any, int]] = []
            for index, check in enumerate(checks):
                outcome = DECIDERS[check.rule.algorithm](
                    self._read(check.key, now), now, check.rule, check.cost
                )
                decisions.append(outcome.decision)
                if outcome.decision.allowed:
                    writes.append((check.key, outcome.state, outcome.ttl_us))
                elif not check.dry_run:
                    return BatchResult(decisions=tuple(decisions), refused_index=index, now_us=now)
            for key, state, ttl_us in writes:
                self._write(key, state, now, ttl_us)
            return BatchResult(decisions=tuple(decisions), refused_index=None, now_us=now)

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the states under ``keys``."""
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def keys(self) -> list[str]:
        """The keys that hold live state now."""
        with self._lock:
            now = self.now_us()
            return [key for key, (_, expires) in self._entries.items() if expires > now]

    def __len__(self) -> int:
        return len(self._entries)

    def _read(self, key: str, now: int) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        return entry[0]

    def _write(self, key: str, state: Any, now: int, ttl_us: int) -> None:
        if ttl_us <= 0:
            self._entries.pop(key, None)
            return
        if key not in self._scheduled:
            self._scheduled.add(key)
            heapq.heappush(self._deadlines, (now + ttl_us, key))
        self._entries[key] = (state, now + ttl_us)

    def _sweep(self, now: int) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, key = heapq.heappop(deadlines)
            entry = self._entries.get(key)
            if entry is not None and entry[1] > now:
                heapq.heappush(deadlines, (entry[1], key))
                continue
            self._entries.pop(key, None)
            self._scheduled.discard(key)
