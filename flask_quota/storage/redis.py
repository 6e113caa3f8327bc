"""Redis storage: a whole batch of checks is one ``EVALSHA``, one round trip.

The script is registered once per storage with redis-py's ``register_script``, which sends
``EVALSHA`` and on ``NOSCRIPT`` loads the script and retries once. Network trouble becomes
:class:`~flask_quota.errors.StorageError` for the fail modes; a ``ResponseError`` from the script
is a bug and propagates as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from .. import _lua
from ..algorithms import Decision
from ..errors import StorageError
from .base import BatchResult, Check

#: Fields per check in ARGV and per decision in the reply (see lua/dispatch.lua).
ARGV_STRIDE = 8
REPLY_STRIDE = 6


def pack_checks(checks: Sequence[Check]) -> tuple[list[str], list[int | str]]:
    """KEYS and ARGV for the dispatcher."""
    keys: list[str] = []
    args: list[int | str] = [len(checks)]
    for check in checks:
        rule = check.rule
        keys.append(check.key)
        args += [
            rule.algorithm.value,
            rule.count,
            rule.period_us,
            rule.capacity,
            rule.emission_us,
            rule.max_delay_us,
            check.cost,
            1 if check.dry_run else 0,
        ]
    return keys, args


def unpack_reply(reply: Sequence[int]) -> BatchResult:
    """A :class:`BatchResult` from the dispatcher's flat integer reply."""
    refused, now_us = int(reply[0]), int(reply[1])
    decisions = tuple(
        Decision(
            allowed=bool(reply[at]),
            limit=int(reply[at + 1]),
            remaining=int(reply[at + 2]),
            reset_after_us=int(reply[at + 3]),
            retry_after_us=int(reply[at + 4]),
            delay_us=int(reply[at + 5]),
        )
        for at in range(2, len(reply), REPLY_STRIDE)
    )
    return BatchResult(
        decisions=decisions, refused_index=refused - 1 if refused else None, now_us=now_us
    )


class RedisStorage:
    """Storage on one Redis server (or a Sentinel-managed primary).

    :param client: a redis-py client; its socket timeouts bound how long a dead server can
        stall a request.
    :param script_source: the Lua script; tests pass one with an injected clock.
    """

    def __init__(self, client: redis.Redis, *, script_source: str | None = None) -> None:
        self.client = client
        self._script: Script = client.register_script(
            script_source if script_source is not None else _lua.evaluate_script()
        )

    def evaluate(self, checks: Sequence[Check]) -> BatchResult:
        """Decide and charge all ``checks`` in one ``EVALSHA``."""
        keys, args = pack_checks(checks)
        try:
            reply: Any = self._script(keys=keys, args=args)
        except (redis.ConnectionError, redis.TimeoutError) as err:
            raise StorageError(f"redis unavailable: {err}") from err
        return unpack_reply(reply)

    def clear(self, keys: Sequence[str]) -> None:
        """Delete the states under ``keys``."""
        if not keys:
            return
        try:
            self.client.delete(*keys)
        except (redis.ConnectionError, redis.TimeoutError) as err:
            raise StorageError(f"redis unavailable: {err}") from err
