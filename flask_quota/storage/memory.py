"""``memory://``: the embedded storage, for one process (tests, development, small apps).

Runs the Python algorithms over a dict under one lock, so a batch is atomic across threads.
Expired states are dropped on access and swept from a heap of deadlines at each call, so a
spray of distinct identities costs memory only for as long as their states matter.
"""

from __future__ import annotations

import fnmatch
import heapq
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..algorithms import DECIDERS, Decision, concurrent
from .base import ALLOW_IN_USE, BLOCK_IN_USE, BatchResult, Check, Slot, Subject

Clock = Callable[[], int]
#: Expiry of entries that never expire (allow-list entries).
_NEVER = 2**62


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
        #: Config hashes (live overrides): never expire.
        self._config: dict[str, dict[str, str]] = {}

    def now_us(self) -> int:
        """The storage's clock."""
        return self._clock() if self._clock is not None else system_clock_us()

    def evaluate(
        self,
        checks: Sequence[Check],
        subjects: Sequence[Subject] = (),
        alert_window_us: int = 0,
        *,
        slots: Sequence[Slot] = (),
        config_key: str | None = None,
    ) -> BatchResult:
        """Decide every check in order; commit their states only if all admit.

        Same steps as ``lua/dispatch.lua``: allow list, blocks, checks, slots, refusal counts.
        """
        with self._lock:
            now = self.now_us()
            self._sweep(now)
            version = 0
            use_allow = use_block = True
            if config_key is not None:
                config = self._config.get(config_key, {})
                version = int(config.get("version", "0"))
                use_allow = config.get(ALLOW_IN_USE) == "1"
                use_block = config.get(BLOCK_IN_USE) == "1"
            for subject in subjects if use_allow else ():
                if self._read(subject.allow_key, now) is not None:
                    return BatchResult(
                        decisions=(),
                        refused_index=None,
                        now_us=now,
                        allowed_by_list=True,
                        config_version=version,
                    )
            for index, subject in enumerate(subjects if use_block else ()):
                if self._read(subject.block_key, now) is not None:
                    expires = self._entries[subject.block_key][1]
                    return BatchResult(
                        decisions=(),
                        refused_index=None,
                        now_us=now,
                        blocked_subject=index,
                        block_remaining_us=-1 if expires == _NEVER else expires - now,
                        refusals=self._count_refusal(subjects, index, now, alert_window_us),
                        config_version=version,
                    )
            decisions: list[Decision] = []
            writes: list[tuple[str, Any, int]] = []
            for index, check in enumerate(checks):
                outcome = DECIDERS[check.rule.algorithm](
                    self._read(check.key, now), now, check.rule, check.cost
                )
                decisions.append(outcome.decision)
                if outcome.decision.allowed:
                    if check.cost > 0:
                        writes.append((check.key, outcome.state, outcome.ttl_us))
                elif not check.dry_run:
                    return BatchResult(
                        decisions=tuple(decisions),
                        refused_index=index,
                        now_us=now,
                        refusals=self._count_refusal(subjects, check.subject, now, alert_window_us),
                        config_version=version,
                    )
            for offset, slot in enumerate(slots):
                taken = concurrent.acquire(
                    self._read(slot.key, now), now, slot.capacity, slot.lease_us, slot.token
                )
                if not taken.decision.allowed:
                    return BatchResult(
                        decisions=(*decisions, taken.decision),
                        refused_index=len(checks) + offset,
                        now_us=now,
                        refusals=self._count_refusal(subjects, slot.subject, now, alert_window_us),
                        config_version=version,
                    )
                writes.append((slot.key, taken.state, taken.ttl_us))
            for key, state, ttl_us in writes:
                self._write(key, state, now, ttl_us)
            return BatchResult(
                decisions=tuple(decisions), refused_index=None, now_us=now, config_version=version
            )

    def release(self, slot: Slot) -> None:
        """Give back the slot's lease."""
        with self._lock:
            now = self.now_us()
            entry = self._entries.get(slot.key)
            if entry is not None and entry[1] > now:
                self._entries[slot.key] = (concurrent.release(entry[0], slot.token), entry[1])

    def read_config(self, key: str) -> dict[str, str]:
        with self._lock:
            return dict(self._config.get(key, {}))

    def snapshot_config(self, key: str) -> tuple[dict[str, str], int]:
        with self._lock:
            return dict(self._config.get(key, {})), self.now_us()

    def set_config_field(self, key: str, field: str, value: str) -> None:
        with self._lock:
            self._config.setdefault(key, {})[field] = value

    def update_config(self, key: str, field: str, value: str | None) -> int:
        with self._lock:
            config = self._config.setdefault(key, {})
            if value is None:
                config.pop(field, None)
            else:
                config[field] = value
            version = int(config.get("version", "0")) + 1
            config["version"] = str(version)
            return version

    def _count_refusal(
        self, subjects: Sequence[Subject], index: int, now: int, window_us: int
    ) -> int:
        if index < 0 or window_us <= 0:
            return 0
        key = subjects[index].refusals_key
        count = self._read(key, now)
        if count is None:
            self._write(key, 1, now, -(-window_us // 1000) * 1000)
            return 1
        self._entries[key] = (count + 1, self._entries[key][1])
        return int(count) + 1

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

    def scan(self, match: str, limit: int | None = None) -> list[str]:
        """Live keys matching the glob ``match`` (Redis glob rules), at most ``limit``."""
        pattern = re.compile(fnmatch.translate(match))
        found = [key for key in self.keys() if pattern.match(key)]
        return found if limit is None else found[:limit]

    def put(self, key: str, value: str, ttl_ms: int | None) -> None:
        with self._lock:
            now = self.now_us()
            if ttl_ms is None:
                self._entries[key] = (value, _NEVER)
            else:
                self._write(key, value, now, ttl_ms * 1000)

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._read(key, self.now_us())
        return None if value is None else str(value)

    def ttl_ms(self, key: str) -> int | None:
        with self._lock:
            now = self.now_us()
            if self._read(key, now) is None:
                return None
            expires = self._entries[key][1]
        return -1 if expires == _NEVER else -(-(expires - now) // 1000)

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
