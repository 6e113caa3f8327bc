"""Redis storage: a whole batch of checks is one ``EVALSHA``, one round trip.

The script is registered once per storage with redis-py's ``register_script``, which sends
``EVALSHA`` and on ``NOSCRIPT`` loads the script and retries once. Network trouble becomes
:class:`~flask_quota.errors.StorageError` for the fail modes; a ``ResponseError`` from the script
is a bug and propagates as is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import redis
from redis.commands.core import Script

from .. import _lua
from ..algorithms import Decision, Rule
from ..errors import StorageError
from .base import BatchResult, Check, Slot, Subject

#: Integers before the first decision in the reply, and per decision (see lua/dispatch.lua).
REPLY_HEADER = 7
REPLY_STRIDE = 6


def pack_checks(
    checks: Sequence[Check],
    subjects: Sequence[Subject] = (),
    alert_window_us: int = 0,
    slots: Sequence[Slot] = (),
    config_key: str | None = None,
) -> tuple[list[str], list[int | str]]:
    """KEYS and ARGV for the dispatcher (layout in ``lua/dispatch.lua``).

    Every number goes in one ARGV string: redis-py encodes and frames each argument in Python,
    which cost more per request than the script's split of one string.
    """
    keys: list[str] = [check.key for check in checks]
    for subject in subjects:
        keys += [subject.allow_key, subject.block_key, subject.refusals_key]
    keys += [slot.key for slot in slots]
    if config_key is not None:
        keys.append(config_key)
    fields = [
        f"{len(checks)} {len(subjects)} {alert_window_us} {len(slots)} "
        f"{int(config_key is not None)}"
    ]
    fields += [f"{_rule_fields(c.rule)} {c.cost} {int(c.dry_run)} {c.subject + 1}" for c in checks]
    fields += [f"{t.capacity} {t.lease_us} {t.token} {t.subject + 1}" for t in slots]
    return keys, [" ".join(fields)]


@lru_cache(maxsize=1024)
def _rule_fields(rule: Rule) -> str:
    """A rule's part of ARGV; rules are few and fixed, so formatted once."""
    return (
        f"{rule.algorithm.value} {rule.count} {rule.period_us} {rule.capacity} "
        f"{rule.emission_us} {rule.max_delay_us}"
    )


def unpack_reply(reply: bytes | str) -> BatchResult:
    """A :class:`BatchResult` from the dispatcher's reply: space-separated integers."""
    values = [int(v) for v in reply.split()]
    refused, now_us, blocked = values[0], values[1], values[2]
    decisions = tuple(
        Decision(
            allowed=bool(values[at]),
            limit=values[at + 1],
            remaining=values[at + 2],
            reset_after_us=values[at + 3],
            retry_after_us=values[at + 4],
            delay_us=values[at + 5],
        )
        for at in range(REPLY_HEADER, len(values), REPLY_STRIDE)
    )
    return BatchResult(
        decisions=decisions,
        refused_index=refused - 1 if refused else None,
        now_us=now_us,
        allowed_by_list=bool(values[5]),
        blocked_subject=blocked - 1 if blocked else None,
        block_remaining_us=values[3],
        refusals=values[4],
        config_version=values[6],
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

    def evaluate(
        self,
        checks: Sequence[Check],
        subjects: Sequence[Subject] = (),
        alert_window_us: int = 0,
        *,
        slots: Sequence[Slot] = (),
        config_key: str | None = None,
    ) -> BatchResult:
        """Everything a request needs decided, in one ``EVALSHA``."""
        keys, args = pack_checks(checks, subjects, alert_window_us, slots, config_key)
        try:
            reply: Any = self._script(keys=keys, args=args)
        except (redis.ConnectionError, redis.TimeoutError) as err:
            # Drop pooled sockets: the next probe starts on a fresh connection, so a restarted
            # server is found at once rather than through a stale socket's error.
            self.client.connection_pool.disconnect()
            raise StorageError(f"redis unavailable: {err}") from err
        return unpack_reply(reply)

    def clear(self, keys: Sequence[str]) -> None:
        """Delete the states under ``keys``."""
        if keys:
            with _storage_errors():
                self.client.delete(*keys)

    def release(self, slot: Slot) -> None:
        """``ZREM`` the slot's lease: the one extra round trip of a concurrency limit."""
        with _storage_errors():
            self.client.zrem(slot.key, slot.token)

    def now_us(self) -> int:
        with _storage_errors():
            seconds, micros = self.client.time()
        return int(seconds) * 1_000_000 + int(micros)

    def read_config(self, key: str) -> dict[str, str]:
        with _storage_errors():
            raw: dict[Any, Any] = self.client.hgetall(key)
        return {_text(k): _text(v) for k, v in raw.items()}

    def snapshot_config(self, key: str) -> tuple[dict[str, str], int]:
        """``HGETALL`` and ``TIME`` in one pipeline: one round trip."""
        with _storage_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(key)
            pipe.time()
            raw, (seconds, micros) = pipe.execute()
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return fields, int(seconds) * 1_000_000 + int(micros)

    def set_config_field(self, key: str, field: str, value: str) -> None:
        with _storage_errors():
            self.client.hset(key, field, value)

    def update_config(self, key: str, field: str, value: str | None) -> int:
        with _storage_errors():
            pipe = self.client.pipeline(transaction=True)
            if value is None:
                pipe.hdel(key, field)
            else:
                pipe.hset(key, field, value)
            pipe.hincrby(key, "version", 1)
            return int(pipe.execute()[-1])

    def scan(self, match: str, limit: int | None = None) -> list[str]:
        """Keys matching ``match``, by ``SCAN`` (never ``KEYS``), at most ``limit``."""
        found: list[str] = []
        with _storage_errors():
            for raw in self.client.scan_iter(match=match, count=1000):
                found.append(
                    raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
                )
                if limit is not None and len(found) >= limit:
                    break
        return found

    def put(self, key: str, value: str, ttl_ms: int | None) -> None:
        with _storage_errors():
            self.client.set(key, value, px=ttl_ms)

    def get(self, key: str) -> str | None:
        with _storage_errors():
            raw = self.client.get(key)
        return None if raw is None else _text(raw)

    def ttl_ms(self, key: str) -> int | None:
        with _storage_errors():
            ttl = int(self.client.pttl(key))
        return None if ttl == -2 else ttl


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Network trouble as :class:`StorageError`; anything else is a bug and propagates."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as err:
        raise StorageError(f"redis unavailable: {err}") from err
