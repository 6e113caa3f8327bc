"""One storage call per request, whatever the number of limits: counted on the wire for Redis
(every command sent and every reply read by redis-py), and per call for both storages."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from flask import Blueprint, Flask, Response, g, request

from flask_quota import Quota, by_ip, by_user
from flask_quota.extension import AppState
from flask_quota.storage import RedisStorage
from tests.conftest import RedisServer
from tests.flask.conftest import Backend

WIRE: list[tuple[str, bytes]] = []


class CountingConnection(redis.Connection):
    """A redis-py connection that logs each command it sends and each reply it reads."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, str | bytes) else list(command)
        head = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        WIRE.append(("send", head[:64]))
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        WIRE.append(("read", b""))
        return super().read_response(*args, **kwargs)


def stacked_app(app: Flask) -> Quota:
    """Global + blueprint + per-user + per-IP limits on ``/api/items``: four checks."""

    @app.before_request  # by_user reads g.user
    def load_user() -> None:
        g.user = SimpleNamespace(id=request.headers.get("X-User", "anonymous"))

    quota = Quota(app, global_limits=["1000/hour"], strategy="gcra")
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.route("/items")
    @quota.limit("3/hour", key=by_user)
    @quota.limit("100/hour", key=by_ip)
    def items() -> str:
        return "items"

    quota.limit_blueprint(api, "500/hour")
    app.register_blueprint(api)
    return quota


@pytest.fixture
def wire() -> Iterator[list[tuple[str, bytes]]]:
    WIRE.clear()
    yield WIRE
    WIRE.clear()


@pytest.mark.redis
def test_stacked_limits_cost_exactly_one_redis_round_trip(
    app: Flask, redis_server: RedisServer, wire: list[tuple[str, bytes]]
) -> None:
    hook_marks: list[tuple[str, int]] = []

    @app.after_request  # registered before init_app: runs after the extension's after_request
    def after_quota(response: Response) -> Response:
        hook_marks.append(("after", len(wire)))
        return response

    app.config["QUOTA_STORAGE_URI"] = redis_server.url
    stacked_app(app)

    @app.after_request  # registered after init_app: runs before the extension's after_request
    def before_quota(response: Response) -> Response:
        hook_marks.append(("before", len(wire)))
        return response

    state: AppState = app.extensions["quota.state"]
    assert isinstance(state.storage, RedisStorage)
    client_redis = state.storage.client
    client_redis.connection_pool.connection_class = CountingConnection
    try:
        client = app.test_client()
        # Warm up: connect (handshake commands) and load the script once.
        client.get("/api/items", headers={"X-User": "warmup"})
        per_request: list[list[tuple[str, bytes]]] = []
        statuses = []
        for _ in range(4):
            wire.clear()
            hook_marks.clear()
            statuses.append(client.get("/api/items", headers={"X-User": "42"}).status_code)
            per_request.append(list(wire))
            assert [mark for _, mark in hook_marks] == [2, 2]  # nothing in after_request
    finally:
        client_redis.close()

    assert statuses == [200, 200, 200, 429]
    for exchanges in per_request:
        assert [kind for kind, _ in exchanges] == ["send", "read"]
        assert b"EVALSHA" in exchanges[0][1]


def test_stacked_limits_cost_one_storage_call(
    app: Flask, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacked_app(app)
    state = backend.attach(app)
    calls: list[int] = []
    evaluate = state.storage.evaluate

    def counting(checks: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(checks))
        return evaluate(checks, *args, **kwargs)

    monkeypatch.setattr(state.storage, "evaluate", counting)
    client = app.test_client()

    statuses = [client.get("/api/items", headers={"X-User": "42"}).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    assert calls == [4, 4, 4, 4]
