"""``@quota.concurrent(n, key=...)``: at most ``n`` requests of one identity in flight, across
every process sharing the storage; the slot is given back when the request ends, even on error,
and a slot whose worker died lapses after ``lease``.

Requests are held open inside the view by threads waiting at a :class:`Gate`. Leases are timed
by the manual clock, on ``memory://`` and on real Redis.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from flask import Flask, request
from werkzeug.test import TestResponse

from flask_quota import Quota
from flask_quota._request import CONCURRENT
from flask_quota.keys import limit_key
from flask_quota.storage.base import Slot
from tests._support import ManualClock
from tests.conftest import RedisServer
from tests.live.conftest import ClockedLiveRedisStorage, Gate, LiveBackend, WireLog, state_of

LEASE_S = 30


def by_user() -> str | None:
    return request.headers.get("X-User")


def user(name: str) -> dict[str, str]:
    return {"X-User": name}


def concurrent_app(make_app: Callable[..., Flask], gate: Gate, **config: object) -> Flask:
    """``/report``: 2 in flight per user (and ``100/minute``); ``/export``: 1 in flight per
    user. ``?hold=1`` waits at ``gate``; ``?fail=1`` raises."""
    app = make_app(QUOTA_STRATEGY="fixed_window", **config)
    quota = Quota(app, key=by_user)

    def work() -> str:
        if request.args.get("hold"):
            gate.hold()
        if request.args.get("fail"):
            raise RuntimeError("the report failed")
        return "done"

    @app.get("/report")
    @quota.limit("100/minute")
    @quota.concurrent(2, key=by_user, name="reports", lease=LEASE_S)
    def report() -> str:
        return work()

    @app.get("/export")
    @quota.concurrent(1, key=by_user, name="exports", lease=LEASE_S)
    def export() -> str:
        return work()

    return app


def refusal(response: TestResponse) -> tuple[int, str | None, str, int]:
    body = response.get_json()
    return response.status_code, response.headers.get("Retry-After"), body["policy"], body["limit"]


def test_the_request_past_n_in_flight_is_refused_and_others_are_not(
    make_app: Callable[..., Flask], backend: LiveBackend, gate: Gate
) -> None:
    app = concurrent_app(make_app, gate)
    backend.attach(app)
    client = app.test_client()

    gate.send(app, "/report?hold=1", user("alice"), count=2)
    third = client.get("/report", headers=user("alice"))
    bob = client.get("/report", headers=user("bob"))
    other_view = client.get("/export", headers=user("alice"))
    held = gate.open()
    # Both slots came back: two can be held again, and the third is refused again.
    gate.send(app, "/report?hold=1", user("alice"), count=2)
    third_again = client.get("/report", headers=user("alice"))
    held_again = gate.open()
    after = [client.get("/report", headers=user("alice")).status_code for _ in range(3)]

    assert refusal(third) == (429, "1", "reports", 2)
    assert (bob.status_code, other_view.status_code) == (200, 200)
    assert held == held_again == [200, 200]
    assert refusal(third_again) == (429, "1", "reports", 2)
    assert after == [200, 200, 200]


@pytest.mark.redis
def test_two_app_instances_sharing_redis_share_the_slots(
    make_app: Callable[..., Flask], redis_client: redis.Redis, clock: ManualClock, gate: Gate
) -> None:
    first, second = concurrent_app(make_app, gate), concurrent_app(make_app, gate)
    for app in (first, second):
        state_of(app).storage = ClockedLiveRedisStorage(redis_client, clock)

    gate.send(first, "/report?hold=1", user("alice"), count=1)
    gate.send(second, "/report?hold=1", user("alice"), count=1)
    on_first = first.test_client().get("/report", headers=user("alice"))
    on_second = second.test_client().get("/report", headers=user("alice"))
    bob = second.test_client().get("/report", headers=user("bob"))
    held = gate.open()
    after = second.test_client().get("/report", headers=user("alice"))

    assert refusal(on_first) == refusal(on_second) == (429, "1", "reports", 2)
    assert bob.status_code == 200
    assert held == [200, 200]
    assert after.status_code == 200


def test_a_view_that_raises_gives_its_slot_back(
    make_app: Callable[..., Flask], backend: LiveBackend, gate: Gate
) -> None:
    app = concurrent_app(make_app, gate, PROPAGATE_EXCEPTIONS=False)
    backend.attach(app)
    client = app.test_client()

    failed = [client.get("/export?fail=1", headers=user("alice")).status_code for _ in range(3)]
    next_one = client.get("/export", headers=user("alice"))
    gate.send(app, "/export?hold=1", user("alice"))
    beside = client.get("/export", headers=user("alice"))
    gate.open()

    assert failed == [500, 500, 500]
    assert next_one.status_code == 200
    assert refusal(beside) == (429, "1", "exports", 1)


def test_a_slot_never_given_back_lapses_after_its_lease(
    make_app: Callable[..., Flask], backend: LiveBackend, gate: Gate
) -> None:
    app = concurrent_app(make_app, gate)
    state = backend.attach(app)
    client = app.test_client()
    # A worker took alice's one export slot, then died: nobody will release it.
    dead = Slot(
        key=limit_key(state.settings.key_prefix, "exports", CONCURRENT, 0, "alice"),
        capacity=1,
        lease_us=LEASE_S * 1_000_000,
        token="worker-that-died",
    )
    taken = state.storage.evaluate([], slots=[dead])

    refused = client.get("/export", headers=user("alice"))
    bob = client.get("/export", headers=user("bob"))
    backend.clock.advance(LEASE_S, us=-1)
    still_refused = client.get("/export", headers=user("alice"))
    backend.clock.advance(us=1)
    lapsed = [client.get("/export", headers=user("alice")).status_code for _ in range(2)]

    assert taken.allowed
    assert refusal(refused) == (429, "1", "exports", 1)
    assert bob.status_code == 200
    # Retry-After is capped at 1 s: slots usually come back long before their lease ends.
    assert refusal(still_refused) == (429, "1", "exports", 1)
    assert lapsed == [200, 200]


@pytest.mark.redis
def test_a_slot_rides_the_rate_limits_round_trip_and_release_is_one_more(
    make_app: Callable[..., Flask], redis_server: RedisServer, clock: ManualClock, gate: Gate
) -> None:
    app = concurrent_app(make_app, gate, PROPAGATE_EXCEPTIONS=False)
    wire = WireLog()
    client_redis = wire.attach(redis.Redis.from_url(redis_server.url))
    state_of(app).storage = ClockedLiveRedisStorage(client_redis, clock)
    client = app.test_client()
    client.get("/report", headers=user("warm-up"))  # connect, load the script, read the config

    def sent(path: str, name: str) -> tuple[int, list[str]]:
        wire.take()
        status = client.get(path, headers=user(name)).status_code
        return status, wire.take()

    admitted = [sent("/report", "alice") for _ in range(2)]
    failed = sent("/report?fail=1", "alice")
    gate.send(app, "/report?hold=1", user("bob"), count=2)
    wire.take()
    refused = sent("/report", "bob")
    gate.open()
    client_redis.close()

    # One EVALSHA checks the rate limit and takes the slot; teardown's ZREM gives it back.
    assert admitted == [(200, ["EVALSHA", "ZREM"])] * 2
    assert failed == (500, ["EVALSHA", "ZREM"])
    # Refused: no slot was taken, so none is given back.
    assert refused == (429, ["EVALSHA"])
