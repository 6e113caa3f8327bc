"""Test doubles shared by the suite: a manual clock and a Redis storage driven by it."""

from __future__ import annotations

from pathlib import Path

import redis

from flask_quota import _lua
from flask_quota.storage.redis import RedisStorage

FIXED_CLOCK_LUA = (Path(__file__).parent / "lua" / "fixed_clock.lua").read_text()
#: 2026-11-24T10:30:00Z, in microseconds: a start in the middle of every window we use.
START_US = 1_764_000_000_000_000


class ManualClock:
    """A clock in integer microseconds that moves only when told to."""

    def __init__(self, start_us: int = START_US) -> None:
        self.now_us = start_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float = 0, *, us: int = 0) -> None:
        self.now_us += int(seconds * 1_000_000) + us


class ClockedRedisStorage(RedisStorage):
    """The real dispatcher and algorithm files, with the clock prelude swapped for a manual one."""

    def __init__(self, client: redis.Redis, clock: ManualClock) -> None:
        super().__init__(client, script_source=_lua.assemble(FIXED_CLOCK_LUA))
        self.clock = clock

    def now_us(self) -> int:
        return self.clock()

    def snapshot_config(self, key: str) -> tuple[dict[str, str], int]:
        return self.read_config(key), self.clock()

    def _run(self, keys: list[bytes], args: list[bytes | str]) -> bytes:
        reply: bytes = self._script(keys=keys, args=[*args, self.clock()])
        return reply
