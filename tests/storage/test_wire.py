"""The script's wire format: packed 64-bit integers both ways, and the fallback that packs
them where Redis's bundled ``struct`` library is missing (fakeredis)."""

from __future__ import annotations

import struct

import fakeredis
import pytest
import redis

from flask_quota import _lua
from flask_quota.errors import ConfigurationError
from flask_quota.storage import storage_from_uri
from flask_quota.storage.redis import ALGORITHM_CODES, RedisStorage

EDGES = [0, 1, -1, 255, 256, -256, 2**31, -(2**31) - 1, 2**32 + 7, 2**53 - 1, -(2**53 - 1)]
EDGES += [1_764_000_000_123_456, -1_764_000_000_123_456]

#: The fallback alone, forced on even where Redis provides ``struct``.
FALLBACK = _lua.read("struct_compat").replace("local struct = struct or", "local struct =", 1)


def unpack_with(client: redis.Redis, source: str, values: list[int]) -> list[int]:
    script = f"{source}\nreturn {{struct.unpack('<' .. string.rep('i8', {len(values)}), ARGV[1])}}"
    reply = client.eval(script, 0, struct.pack(f"<{len(values)}q", *values))
    return [int(v) for v in reply]  # type: ignore[union-attr]


def pack_with(client: redis.Redis, source: str, values: list[int]) -> bytes:
    arguments = ", ".join(str(v) for v in values)
    script = f"{source}\nreturn struct.pack('<' .. string.rep('i8', {len(values)}), {arguments})"
    reply: bytes = client.eval(script, 0)  # type: ignore[assignment]
    return reply


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "fakeredis"])
def lua_client(request: pytest.FixtureRequest) -> redis.Redis:
    if request.param == "redis":
        client: redis.Redis = request.getfixturevalue("redis_client")
        return client
    return fakeredis.FakeRedis()


def test_the_fallback_reads_what_python_packs(lua_client: redis.Redis) -> None:
    # The last value is the position after the data, as struct.unpack returns it.
    assert unpack_with(lua_client, FALLBACK, EDGES) == [*EDGES, 8 * len(EDGES) + 1]


def test_the_fallback_packs_what_python_reads(lua_client: redis.Redis) -> None:
    assert pack_with(lua_client, FALLBACK, EDGES) == struct.pack(f"<{len(EDGES)}q", *EDGES)


@pytest.mark.redis
def test_redis_bundled_struct_agrees_with_python(redis_client: redis.Redis) -> None:
    native = "local struct = struct"
    assert unpack_with(redis_client, native, EDGES)[:-1] == EDGES
    assert pack_with(redis_client, native, EDGES) == struct.pack(f"<{len(EDGES)}q", *EDGES)


def test_the_fallback_rejects_formats_it_does_not_implement() -> None:
    client = fakeredis.FakeRedis()
    with pytest.raises(redis.ResponseError, match="unsupported format"):
        client.eval(f"{FALLBACK}\nreturn struct.pack('<i4', 1)", 0)


def test_algorithm_codes_follow_the_dispatcher_table() -> None:
    table = _lua.read("dispatch").split("local LOADERS = {", 1)[1].split("}", 1)[0]
    body = "\n".join(line.split("--", 1)[0] for line in table.splitlines())
    names = [name.strip().removeprefix("load_") for name in body.split(",") if name.strip()]
    assert {algorithm.value: code for algorithm, code in ALGORITHM_CODES.items()} == {
        name: index for index, name in enumerate(names, start=1)
    }


def test_a_client_that_decodes_replies_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        RedisStorage(fakeredis.FakeRedis(decode_responses=True))
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        storage_from_uri("redis://127.0.0.1:1/0?decode_responses=true")


def test_integer_arguments_reach_redis_as_plain_integers(
    lua_client: redis.Redis, key_prefix: str
) -> None:
    # Redis 7.2.0-7.2.4 would write the numbers with 8+ trailing zeros as "1e+08" (see
    # int_arg in common.lua); int_arg formats exactly those, and leaves the rest as numbers.
    values = [100_000_000, 2_500_000_000_000_000, 1_764_000_000_123_456, 123, 0, 400]
    calls = "\n".join(
        f"redis.call('SET', KEYS[1] .. {i}, int_arg({v}))" for i, v in enumerate(values)
    )
    script = f"local now_us = 0\n{_lua.read('common')}\n{calls}\n" + "\n".join(
        [
            "local kinds = {}",
            f"for i, v in ipairs({{{', '.join(map(str, values))}}}) do",
            "  kinds[i] = type(int_arg(v))",
            "end",
            "return kinds",
        ]
    )
    assert lua_client.eval(script, 1, f"{key_prefix}:") == [
        b"string",
        b"string",
        b"number",
        b"number",
        b"number",
        b"number",
    ]
    stored = [lua_client.get(f"{key_prefix}:{i}") for i in range(len(values))]
    assert stored == [str(v).encode() for v in values]
