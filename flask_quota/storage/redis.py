"""Redis storage: a whole batch of checks is one ``EVALSHA``, one round trip.

The script is registered once per storage with redis-py's ``register_script``. Each call
sends ``EVALSHA`` with the registered SHA; on ``NOSCRIPT`` the ``Script`` object takes over,
loads the script and retries once. Network trouble becomes
:class:`~flask_quota.errors.StorageError` for the fail modes, and so does a server refusing a
new connection's set-up (see :func:`set_up_connection`); a ``ResponseError`` from the script
is a bug and propagates as is.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, Final, Protocol

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from .. import _lua
from ..algorithms import Algorithm, Decision, Rule
from ..errors import ConfigurationError, StorageError
from .base import ALLOW_IN_USE, BLOCK_IN_USE, BatchResult, Check, Slot, Subject

#: Ends the message of a refusal met while connecting: where it comes from, what to check.
_SET_UP_HINT: Final = (
    "refused while setting up the connection: check the database number and the credentials "
    "in QUOTA_STORAGE_URI"
)


class _Connecting(Protocol):
    """A redis-py connection, as :func:`set_up_connection` uses it."""

    def on_connect(self) -> None: ...


def set_up_connection(connection: _Connecting) -> None:
    """redis-py's own set-up of a new connection (``AUTH`` or ``HELLO``, ``SELECT``), with a
    refusal made a :class:`redis.ConnectionError`; the ``redis_connect_func`` of the clients
    :func:`~flask_quota.storage.storage_from_uri` builds.

    redis-py connects inside whichever command needs a connection, so a server that refuses
    the set-up (``SELECT 99``: "DB index is out of range") raised a ``ResponseError`` out of
    the script's call, as a bug of the script would: a 500 on every request, whatever the
    fail mode. No command of ours has run at this point: the refusal is the deployment's,
    and follows the fail mode like an outage. Errors of the commands themselves, the script's
    included, are not affected.
    """
    try:
        connection.on_connect()
    except redis.ResponseError as err:
        raise redis.ConnectionError(f"{err} ({_SET_UP_HINT})") from err


#: The batch and the reply are little-endian signed 64-bit integers (``struct`` in the script).
_HEADER = struct.Struct("<5q")
_CHECK_TAIL = struct.Struct("<3q")
_RULE = struct.Struct("<6q")
_SLOT = struct.Struct("<3q")
_REPLY_HEADER = struct.Struct("<8q")
_REPLY_HEADER_FIELDS = 8
_DECISION_FIELDS = 4

#: Bits of the header's flags field.
_HAS_CONFIG = 1
_LISTS_SENT = 2

#: Each algorithm's index in the dispatcher's ``LOADERS`` table (see lua/dispatch.lua).
ALGORITHM_CODES: dict[Algorithm, int] = {
    Algorithm.FIXED_WINDOW: 1,
    Algorithm.SLIDING_WINDOW: 2,
    Algorithm.SLIDING_LOG: 3,
    Algorithm.TOKEN_BUCKET: 4,
    Algorithm.LEAKY_BUCKET: 5,
    Algorithm.GCRA: 6,
}


def pack_checks(
    checks: Sequence[Check],
    subjects: Sequence[Subject] = (),
    alert_window_us: int = 0,
    slots: Sequence[Slot] = (),
    config_key: str | None = None,
    *,
    send_lists: bool = True,
) -> tuple[list[bytes], list[bytes | str]]:
    """KEYS and ARGV for the dispatcher (layout in ``lua/dispatch.lua``).

    Every number goes in ARGV[1] as packed 64-bit integers: neither redis-py nor the script
    formats or parses a number as text, which cost more per request than the rest of the call.

    :param send_lists: send each subject's allow-list and block keys. Without them (only with
        ``config_key``, whose flags say whether the lists are in use) the script answers
        "lists needed" if they are, and the call must be made again with them.
    """
    send_lists = send_lists or config_key is None
    flags = _LISTS_SENT if send_lists else 0
    # Keys go as bytes (they are ASCII: keys.py escapes identities): redis-py's encoder takes
    # bytes as they are, and encodes a str through a chain of type checks (~0.6 us a key).
    keys: list[bytes] = [check.key.encode() for check in checks]
    parts = [b""]  # the header, once the flags are known
    for check in checks:
        parts.append(_rule_fields(check.rule))
        parts.append(_CHECK_TAIL.pack(check.cost, check.dry_run, check.subject + 1))
    args: list[bytes | str] = [b""]
    for subject in subjects:
        keys.append(subject.refusals_key.encode())
        if send_lists:
            keys.append(subject.allow_key.encode())
            keys.append(subject.block_key.encode())
    for slot in slots:
        keys.append(slot.key.encode())
        parts.append(_SLOT.pack(slot.capacity, slot.lease_us, slot.subject + 1))
        args.append(slot.token)
    if config_key is not None:
        keys.append(config_key.encode())
        flags |= _HAS_CONFIG
    parts[0] = _HEADER.pack(len(checks), len(subjects), alert_window_us, len(slots), flags)
    args[0] = b"".join(parts)
    return keys, args


#: A rule's packed fields by ``id(rule)``, with the rule kept alive beside them (so an id is
#: never reused while its entry stands). Rules are built once at start-up: a dict lookup by id
#: is cheaper than hashing a frozen dataclass's six fields, as an lru_cache would per check.
_RULE_FIELDS: dict[int, tuple[Rule, bytes]] = {}
_RULE_FIELDS_MAX = 4096


def _rule_fields(rule: Rule) -> bytes:
    """A rule's part of ARGV[1], packed once per rule."""
    entry = _RULE_FIELDS.get(id(rule))
    if entry is not None and entry[0] is rule:
        return entry[1]
    packed = _RULE.pack(
        ALGORITHM_CODES[rule.algorithm],
        rule.count,
        rule.period_us,
        rule.capacity,
        rule.emission_us,
        rule.max_delay_us,
    )
    if len(_RULE_FIELDS) >= _RULE_FIELDS_MAX:  # many dynamic or scaled rules: start over
        _RULE_FIELDS.clear()
    _RULE_FIELDS[id(rule)] = (rule, packed)
    return packed


