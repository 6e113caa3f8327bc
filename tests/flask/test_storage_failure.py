"""A storage that fails for real: nothing listening, a redis-server stopped and restarted under
the app, a server that accepts but never answers. The fail mode decides, the dead storage is
asked at most once per ``QUOTA_RETRY_INTERVAL``, and enforcement resumes by itself.

The retry interval runs on ``time.time()`` (the seam freezegun and time-machine use), which
``fake_time`` replaces; Redis decisions use Redis ``TIME`` with hour-long limits, so no test
waits for a window.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_quota import Quota, StorageError
from flask_quota.extension import AppState
from flask_quota.signals import storage_error
from flask_quota.storage import MemoryStorage, RedisStorage
from tests._support import ManualClock
from tests.conftest import RedisProcess, _free_port

pytestmark = pytest.mark.redis


class FakeTime:
    """A ``time.time`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(time, "time", fake)
    return fake


class Attempts:
    """Counts the calls that reach the storage on a request's path: ``evaluate``, and the
    live-config read a process makes before deciding when its view of it is stale."""

    def __init__(self, state: AppState) -> None:
        self.count = 0
        for name in ("evaluate", "snapshot_config"):
            setattr(state.storage, name, self._counting(getattr(state.storage, name)))

    def _counting(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return call(*args, **kwargs)

        return counted


@pytest.fixture
def make_app(key_prefix: str, clock: ManualClock) -> Iterator[Callable[..., Flask]]:
    """Apps on a real storage URI, each with one view ``/`` limited to ``2/hour`` (sliding
    log: exact whatever the wall clock does); their Redis clients are closed afterwards."""
    apps: list[Flask] = []

    def make(uri: str, **config: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(
            TESTING=True,
            QUOTA_KEY_PREFIX=key_prefix,
            QUOTA_STORAGE_URI=uri,
            QUOTA_STRATEGY="sliding_log",
            **config,
        )
        quota = Quota(app)
        app.add_url_rule("/", "index", quota.limit("2/hour")(lambda: "ok"))
        # Local fallback counts on the manual clock, so its windows never roll mid-test.
        app.extensions["quota.state"].local_storage = MemoryStorage(clock)
        apps.append(app)
        return app

    yield make
    for app in apps:
        storage = app.extensions["quota.state"].storage
        if isinstance(storage, RedisStorage):
            storage.client.close()


@pytest.fixture
def dead_uri() -> str:
    """A Redis URI where nothing listens."""
    return f"redis://127.0.0.1:{_free_port()}/0"


def statuses(app: Flask, times: int) -> list[int]:
    client = app.test_client()
    return [client.get("/").status_code for _ in range(times)]


# -- nothing listening ---------------------------------------------------------------------


def test_fail_open_lets_requests_through_and_signals_once(
    make_app: Callable[..., Flask], dead_uri: str, fake_time: FakeTime
) -> None:
    app = make_app(dead_uri, QUOTA_FAIL_MODE="open")
    errors: list[object] = []

    with storage_error.connected_to(lambda sender, **extra: errors.append(extra["error"]), app):
        responses = [app.test_client().get("/") for _ in range(5)]

    assert [r.status_code for r in responses] == [200] * 5
    assert all("X-RateLimit-Limit" not in r.headers for r in responses)
    assert len(errors) == 1
    assert isinstance(errors[0], StorageError)


def test_fail_closed_answers_503(
    make_app: Callable[..., Flask], dead_uri: str, fake_time: FakeTime
) -> None:
    app = make_app(dead_uri, QUOTA_FAIL_MODE="closed")

    responses = [app.test_client().get("/") for _ in range(3)]

    assert [r.status_code for r in responses] == [503] * 3
    assert responses[0].mimetype == "application/json"
    assert responses[0].get_json()["error"] == "Service Unavailable"
    assert responses[0].headers["Retry-After"] == "5"  # QUOTA_RETRY_INTERVAL


def test_fail_local_enforces_per_process_limits(
    make_app: Callable[..., Flask], dead_uri: str, fake_time: FakeTime
) -> None:
    app = make_app(dead_uri, QUOTA_FAIL_MODE="local")
    client = app.test_client()

    responses = [client.get("/") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["X-RateLimit-Remaining"] == "1"
    assert responses[2].headers["Retry-After"] == "3600"


def test_dead_storage_is_tried_once_per_retry_interval(
    make_app: Callable[..., Flask], dead_uri: str, fake_time: FakeTime
) -> None:
    app = make_app(dead_uri, QUOTA_FAIL_MODE="open", QUOTA_RETRY_INTERVAL=5)
    attempts = Attempts(app.extensions["quota.state"])
    client = app.test_client()
    errors: list[object] = []
    seen: list[int] = []

    with storage_error.connected_to(lambda sender, **extra: errors.append(extra["error"]), app):
        for step in (0, 1, 3.5, 1, 1, 3.5, 1):  # t = 0, 1, 4.5, 5.5, 6.5, 10, 11
            fake_time.advance(step)
            assert client.get("/").status_code == 200
            seen.append(attempts.count)

    # A probe at 0 s, then none until 5 s have passed (5.5 s), then none until 10.5 s.
    assert seen == [1, 1, 1, 2, 2, 2, 3]
    assert len(errors) == 3


def test_storage_error_count_follows_the_retry_interval(
    make_app: Callable[..., Flask], dead_uri: str, fake_time: FakeTime
) -> None:
    app = make_app(dead_uri, QUOTA_FAIL_MODE="closed", QUOTA_RETRY_INTERVAL=2.5)
    attempts = Attempts(app.extensions["quota.state"])
    client = app.test_client()

    for _ in range(10):  # 10 requests over 10 s: a probe at 0, 3, 6 and 9 s
        assert client.get("/").status_code == 503
        fake_time.advance(1)

    assert attempts.count == 4


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("open", [200, 200, 200]), ("closed", [503, 503, 503]), ("local", [200, 200, 429])],
)
def test_a_database_the_server_lacks_follows_the_fail_mode(
    make_app: Callable[..., Flask],
    redis_server: Any,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    expected: list[int],
) -> None:
    # The server is up but refuses SELECT 99 (it has the default 16 databases): every request
    # used to be a 500 (redis-py's ResponseError from connecting), whatever the fail mode.
    app = make_app(redis_server.url.rsplit("/", 1)[0] + "/99", QUOTA_FAIL_MODE=mode)
    errors: list[object] = []

    with (
        caplog.at_level(logging.WARNING, logger="flask_quota"),
        storage_error.connected_to(lambda sender, **extra: errors.append(extra["error"]), app),
    ):
        got = statuses(app, 3)

    assert got == expected
    assert len(errors) == 1 and isinstance(errors[0], StorageError)
    assert [r.getMessage() for r in caplog.records] == [
        "rate-limit storage failed (redis unavailable: DB index is out of range (refused while "
        "setting up the connection: check the database number and the credentials in "
        f"QUOTA_STORAGE_URI)); fail mode {mode!r} for 5.0 s"
    ]


@pytest.mark.parametrize(
    ("view_mode", "config_mode", "expected"),
    [
        ("closed", "open", [503, 503, 503]),
        ("local", "open", [200, 200, 429]),
        ("closed", "local", [503, 503, 503]),
        ("open", "local", [200, 200, 429]),
        ("open", "closed", [503, 503, 503]),
    ],
)
def test_strictest_fail_mode_of_a_request_wins(
    dead_uri: str,
    key_prefix: str,
    clock: ManualClock,
    fake_time: FakeTime,
    view_mode: str,
    config_mode: str,
    expected: list[int],
) -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        QUOTA_KEY_PREFIX=key_prefix,
        QUOTA_STORAGE_URI=dead_uri,
        QUOTA_FAIL_MODE=config_mode,
        QUOTA_STRATEGY="fixed_window",
    )
    quota = Quota(app, global_limits=["100/hour"])
    app.add_url_rule("/login", "login", quota.limit("2/hour", fail_mode=view_mode)(lambda: "in"))
    app.add_url_rule("/other", "other", lambda: "ok")
    state: AppState = app.extensions["quota.state"]
    state.local_storage = MemoryStorage(clock)
    client = app.test_client()

    try:
        login = [client.get("/login").status_code for _ in range(3)]
        other = client.get("/other").status_code
    finally:
        assert isinstance(state.storage, RedisStorage)
        state.storage.client.close()

    assert login == expected
    # A request the stricter limit does not cover keeps the app's own mode.
    assert other == (503 if config_mode == "closed" else 200)


# -- a redis-server that dies and comes back ------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "while_down"),
    [
        ("open", [200, 200, 200]),
        ("closed", [503, 503, 503]),
        ("local", [200, 200, 429]),
    ],
)
def test_redis_restart_mid_traffic(
    make_app: Callable[..., Flask],
    own_redis: RedisProcess,
    fake_time: FakeTime,
    mode: str,
    while_down: list[int],
) -> None:
    app = make_app(own_redis.url, QUOTA_FAIL_MODE=mode, QUOTA_RETRY_INTERVAL=5)
    attempts = Attempts(app.extensions["quota.state"])
    errors: list[object] = []

    with storage_error.connected_to(lambda sender, **extra: errors.append(extra["error"]), app):
        assert statuses(app, 3) == [200, 200, 429]  # Redis enforces
        own_redis.stop()
        assert statuses(app, 3) == while_down
        # 3 checks and the new process's first live-config read; then the first request
        # after the crash, and none after it.
        assert attempts.count == 5
        own_redis.start()
        fake_time.advance(1)
        # Back, but not asked before the retry interval is over.
        assert statuses(app, 1) == while_down[-1:]
        assert attempts.count == 5
        fake_time.advance(4.5)
        # Enforcement resumes by itself; the restarted server (no persistence) starts afresh.
        assert statuses(app, 3) == [200, 200, 429]

    assert attempts.count == 8
    assert len(errors) == 1


# -- a server that never answers ------------------------------------------------------------


@pytest.fixture
def hung_uri() -> Iterator[str]:
    """A TCP server that accepts connections and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{port}/0"
    done.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 503)])
def test_hung_redis_does_not_stall_a_request(
    make_app: Callable[..., Flask], hung_uri: str, fake_time: FakeTime, mode: str, status: int
) -> None:
    app = make_app(hung_uri, QUOTA_FAIL_MODE=mode, QUOTA_STORAGE_TIMEOUT=0.1)
    attempts = Attempts(app.extensions["quota.state"])
    client = app.test_client()

    started = time.monotonic()
    first = client.get("/")
    first_s = time.monotonic() - started
    started = time.monotonic()
    following = [client.get("/") for _ in range(5)]
    following_s = time.monotonic() - started

    assert first.status_code == status
    assert [r.status_code for r in following] == [status] * 5
    assert attempts.count == 1
    # Generous bounds: the socket timeout is 0.1 s; without it a read would block forever.
    assert first_s < 1.0
    assert following_s < 1.0
