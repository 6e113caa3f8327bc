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

import pytest
import redis

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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    url = os.environ.get("QUOTA_TEST_REDIS_URL")
    if url:
        port = int(redis.Redis.from_url(url).connection_pool.connection_kwargs.get("port", 0))
        yield RedisServer(url, None, port)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed and QUOTA_TEST_REDIS_URL is not set")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="quota-redis-")
    process = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                _unavailable("redis-server did not start")
            time.sleep(0.05)
    client.close()
    try:
        yield RedisServer(url, process, port)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


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
