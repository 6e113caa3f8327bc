"""A process obeys a live change within a second even when it was idle when it happened.

A busy process learns of a change from the version its previous request's call returned; an
idle one re-reads the config before deciding once its knowledge is over a second old.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask

from flask_quota import Quota, admin
from tests._support import ManualClock
from tests.flask.test_storage_failure import FakeTime
from tests.live.conftest import ClockedLiveRedisStorage, limit_header, state_of


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(time, "time", fake)
    return fake


def worker(make_app: Callable[..., Flask], storage: ClockedLiveRedisStorage) -> Flask:
    app = make_app()
    quota = Quota(app)

    @app.get("/search")
    @quota.limit("5/minute", name="search")
    def search() -> str:
        return "ok"

    state_of(app).storage = storage
    return app


class SnapshotCount:
    def __init__(self, app: Flask) -> None:
        self.count = 0
        storage = state_of(app).storage
        original = storage.snapshot_config

        def counted(*args: Any) -> Any:
            self.count += 1
            return original(*args)

        storage.snapshot_config = counted  # type: ignore[method-assign]


@pytest.mark.redis
def test_an_idle_process_obeys_a_change_on_its_first_request(
    make_app: Callable[..., Flask],
    redis_client: redis.Redis,
    clock: ManualClock,
    fake_time: FakeTime,
) -> None:
    busy = worker(make_app, ClockedLiveRedisStorage(redis_client, clock))
    idle = worker(make_app, ClockedLiveRedisStorage(redis_client, clock))
    assert limit_header(idle.test_client().get("/search")) == 5
    reads = SnapshotCount(idle)

    admin.set_override(busy, "search", "2/minute")
    fake_time.advance(1.5)  # idle for longer than a second

    assert limit_header(idle.test_client().get("/search")) == 2
    assert reads.count == 1


@pytest.mark.redis
def test_a_busy_process_reads_nothing_extra_in_the_steady_state(
    make_app: Callable[..., Flask],
    redis_client: redis.Redis,
    clock: ManualClock,
    fake_time: FakeTime,
) -> None:
    app = worker(make_app, ClockedLiveRedisStorage(redis_client, clock))
    client = app.test_client()
    client.get("/search")
    reads = SnapshotCount(app)

    for _ in range(4):
        fake_time.advance(0.5)
        assert limit_header(client.get("/search")) == 5

    assert reads.count == 0
