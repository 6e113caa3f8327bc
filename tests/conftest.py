"""Fixtures: a redis-server of our own on a free port, a manual clock, per-test key prefixes.

Tests that need Redis fail instead of skipping when ``CI`` is set, so a missing server can
never pass as a green run. ``QUOTA_TEST_REDIS_URL`` points the suite at an existing server;
the suite never flushes it and keeps to its own key prefixes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
from statsd import StatsClient

from flask_quota import metrics
from tests._support import ManualClock


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"Redis is required in CI: {reason}")
    pytest.skip(reason)


class RedisServer:
    """A redis-server process this test run started, and its URL."""

    def __init__(self, url: str, process: subprocess.Popen[bytes] | None, port: int) -> None:
        self.url = url
        self.process = process
        self.port = port


class RedisProcess:
    """A redis-server this test run starts on a free port (never 6379), and stops by its own
    process: the session's server, and servers a test stops and restarts."""

    def __init__(self, workdir: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("redis-server is not installed and QUOTA_TEST_REDIS_URL is not set")
        self.binary = str(binary)
        self.workdir = workdir
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        self.process.kill()
                        _unavailable(f"redis-server did not start on port {self.port}")
                    time.sleep(0.02)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    url = os.environ.get("QUOTA_TEST_REDIS_URL")
    if url:
        port = int(redis.Redis.from_url(url).connection_pool.connection_kwargs.get("port", 0))
        yield RedisServer(url, None, port)
        return
    workdir = tempfile.mkdtemp(prefix="quota-redis-")
    server = RedisProcess(workdir)
    server.start()
    try:
        yield RedisServer(server.url, server.process, server.port)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A server of this test's own, which it may stop and start again."""
    server = RedisProcess(str(tmp_path))
    server.start()
    yield server
    if server.process is not None:
        server.stop()


class HungRedis:
    """A TCP port that accepts connections and never answers (a hung Redis), and counts them:
    whether a request waited on the storage is seen without timing it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.uri = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"

    def new_connections(self) -> int:
        """Connections made since the last call (the kernel completes and queues them)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def hung_redis() -> Iterator[HungRedis]:
    server = HungRedis()
    yield server
    server.sock.close()


class ClosableStatsClient(StatsClient):
    """statsd's client, remembered so the test can close its socket.

    An app's StatsD socket lives as long as the app; apps made per test are collected at some
    later point, and the unclosed socket's ResourceWarning would then fail an unrelated test.
    """

    opened: ClassVar[list[StatsClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened.append(self)


@pytest.fixture
def close_statsd_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The StatsD clients apps make during the test are closed at its end (use it with
    ``pytestmark = pytest.mark.usefixtures("close_statsd_clients")``)."""
    monkeypatch.setattr(metrics, "StatsClient", ClosableStatsClient)
    yield
    while ClosableStatsClient.opened:
        ClosableStatsClient.opened.pop().close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests share a server without flushing it."""
    return f"qt{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
