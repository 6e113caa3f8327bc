"""Edge cases found in review, each pinned by the test that failed before its fix."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from flask_quota import Quota, admin
from flask_quota import metrics as m
from flask_quota.storage import MemoryStorage
from tests._support import ManualClock
from tests.conftest import _free_port
from tests.flask.test_storage_failure import FakeTime


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, **config)
    return app


class RecordingMetrics:
    def __init__(self) -> None:
        self.sent: list[list[str]] = []

    def send(self, counters: Any, check_ms: float | None = None) -> None:
        self.sent.append(list(counters))

    def gauge(self, name: str, value: float) -> None:
        return None


def test_local_fail_mode_gives_concurrency_slots_back_to_the_local_storage() -> None:
    app = make_app(
        QUOTA_STORAGE_URI=f"redis://127.0.0.1:{_free_port()}/0",
        QUOTA_FAIL_MODE="local",
        QUOTA_STORAGE_TIMEOUT=0.05,
    )
    quota = Quota(app)

    @app.get("/")
    @quota.concurrent(1)
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 200]


def test_an_override_brings_back_a_limit_quota_limits_switched_off() -> None:
    app = make_app(QUOTA_LIMITS={"search": None})
    quota = Quota(app)

    @app.get("/")
    @quota.limit("100/minute", name="search")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert "X-RateLimit-Limit" not in client.get("/").headers
    admin.set_override(app, "search", "1/minute")
    assert [client.get("/").status_code for _ in range(2)] == [200, 429]


def test_near_limit_is_not_counted_for_a_refused_request() -> None:
    app = make_app(QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)

    @app.get("/")
    @quota.limit("3/minute")  # leaves 1 of 3 on the third request: near the limit
    @quota.limit("2/minute", key=lambda: "everyone")
    def index() -> str:
        return "ok"

    recorder = RecordingMetrics()
    app.extensions["quota.state"].metrics = recorder
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert recorder.sent[-1][:1] == [m.DENIED]
    assert m.NEAR_LIMIT not in recorder.sent[-1]
    assert recorder.sent[1] == [m.NEAR_LIMIT, m.ALLOWED]


def test_global_limits_with_one_period_count_apart() -> None:
    app = make_app(QUOTA_STRATEGY="fixed_window", QUOTA_GLOBAL_LIMITS=["2/minute", "5/minute"])
    Quota(app)

    @app.get("/")
    def index() -> str:
        return "ok"

    client = app.test_client()
    responses = [client.get("/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    keys = app.extensions["quota.state"].storage.keys()
    assert len([k for k in keys if ":fw:60:global" in k]) == 2


def test_an_exempt_request_never_reads_the_live_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeTime()
    monkeypatch.setattr(time, "time", fake)
    app = make_app()
    quota = Quota(app, default_limits=["10/minute"])

    @app.get("/health")
    @quota.exempt
    def health() -> str:
        return "ok"

    storage = MemoryStorage(ManualClock())
    reads: list[str] = []
    original = storage.snapshot_config

    def counted(key: str) -> tuple[dict[str, str], int]:
        reads.append(key)
        return original(key)

    storage.snapshot_config = counted  # type: ignore[method-assign]
    app.extensions["quota.state"].storage = storage
    client = app.test_client()
    for _ in range(3):
        fake.advance(5)  # idle long enough to re-read before any limited request
        assert client.get("/health").status_code == 200
    assert reads == []


def test_exempt_and_concurrent_on_class_based_view_handlers() -> None:
    from flask.views import MethodView

    app = make_app()
    quota = Quota(app, default_limits=["1/minute"])

    class Items(MethodView):
        @quota.exempt
        def get(self) -> str:
            return "list"

        @quota.concurrent(1)
        def post(self) -> str:
            return "created"

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    client = app.test_client()
    assert [client.get("/items").status_code for _ in range(3)] == [200, 200, 200]
    assert client.post("/items").status_code == 200
    assert client.post("/items").status_code == 429  # the default limit still counts POST
    keys = app.extensions["quota.state"].storage.keys()
    assert any(":cc:0:" in key for key in keys)  # the POST slot was taken (and given back)
