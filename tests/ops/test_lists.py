"""The stored allow list, blocks and refusal counts cost no round trip of their own.

They are looked up inside the request's one ``EVALSHA`` (``lua/dispatch.lua``). The proof
counts what crosses the socket: a redis-py ``Connection`` that records every packet sent and
every reply read, under the production script and client (no injected clock).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import redis
from flask import Flask, g, request

from flask_quota import Quota, admin, by_api_key, by_ip, by_user, signals
from flask_quota.keys import REFUSALS, identity_key
from flask_quota.storage import MemoryStorage, RedisStorage
from tests._support import ManualClock
from tests.ops.conftest import HASHED_KEY, IP1, IP2, SECRET, get, state_of

HEADERS = {"X-User": "7", "X-API-Key": SECRET}
#: The three identities of a request to /multi from IP1 with HEADERS.
IDENTITIES = (IP1, "user:7", HASHED_KEY)


class CountingConnection(redis.Connection):
    """A connection that logs each packet it sends and each reply it reads.

    One ``send_packed_command`` and one ``read_response`` is one round trip; a pipeline
    would be one send and several reads, so both are counted.
    """

    log: ClassVar[list[str]] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packets = command if isinstance(command, list | tuple) else [command]
        first = packets[0] if packets else b""
        # The command name is the first bulk string: *<n>\r\n$<len>\r\n<NAME>\r\n...
        name = bytes(first).split(b"\r\n")[2].decode() if first else "?"
        self.log.append(f"send {name.upper()}")
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        self.log.append("read")
        return super().read_response(*args, **kwargs)


class _User:
    id = "7"


def multi_app(key_prefix: str, **config: Any) -> Flask:
    """One view limited per IP, per user and per API key: three identities, four limits.

    Its storage is memory:// on the manual ``clock`` given as ``clock``, unless replaced."""
    clock = config.pop("clock", None) or ManualClock()
    app = Flask(__name__)
    app.config.update(
        TESTING=True, QUOTA_STRATEGY="fixed_window", QUOTA_KEY_PREFIX=key_prefix, **config
    )

    @app.before_request
    def authenticate() -> None:
        g.user = _User() if request.headers.get("X-User") else None

    quota = Quota(app)

    @app.get("/multi")
    @quota.limit("100/minute;1000/hour", key=by_ip, name="ip")
    @quota.limit("3/minute", key=by_user, name="user")
    @quota.limit("50/minute", key=by_api_key, name="key")
    def multi() -> str:
        return "ok"

    state_of(app).storage = MemoryStorage(clock)
    return app


@pytest.fixture
def counted(redis_server: Any, key_prefix: str) -> Iterator[tuple[Flask, redis.Redis]]:
    """The app on the production Redis storage and script, over counting connections."""
    app = multi_app(key_prefix, QUOTA_ALERT_THRESHOLD=2)
    pool = redis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    state_of(app).storage = RedisStorage(client)
    # Warm up: connect (handshake), load the script, learn the live-config version.
    assert get(app, "/multi", headers=HEADERS).status_code == 200
    CountingConnection.log.clear()
    yield app, client
    client.close()


def round_trip(app: Flask, ip: str = IP1) -> tuple[int, list[str]]:
    """One request's status and the socket traffic it caused."""
    CountingConnection.log.clear()
    status = get(app, "/multi", ip=ip, headers=HEADERS).status_code
    return status, list(CountingConnection.log)


ONE_EVALSHA = ["send EVALSHA", "read"]


@pytest.mark.redis
def test_an_admitted_request_is_one_evalsha(counted: tuple[Flask, redis.Redis]) -> None:
    app, _ = counted
    assert round_trip(app) == (200, ONE_EVALSHA)
    assert round_trip(app, IP2) == (200, ONE_EVALSHA)


@pytest.mark.redis
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_stored_whitelist_entry_costs_no_round_trip(
    counted: tuple[Flask, redis.Redis], identity: str
) -> None:
    app, _ = counted
    admin.allow(app, identity)

    # The user limit (3/minute, 1 used) would refuse the third of these.
    results = [round_trip(app) for _ in range(4)]

    assert results == [(200, ONE_EVALSHA)] * 4
    admin.disallow(app, identity)
    assert round_trip(app) == (200, ONE_EVALSHA)
    assert round_trip(app) == (200, ONE_EVALSHA)
    assert round_trip(app) == (429, ONE_EVALSHA)


@pytest.mark.redis
@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_block_costs_no_round_trip(counted: tuple[Flask, redis.Redis], identity: str) -> None:
    app, client = counted
    admin.block(app, identity, 60)

    results = [round_trip(app) for _ in range(3)]

    assert results == [(429, ONE_EVALSHA)] * 3
    # Counted as refusals of the blocked identity, inside the same call.
    prefix = state_of(app).settings.key_prefix
    assert client.get(identity_key(prefix, REFUSALS, identity)) == b"3"
    admin.unblock(app, identity)
    assert round_trip(app) == (200, ONE_EVALSHA)


