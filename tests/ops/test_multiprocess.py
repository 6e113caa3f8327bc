"""Two app processes share one Redis: an operator's CLI command reaches both at once.

Each worker is a separate (spawned) Python process that builds the app and serves requests
through its test client on command over a pipe. The CLI runs in this process on a third app
instance. Redis keeps real time here, so the limit is a token bucket of 2 per hour: it refills
one token per 30 minutes, and no window boundary can fall inside the test.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from flask_quota import Quota
from tests._workers import spawned

pytestmark = pytest.mark.redis

X = "203.0.113.10"
Y = "203.0.113.11"
Z = "203.0.113.12"
#: Generous: a spawned interpreter imports Flask and flask-quota first.
START_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 10.0


def make_app(url: str, key_prefix: str) -> Flask:
    """The app every process runs: ``/`` limited to 2 an hour per client IP."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        QUOTA_STORAGE_URI=url,
        QUOTA_KEY_PREFIX=key_prefix,
        QUOTA_STORAGE_TIMEOUT=2.0,
    )
    quota = Quota(app)

    @app.get("/")
    @quota.limit("2/hour", strategy="token_bucket", name="hourly")
    def index() -> str:
        return "ok"

    return app


def serve(conn: multiprocessing.connection.Connection, url: str, key_prefix: str) -> None:
    """A worker: build the app, then answer ``(path, ip)`` with ``(status, Retry-After)``
    until told ``None``."""
    client = make_app(url, key_prefix).test_client()
    conn.send("ready")
    while (command := conn.recv()) is not None:
        path, ip = command
        response = client.get(path, environ_base={"REMOTE_ADDR": ip})
        retry_after = response.headers.get("Retry-After")
        conn.send((response.status_code, None if retry_after is None else int(retry_after)))
    conn.close()


@dataclass
class Worker:
    process: Any
    conn: multiprocessing.connection.Connection

    def get(self, ip: str, path: str = "/") -> tuple[int, int | None]:
        self.conn.send((path, ip))
        assert self.conn.poll(REPLY_TIMEOUT_S), "worker did not answer"
        reply: tuple[int, int | None] = self.conn.recv()
        return reply


@pytest.fixture
def workers(redis_server: Any, key_prefix: str) -> Iterator[tuple[Worker, Worker]]:
    with spawned(serve, (redis_server.url, key_prefix), 2, START_TIMEOUT_S) as started:
        first, second = (Worker(process, conn) for process, conn in started)
        yield first, second


def cli(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["quota", *args])
    assert result.exit_code == 0, result.output
    out: str = result.stdout
    return out


def test_cli_changes_reach_every_process_at_once(
    workers: tuple[Worker, Worker], redis_server: Any, key_prefix: str
) -> None:
    a, b = workers
    operator = make_app(redis_server.url, key_prefix)
    assert a.process.pid != b.process.pid

    # One counter for both processes: 2 an hour in all, not per process.
    assert [a.get(X)[0], b.get(X)[0]] == [200, 200]
    refused_a, refused_b = a.get(X), b.get(X)
    assert refused_a[0] == refused_b[0] == 429
    # The next token comes in 30 minutes.
    assert refused_a[1] is not None and 1795 <= refused_a[1] <= 1800

    cli(operator, "reset", X)
    assert [a.get(X)[0], b.get(X)[0], a.get(X)[0]] == [200, 200, 429]

    cli(operator, "block", Y, "--for", "120")
    blocked_a, blocked_b = a.get(Y), b.get(Y)
    assert blocked_a[0] == blocked_b[0] == 429
    assert blocked_a[1] is not None and 115 <= blocked_a[1] <= 120
    assert blocked_b[1] is not None and 115 <= blocked_b[1] <= 120
    assert a.get(Z) == (200, None)

    cli(operator, "unblock", Y)
    assert [a.get(Y), b.get(Y)] == [(200, None), (200, None)]

    cli(operator, "whitelist", "add", X)
    assert [a.get(X)[0], b.get(X)[0], a.get(X)[0]] == [200, 200, 200]
    cli(operator, "whitelist", "remove", X)
    assert [a.get(X)[0], b.get(X)[0]] == [429, 429]

    assert cli(operator, "top", "--json").count(X) == 1
