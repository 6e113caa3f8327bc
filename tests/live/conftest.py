"""Fixtures for plans and live changes: storages on the manual clock, a wire log of Redis
round trips, requests held open inside a view, and a StatsD listener.

``backend`` runs a test on ``memory://`` and on the real Redis of ``tests/conftest.py``, both
deciding on the manual ``clock``. Its Redis storage also answers ``now_us`` from that clock:
timed overrides and emergencies are stamped with ``now_us`` and lapse by the clock each call
returns, so the two must be one clock here.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import redis
from flask import Flask
from statsd import StatsClient
from werkzeug.test import TestResponse

from flask_quota import metrics
from flask_quota.extension import AppState
from flask_quota.storage import MemoryStorage, Storage
from tests._support import ClockedRedisStorage, ManualClock
from tests.flask.conftest import Backend

#: The longest any test waits for another thread (a bound, never a pause: waits end at once
#: when the awaited thread arrives).
WAIT_S = 5.0


class ClockedLiveRedisStorage(ClockedRedisStorage):
    """Real Lua on the manual clock (``now_us`` and config snapshots included, as in the base)."""


@dataclass
class LiveBackend(Backend):
    """:class:`tests.flask.conftest.Backend` whose Redis storage reads the manual clock for
    live-config expiries too."""

    def storage(self) -> Storage:
        if self.redis_client is None:
            return MemoryStorage(self.clock)
        return ClockedLiveRedisStorage(self.redis_client, self.clock)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, clock: ManualClock, key_prefix: str) -> LiveBackend:
    client = request.getfixturevalue("redis_client") if request.param == "redis" else None
    return LiveBackend(request.param, clock, key_prefix, client)


@pytest.fixture
def make_app(key_prefix: str) -> Callable[..., Flask]:
    """``make_app(**config)``: a bare testing app on this test's key prefix."""

    def make(**config: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(TESTING=True, QUOTA_KEY_PREFIX=key_prefix, **config)
        return app

    return make


def state_of(app: Flask) -> AppState:
    state: AppState = app.extensions["quota.state"]
    return state


def limit_header(response: TestResponse) -> int | None:
    """``X-RateLimit-Limit`` as a number (``None`` when the response has none)."""
    value = response.headers.get("X-RateLimit-Limit")
    return None if value is None else int(value)


# -- Redis round trips ------------------------------------------------------------------------


def command_name(packed: Any) -> str:
    """The command name in a RESP-packed command (``*3\\r\\n$7\\r\\nEVALSHA\\r\\n...``)."""
    chunks = [packed] if isinstance(packed, str | bytes) else list(packed)
    raw = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
    return raw.split(b"\r\n", 3)[2].decode().upper()


class WireLog:
    """Every command a redis-py client puts on the wire: one entry per round trip (redis-py
    waits for each reply; a pipeline is one send, named by its first command)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def attach(self, client: redis.Redis) -> redis.Redis:
        """Log ``client``'s connections; call it before the client has connected."""
        log = self.sent

        class LoggedConnection(redis.Connection):
            def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                log.append(command_name(command))
                super().send_packed_command(command, check_health)

        client.connection_pool.connection_class = LoggedConnection
        return client

    def take(self) -> list[str]:
        """The commands sent since the last call."""
        taken = list(self.sent)
        self.sent.clear()
        return taken


# -- requests held open inside a view -------------------------------------------------------


class Gate:
    """Keeps requests inside their view until opened: views call :meth:`hold`."""

    def __init__(self) -> None:
        self._entered = threading.Semaphore(0)
        self._opened = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: list[TestResponse] = []
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Inside a view: say it is in, then wait until the test opens the gate."""
        self._entered.release()
        if not self._opened.wait(WAIT_S):
            raise TimeoutError("the test never opened the gate")

    def send(self, app: Flask, path: str, headers: Mapping[str, str], count: int = 1) -> None:
        """Start ``count`` requests in threads and return once each is inside the view."""
        for _ in range(count):
            thread = threading.Thread(target=self._request, args=(app, path, dict(headers)))
            thread.start()
            self._threads.append(thread)
        for _ in range(count):
            assert self._entered.acquire(timeout=WAIT_S), "a held request never reached the view"

    def _request(self, app: Flask, path: str, headers: dict[str, str]) -> None:
        response = app.test_client().get(path, headers=headers)
        with self._lock:
            self._responses.append(response)

    def open(self) -> list[int]:
        """Let every held request finish; their statuses. The gate closes again after."""
        self._opened.set()
        for thread in self._threads:
            thread.join(WAIT_S)
            assert not thread.is_alive(), "a held request did not finish"
        statuses = [r.status_code for r in self._responses]
        self._threads.clear()
        self._responses.clear()
        self._opened.clear()
        return statuses


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()  # never leave a thread waiting, even when the test failed


# -- StatsD ------------------------------------------------------------------------------------


class StatsdListener:
    """A UDP socket on 127.0.0.1 standing in for a StatsD server."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(WAIT_S)
        self.port: int = self._sock.getsockname()[1]
        self._seen: list[str] = []

    def lines(self) -> list[str]:
        """Every metric line received so far (reads what has arrived, without waiting)."""
        self._sock.setblocking(False)
        try:
            while True:
                try:
                    packet = self._sock.recv(65536)
                except BlockingIOError:
                    break
                self._seen += packet.decode().splitlines()
        finally:
            self._sock.settimeout(WAIT_S)
        return list(self._seen)

    def wait_for(self, line: str) -> list[str]:
        """Read until ``line`` has arrived (bounded by :data:`WAIT_S`); every line so far."""
        while line not in self._seen:
            try:
                packet = self._sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"StatsD line {line!r} never arrived; got {self._seen!r}")
            self._seen += packet.decode().splitlines()
        return list(self._seen)

    def close(self) -> None:
        self._sock.close()


class ClosableStatsClient(StatsClient):
    """statsd's client, remembered so the test can close its socket (an app's lives as long as
    the app, and its ResourceWarning would otherwise fail whichever test collects the app)."""

    opened: ClassVar[list[StatsClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened.append(self)


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    """A listener; the apps of the test send to it through clients closed after the test."""
    monkeypatch.setattr(metrics, "StatsClient", ClosableStatsClient)
    listener = StatsdListener()
    yield listener
    listener.close()
    while ClosableStatsClient.opened:
        ClosableStatsClient.opened.pop().close()