@cache
def _reply_struct(size: int) -> struct.Struct:
    """The format of a whole reply of ``size`` bytes: one ``unpack`` for all of it."""
    return struct.Struct(f"<{size // 8}q")


def _decision(values: tuple[int, ...], i: int, limit: int) -> Decision:
    """The decision at ``values[i:i + 4]``: allowed, remaining, reset, and the wait, which is
    the retry-after of a refusal and the delay of an admission."""
    if values[i]:
        return Decision(True, limit, values[i + 1], values[i + 2], 0, values[i + 3])
    return Decision(False, limit, values[i + 1], values[i + 2], values[i + 3], 0)


def lists_needed(reply: bytes) -> bool:
    """Whether the script answered "lists needed" instead of deciding (see ``send_lists``)."""
    return bool(_REPLY_HEADER.unpack_from(reply)[7])


def unpack_reply(reply: bytes, checks: Sequence[Check], slots: Sequence[Slot] = ()) -> BatchResult:
    """A :class:`BatchResult` from the dispatcher's reply (packed 64-bit integers) to the
    batch of ``checks`` and ``slots``, whose capacities are the decisions' limits."""
    values = _reply_struct(len(reply)).unpack(reply)
    refused, now_us, blocked, block_remaining_us, refusals, by_list, version = values[:7]
    decisions: list[Decision] = []
    i, end = _REPLY_HEADER_FIELDS, len(values)
    for check in checks:  # one decision per check evaluated: it stops at a refusal
        if i == end:
            break
        decisions.append(_decision(values, i, check.rule.capacity))
        i += _DECISION_FIELDS
    if i < end:  # a refusing slot's, after the checks'
        slot = slots[(i - _REPLY_HEADER_FIELDS) // _DECISION_FIELDS - len(checks)]
        decisions.append(_decision(values, i, slot.capacity))
    return BatchResult(
        decisions=tuple(decisions),
        refused_index=refused - 1 if refused else None,
        now_us=now_us,
        allowed_by_list=bool(by_list),
        blocked_subject=blocked - 1 if blocked else None,
        block_remaining_us=block_remaining_us,
        refusals=refusals,
        config_version=version,
    )


class RedisStorage:
    """Storage on one Redis server (or a Sentinel-managed primary).

    :param client: a redis-py client; its socket timeouts bound how long a dead server can
        stall a request. Built with ``redis_connect_func=``:func:`set_up_connection` (as
        :func:`~flask_quota.storage.storage_from_uri` does), a refused set-up is an outage;
        without, its ``ResponseError`` propagates like the script's.
    :param script_source: the Lua script; tests pass one with an injected clock.
    """

    def __init__(self, client: redis.Redis, *, script_source: str | None = None) -> None:
        if client.get_encoder().decode_responses:
            raise ConfigurationError(
                "flask-quota needs a Redis client with decode_responses=False: "
                "its script answers in binary"
            )
        self.client = client
        self._script: Script = client.register_script(
            script_source if script_source is not None else _lua.evaluate_script()
        )
        #: Whether the stored allow list or blocklist has been seen in use: until then each
        #: subject costs one key (its refusal counter) instead of three. Never reset, as the
        #: config hash's flags are never cleared.
        self._lists_in_use = False

    def evaluate(
        self,
        checks: Sequence[Check],
        subjects: Sequence[Subject] = (),
        alert_window_us: int = 0,
        *,
        slots: Sequence[Slot] = (),
        config_key: str | None = None,
    ) -> BatchResult:
        """Everything a request needs decided, in one ``EVALSHA``.

        Once per storage, when the script first finds a stored list in use, a second one
        with the lists' keys.
        """
        keys, args = pack_checks(
            checks, subjects, alert_window_us, slots, config_key, send_lists=self._lists_in_use
        )
        reply = self._run(keys, args)
        if lists_needed(reply):
            self._lists_in_use = True
            keys, args = pack_checks(checks, subjects, alert_window_us, slots, config_key)
            reply = self._run(keys, args)
        return unpack_reply(reply, checks, slots)

    def _run(self, keys: list[bytes], args: list[bytes | str]) -> bytes:
        """One ``EVALSHA`` of the script; network trouble becomes :class:`StorageError`."""
        try:
            try:
                # The registered script's EVALSHA, sent straight: ``Script.__call__`` costs
                # 1.4 us a call (an import statement inside it), 3-4 us in a round trip.
                reply: bytes = self.client.evalsha(self._script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # Not on the server (restarted, flushed, failed over): the Script loads it
                # and sends it again, once.
                reply = self._script(keys=keys, args=args)
        except (redis.ConnectionError, redis.TimeoutError) as err:
            # Drop pooled sockets: the next probe starts on a fresh connection, so a restarted
            # server is found at once rather than through a stale socket's error.
            self.client.connection_pool.disconnect()
            raise StorageError(f"redis unavailable: {err}") from err
        return reply

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
        return self._noting_lists({_text(k): _text(v) for k, v in raw.items()})

    def snapshot_config(self, key: str) -> tuple[dict[str, str], int]:
        """``HGETALL`` and ``TIME`` in one pipeline: one round trip."""
        with _storage_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(key)
            pipe.time()
            raw, (seconds, micros) = pipe.execute()
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return self._noting_lists(fields), int(seconds) * 1_000_000 + int(micros)

    def _noting_lists(self, fields: dict[str, str]) -> dict[str, str]:
        """Config fields read: a process learns there that the lists are in use, and sends
        their keys from its next call on (no "lists needed" answer to pay for)."""
        if ALLOW_IN_USE in fields or BLOCK_IN_USE in fields:
            self._lists_in_use = True
        return fields

    def set_config_field(self, key: str, field: str, value: str) -> None:
        with _storage_errors():
            self.client.hset(key, field, value)
        if field in (ALLOW_IN_USE, BLOCK_IN_USE):
            self._lists_in_use = True

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