@pytest.mark.redis
def test_a_refusal_and_its_counting_cost_no_round_trip(
    counted: tuple[Flask, redis.Redis],
) -> None:
    app, client = counted
    offenders: list[dict[str, Any]] = []
    exceeded: list[str] = []

    def on_exceeded(sender: Flask, **kwargs: Any) -> None:
        exceeded.append(kwargs["key"])

    def on_offender(sender: Flask, **kwargs: Any) -> None:
        offenders.append(kwargs)

    with (
        signals.rate_limit_exceeded.connected_to(on_exceeded, app),
        signals.repeat_offender.connected_to(on_offender, app),
    ):
        results = [round_trip(app) for _ in range(5)]

    # user: 3/minute, one used by the warm-up.
    assert results == [(200, ONE_EVALSHA)] * 2 + [(429, ONE_EVALSHA)] * 3
    assert exceeded == ["user:7"] * 3
    # QUOTA_ALERT_THRESHOLD = 2: the second refusal raised the alert, with no extra call.
    assert offenders == [{"key": "user:7", "count": 2, "window": 300}]
    prefix = state_of(app).settings.key_prefix
    assert client.get(identity_key(prefix, REFUSALS, "user:7")) == b"3"
    assert client.get(identity_key(prefix, REFUSALS, IP1)) is None


# -- list semantics over HTTP, on the manual clock (memory) ---------------------------------


@pytest.fixture
def memory_app(key_prefix: str, clock: ManualClock) -> Flask:
    return multi_app(key_prefix, clock=clock)


def test_a_block_expires_on_its_own(memory_app: Flask, clock: ManualClock) -> None:
    admin.block(memory_app, "user:7", 30)
    refused = get(memory_app, "/multi", headers=HEADERS)
    clock.advance(29)
    still = get(memory_app, "/multi", headers=HEADERS)
    clock.advance(1)
    free = get(memory_app, "/multi", headers=HEADERS)

    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert still.status_code == 429 and still.headers["Retry-After"] == "1"
    assert free.status_code == 200
    assert free.headers["X-RateLimit-Remaining"] == "2"


def test_a_blocked_identity_is_charged_nothing(memory_app: Flask) -> None:
    admin.block(memory_app, IP1, 30)
    assert [get(memory_app, "/multi", headers=HEADERS).status_code for _ in range(5)] == [429] * 5
    admin.unblock(memory_app, IP1)

    # Nothing was charged to any of the request's identities while it was refused.
    assert get(memory_app, "/multi", headers=HEADERS).headers["X-RateLimit-Remaining"] == "2"
    assert [(c.identity, c.used) for c in admin.live_counters(memory_app)] == [
        (IP1, 1),  # 100/minute
        (IP1, 1),  # 1000/hour
        (HASHED_KEY, 1),
        ("user:7", 1),
    ]


def test_a_whitelisted_identity_is_charged_nothing(memory_app: Flask) -> None:
    admin.allow(memory_app, f"key:{SECRET}")
    assert [get(memory_app, "/multi", headers=HEADERS).status_code for _ in range(5)] == [200] * 5
    assert admin.live_counters(memory_app) == []
    assert admin.top_offenders(memory_app) == []


def test_configured_networks_and_identities_bypass(key_prefix: str) -> None:
    app = multi_app(key_prefix, QUOTA_WHITELIST=["10.0.0.0/8", "user:7"])

    from_network = [get(app, "/multi", ip="10.1.2.3").status_code for _ in range(5)]
    as_user = [get(app, "/multi", headers=HEADERS).status_code for _ in range(5)]

    assert from_network == [200] * 5 and as_user == [200] * 5
    assert admin.live_counters(app) == []
    assert (
        get(app, "/multi", ip=IP2, headers={"X-API-Key": "other"}).headers["X-RateLimit-Remaining"]
        == "49"
    )


def test_list_names_each_of_several_limits_stacked_on_one_view(memory_app: Flask) -> None:
    assert get(memory_app, "/multi", headers=HEADERS).status_code == 200

    result = memory_app.test_cli_runner().invoke(args=["quota", "list", "--json"])

    rows = [
        (r["identity"], r["name"], r["limit"], r["remaining"]) for r in json.loads(result.stdout)
    ]
    assert rows == [
        (IP1, "ip", "100/minute", 99),
        (IP1, "ip", "1000/hour", 999),
        (HASHED_KEY, "key", "50/minute", 49),
        ("user:7", "user", "3/minute", 2),
    ]
