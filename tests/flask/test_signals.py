"""Signals sent through a request, and leaky_bucket delays (recorded, never slept)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_quota import Quota
from flask_quota.signals import rate_limit_exceeded, request_delayed
from tests.flask.conftest import Backend


class Recorder:
    """A blinker receiver that keeps what each call was sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, dict[str, Any]]] = []

    def __call__(self, sender: object, **extra: Any) -> None:
        self.calls.append((sender, extra))


def test_rate_limit_exceeded_names_limit_key_and_request(app: Flask, backend: Backend) -> None:
    quota = Quota(app, strategy="fixed_window")
    app.add_url_rule("/", "index", quota.limit("1/minute", name="search")(lambda: "ok"))
    backend.attach(app)
    client = app.test_client()
    recorder = Recorder()

    with rate_limit_exceeded.connected_to(recorder, app):
        admitted = client.get("/?q=1", environ_base={"REMOTE_ADDR": "203.0.113.9"})
        refused = client.get("/?q=2", environ_base={"REMOTE_ADDR": "203.0.113.9"})

    assert (admitted.status_code, refused.status_code) == (200, 429)
    assert len(recorder.calls) == 1
    sender, extra = recorder.calls[0]
    assert sender is app
    assert set(extra) == {"limit", "key", "request"}
    assert extra["limit"].name == "search"
    assert extra["limit"].dry_run is False
    assert str(extra["limit"].limit) == "1/minute"
    assert extra["key"] == "203.0.113.9"
    assert extra["request"].args["q"] == "2"


def test_dry_run_limit_reports_what_it_would_refuse_by_signal(app: Flask, backend: Backend) -> None:
    quota = Quota(app, strategy="fixed_window")
    trial = quota.limit("1/minute", name="trial", dry_run=True)
    app.add_url_rule("/", "index", trial(lambda: "ok"))
    backend.attach(app)
    client = app.test_client()
    recorder = Recorder()

    with rate_limit_exceeded.connected_to(recorder, app):
        statuses = [
            client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code
            for _ in range(3)
        ]

    assert statuses == [200, 200, 200]
    assert [extra["limit"].name for _, extra in recorder.calls] == ["trial", "trial"]
    assert [extra["limit"].dry_run for _, extra in recorder.calls] == [True, True]
    assert [extra["key"] for _, extra in recorder.calls] == ["203.0.113.9"] * 2
    assert all(extra["request"].path == "/" for _, extra in recorder.calls)


def test_rate_limit_exceeded_is_scoped_to_its_app(app: Flask, backend: Backend) -> None:
    quota = Quota(app, strategy="fixed_window")
    app.add_url_rule("/", "index", quota.limit("1/minute")(lambda: "ok"))
    backend.attach(app)
    recorder = Recorder()

    with rate_limit_exceeded.connected_to(recorder, Flask("elsewhere")):
        client = app.test_client()
        statuses = [client.get("/").status_code for _ in range(2)]

    assert statuses == [200, 429]
    assert recorder.calls == []


def test_leaky_bucket_delays_within_max_delay_and_refuses_beyond(
    app: Flask, backend: Backend
) -> None:
    app.config["QUOTA_MAX_DELAY"] = 0.25
    quota = Quota(app, strategy="leaky_bucket")
    app.add_url_rule("/", "index", quota.limit("10/second", name="drip")(lambda: "ok"))
    backend.attach(app)
    client = app.test_client()
    delayed = Recorder()

    with request_delayed.connected_to(delayed, app):
        responses = [client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}) for _ in range(4)]

    # Emission interval 100 ms: the first passes at once, the next wait their turn; the fourth
    # would wait 300 ms, more than QUOTA_MAX_DELAY.
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert backend.sleeps == pytest.approx([0.1, 0.2])
    assert [extra["delay"] for _, extra in delayed.calls] == pytest.approx([0.1, 0.2])
    assert all(sender is app for sender, _ in delayed.calls)
    assert {extra["key"] for _, extra in delayed.calls} == {"203.0.113.9"}
    assert {extra["limit"].name for _, extra in delayed.calls} == {"drip"}
    assert responses[3].headers["Retry-After"] == "1"  # 50 ms, rounded up


def test_leaky_bucket_default_max_delay_is_one_second(app: Flask, backend: Backend) -> None:
    quota = Quota(app, strategy="leaky_bucket")
    app.add_url_rule("/", "index", quota.limit("1/second", burst=3)(lambda: "ok"))
    backend.attach(app)
    client = app.test_client()

    responses = [client.get("/") for _ in range(3)]
    backend.clock.advance(2)
    later = client.get("/")

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert later.status_code == 200
    assert backend.sleeps == pytest.approx([1.0])


def test_no_sleep_when_the_queue_is_empty(app: Flask, backend: Backend) -> None:
    quota = Quota(app, strategy="leaky_bucket")
    app.add_url_rule("/", "index", quota.limit("2/second")(lambda: "ok"))
    backend.attach(app)
    client = app.test_client()
    delayed = Recorder()

    with request_delayed.connected_to(delayed, app):
        for _ in range(3):
            assert client.get("/").status_code == 200
            backend.clock.advance(0.5)

    assert backend.sleeps == []
    assert delayed.calls == []
