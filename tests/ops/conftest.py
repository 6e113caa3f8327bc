"""Fixtures for the operations tests: one small API with every kind of limit, on real Redis.

The API (:func:`build_app`) has a global limit, a blueprint limit, a per-user, a per-API-key and
a default per-IP limit, all ``fixed_window``. Its storage is swapped for one driven by the manual
``clock`` (which starts on a minute boundary), so counters and resets are exact: a ``/minute``
window always has 60 s left. Only the refusal counters' and blocks' TTLs run on Redis time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from flask import Blueprint, Flask, g, request
from werkzeug.test import TestResponse

from flask_quota import Quota, by_api_key, by_user
from flask_quota.extension import AppState
from flask_quota.storage import MemoryStorage
from tests._support import ClockedRedisStorage, ManualClock

IP1 = "203.0.113.9"
IP2 = "198.51.100.7"
IP3 = "192.0.2.33"
SECRET = "s3cret-partner-key"
#: ``key:`` + the first 16 hex digits of sha256(SECRET), computed here, not by the library.
HASHED_KEY = "key:sha256:" + hashlib.sha256(SECRET.encode()).hexdigest()[:16]

GLOBAL_LIMIT = "1000/minute"
API_LIMIT = "5/minute"
USER_LIMIT = "3/minute"
KEY_LIMIT = "4/minute"
DEFAULT_LIMIT = "10/minute"


class RecordingRedis(redis.Redis):
    """A client that remembers the name of every command it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]).upper())
        return super().execute_command(*args, **options)


class _User:
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def build_app(config: Mapping[str, Any]) -> Flask:
    """The operations API: new view functions, blueprint and ``Quota`` each time.

    ============  ===========================  =================================
    route         limits (in order)            key
    ============  ===========================  =================================
    every route   ``global:1000/minute``       GLOBAL
    /api/a, /b    ``api`` 5/minute             client IP, one counter for both
    /user         ``per-user`` 3/minute        ``user:<X-User header>``
    /key          ``per-key`` 4/minute         ``key:<X-API-Key>`` (stored hashed)
    /             ``index:10/minute`` default  client IP
    ============  ===========================  =================================
    """
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_STRATEGY="fixed_window", **config)

    @app.before_request
    def authenticate() -> None:
        # Before Quota's hook, so by_user finds g.user.
        user = request.headers.get("X-User")
        g.user = _User(user) if user else None

    quota = Quota(app, global_limits=[GLOBAL_LIMIT], default_limits=[DEFAULT_LIMIT])
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.get("/a")
    def a() -> str:
        return "a"

    @api.get("/b")
    def b() -> str:
        return "b"

    quota.limit_blueprint(api, API_LIMIT, name="api")

    @app.get("/user")
    @quota.limit(USER_LIMIT, key=by_user, name="per-user")
    def user() -> str:
        return "user"

    @app.get("/key")
    @quota.limit(KEY_LIMIT, key=by_api_key, name="per-key")
    def key() -> str:
        return "key"

    @app.get("/")
    def index() -> str:
        return "index"

    @app.get("/health")
    @quota.exempt
    def health() -> str:
        return "ok"

    app.register_blueprint(api)
    return app


def state_of(app: Flask) -> AppState:
    state: AppState = app.extensions["quota.state"]
    return state


def get(
    app_or_client: Any,
    path: str = "/",
    ip: str = IP1,
    headers: Mapping[str, str] | None = None,
) -> TestResponse:
    client = app_or_client.test_client() if isinstance(app_or_client, Flask) else app_or_client
    response: TestResponse = client.get(
        path, environ_base={"REMOTE_ADDR": ip}, headers=dict(headers or {})
    )
    return response


def statuses(app: Flask, path: str, times: int, **kwargs: Any) -> list[int]:
    client = app.test_client()
    return [get(client, path, **kwargs).status_code for _ in range(times)]


@dataclass
class OpsApp:
    """An app of :func:`build_app` and the Redis client its storage records commands on."""

    app: Flask
    client: RecordingRedis | None
    clock: ManualClock

    def cli(self, *args: str, input: str | None = None) -> Any:
        """``flask quota <args>`` through click's runner (stdout and stderr kept apart)."""
        return self.app.test_cli_runner().invoke(args=["quota", *args], input=input)


@pytest.fixture
def make_ops_app(
    request: pytest.FixtureRequest, clock: ManualClock, key_prefix: str
) -> Iterator[Callable[..., OpsApp]]:
    """``make_ops_app(storage="redis"|"memory", **config)``: an :class:`OpsApp` on the manual
    clock. Redis is the test server (``redis_server``); every app of a test shares its prefix."""
    clients: list[redis.Redis] = []

    def make(storage: str = "redis", **config: Any) -> OpsApp:
        config.setdefault("QUOTA_KEY_PREFIX", key_prefix)
        recording: RecordingRedis | None = None
        if storage == "redis":
            server = request.getfixturevalue("redis_server")
            config.setdefault("QUOTA_STORAGE_URI", server.url)
            app = build_app(config)
            recording = RecordingRedis.from_url(server.url)
            clients.append(recording)
            state_of(app).storage = ClockedRedisStorage(recording, clock)
        else:
            app = build_app(config)
            state_of(app).storage = MemoryStorage(clock)
        return OpsApp(app, recording, clock)

    yield make
    for client in clients:
        client.close()
