"""Signals (blinker ``connected_to``) and the log lines of refusals.

Receivers are connected with ``connected_to(receiver, app)``, which holds them strongly for the
``with`` block and only for that app as sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, request

from flask_quota import StorageError, admin, signals
from flask_quota.storage import MemoryStorage
from tests._support import ManualClock
from tests.ops.conftest import (
    HASHED_KEY,
    IP1,
    IP2,
    SECRET,
    OpsApp,
    build_app,
    get,
    state_of,
    statuses,
)

USER_HEADERS = {"X-User": "7"}
KEY_HEADERS = {"X-API-Key": SECRET}


class Recorder:
    """A receiver that keeps each call's sender and keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        self.calls.append((sender, kwargs))

    @property
    def kwargs(self) -> list[dict[str, Any]]:
        return [kwargs for _, kwargs in self.calls]


@pytest.fixture
def redis_ops(make_ops_app: Callable[..., OpsApp]) -> OpsApp:
    return make_ops_app(QUOTA_ALERT_THRESHOLD=3, QUOTA_ALERT_WINDOW=300)


# -- rate_limit_exceeded ---------------------------------------------------------------------


@pytest.mark.redis
def test_rate_limit_exceeded_names_the_limit_the_identity_and_the_request(
    redis_ops: OpsApp,
) -> None:
    app = redis_ops.app
    seen = Recorder()
    paths: list[str] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen(sender, **kwargs)
        paths.append(kwargs["request"].path)

    with signals.rate_limit_exceeded.connected_to(receiver, app):
        user_statuses = statuses(app, "/user", 4, headers=USER_HEADERS)
        key_statuses = statuses(app, "/key", 5, headers=KEY_HEADERS)

    assert user_statuses == [200, 200, 200, 429]
    assert key_statuses == [200] * 4 + [429]
    assert [sender for sender, _ in seen.calls] == [app, app]
    first, second = seen.kwargs
    assert set(first) == {"limit", "key", "request"}
    assert first["limit"].name == "per-user"
    assert str(first["limit"].limit) == "3/minute"
    assert first["key"] == "user:7"
    assert second["limit"].name == "per-key"
    assert second["key"] == HASHED_KEY
    assert paths == ["/user", "/key"]
    # The request object itself, not the context-bound proxy.
    assert type(first["request"]).__name__ == "Request"


@pytest.mark.redis
def test_rate_limit_exceeded_for_a_block_has_no_limit(redis_ops: OpsApp) -> None:
    admin.block(redis_ops.app, IP1, 60)
    seen = Recorder()

    with signals.rate_limit_exceeded.connected_to(seen, redis_ops.app):
        assert get(redis_ops.app, "/", ip=IP1).status_code == 429

    assert len(seen.kwargs) == 1
    assert seen.kwargs[0]["limit"] is None
    assert seen.kwargs[0]["key"] == IP1


@pytest.mark.redis
def test_receivers_hear_only_their_own_app(make_ops_app: Callable[..., OpsApp]) -> None:
    mine, other = make_ops_app(), make_ops_app()
    seen = Recorder()

    with signals.rate_limit_exceeded.connected_to(seen, mine.app):
        statuses(other.app, "/user", 4, headers=USER_HEADERS, ip=IP2)
        statuses(mine.app, "/api/a", 6)

    assert [kwargs["limit"].name for kwargs in seen.kwargs] == ["api"]


# -- repeat_offender -------------------------------------------------------------------------


@pytest.mark.redis
def test_repeat_offender_fires_once_per_identity_per_window(redis_ops: OpsApp) -> None:
    app = redis_ops.app
    offenders = Recorder()

    with signals.repeat_offender.connected_to(offenders, app):
        user = statuses(app, "/user", 3 + 6, headers=USER_HEADERS)
        api = statuses(app, "/api/a", 5 + 2, ip=IP2)
        admin.block(app, IP2, 60)
        blocked = statuses(app, "/api/b", 4, ip=IP2)

    assert user == [200] * 3 + [429] * 6
    assert api == [200] * 5 + [429] * 2
    assert blocked == [429] * 4
    # user:7: refusals 1..6, the alert at the 3rd only. IP2: 2 refusals by the limit, then
    # blocked: its 3rd refusal (a block counts) raises it.
    assert [(sender, kwargs) for sender, kwargs in offenders.calls] == [
        (app, {"key": "user:7", "count": 3, "window": 300}),
        (app, {"key": IP2, "count": 3, "window": 300}),
    ]
    assert {o.identity: o.refusals for o in admin.top_offenders(app)} == {"user:7": 6, IP2: 6}


def test_repeat_offender_fires_again_in_the_next_window(make_ops_app: Any) -> None:
    ops = make_ops_app("memory", QUOTA_ALERT_THRESHOLD=2, QUOTA_ALERT_WINDOW=20)
    app = ops.app
    offenders = Recorder()

    with signals.repeat_offender.connected_to(offenders, app):
        assert statuses(app, "/user", 6, headers=USER_HEADERS) == [200] * 3 + [429] * 3
        ops.clock.advance(19)
        assert statuses(app, "/user", 1, headers=USER_HEADERS) == [429]
        ops.clock.advance(1)  # the alert window rolls; the per-user minute does not
        assert statuses(app, "/user", 3, headers=USER_HEADERS) == [429] * 3
        ops.clock.advance(20)
        assert statuses(app, "/user", 1, headers=USER_HEADERS) == [429]

    assert offenders.kwargs == [
        {"key": "user:7", "count": 2, "window": 20},
        {"key": "user:7", "count": 2, "window": 20},
    ]


def test_repeat_offender_is_logged_even_without_receivers(
    make_ops_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ops = make_ops_app("memory", QUOTA_ALERT_THRESHOLD=2)
    with caplog.at_level(logging.WARNING, logger="flask_quota"):
        statuses(ops.app, "/key", 7, headers=KEY_HEADERS)

    alerts = [r for r in caplog.records if "repeat offender" in r.getMessage()]
    assert [r.getMessage() for r in alerts] == [
        f"repeat offender {HASHED_KEY}: 2 refusals within 300 s"
    ]
    assert alerts[0].levelno == logging.WARNING


# -- storage_error ---------------------------------------------------------------------------


@pytest.fixture
def dead_app(key_prefix: str) -> Flask:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return build_app(
        {
            "QUOTA_STORAGE_URI": f"redis://127.0.0.1:{port}/0",
            "QUOTA_STORAGE_TIMEOUT": 0.05,
            "QUOTA_RETRY_INTERVAL": 3600,
            "QUOTA_KEY_PREFIX": key_prefix,
        }
    )


def test_storage_error_is_sent_once_per_retry_interval(dead_app: Flask) -> None:
    errors = Recorder()

    with signals.storage_error.connected_to(errors, dead_app):
        # Fail open (the default): every request passes, the outage is reported once.
        results = statuses(dead_app, "/user", 5, headers=USER_HEADERS)

    assert results == [200] * 5
    assert [sender for sender, _ in errors.calls] == [dead_app]
    assert list(errors.kwargs[0]) == ["error"]
    error = errors.kwargs[0]["error"]
    assert isinstance(error, StorageError)
    assert str(error).startswith("redis unavailable: ")


def test_storage_error_is_logged(dead_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_quota"):
        statuses(dead_app, "/", 3)

    messages = [r.getMessage() for r in caplog.records if r.name == "flask_quota"]
    assert len(messages) == 1
    assert messages[0].startswith("rate-limit storage failed (redis unavailable: ")
    assert messages[0].endswith("fail mode 'open' for 3600.0 s")


# -- nobody listening: nothing is built ------------------------------------------------------


@contextmanager
def counting_request_unwraps() -> Iterator[list[int]]:
    """Count calls of ``flask.request._get_current_object``: building the ``request=``
    argument is one, and so is every ``request.<attr>`` lookup through the proxy. The proxy
    forwards ``setattr`` to the request, so the wrapper is set on the proxy object itself."""
    calls: list[int] = []
    original = object.__getattribute__(request, "_get_current_object")

    def counted() -> Any:
        calls.append(1)
        return original()

    object.__setattr__(request, "_get_current_object", counted)
    try:
        yield calls
    finally:
        object.__setattr__(request, "_get_current_object", original)


def test_without_receivers_no_signal_arguments_are_built(
    make_ops_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = make_ops_app("memory", QUOTA_ALERT_THRESHOLD=1, QUOTA_ALERT_WINDOW=30)
    sent: list[str] = []
    for name in ("rate_limit_exceeded", "repeat_offender"):
        signal = getattr(signals, name)
        original_send = signal.send
        monkeypatch.setattr(
            signal,
            "send",
            lambda *a, _n=name, _s=original_send, **k: (sent.append(_n), _s(*a, **k))[1],
        )

    def burst() -> tuple[list[int], int]:
        """Five requests in a fresh minute and alert window: 3 admitted, 2 refused."""
        ops.clock.advance(60)
        with counting_request_unwraps() as unwraps:
            results = statuses(ops.app, "/user", 5, headers=USER_HEADERS)
        return results, len(unwraps)

    burst()  # warm up: compile the plan, first-request work
    sent.clear()
    quiet, quiet_unwraps = burst()
    quiet_sent = list(sent)
    with (
        signals.rate_limit_exceeded.connected_to(Recorder(), ops.app),
        signals.repeat_offender.connected_to(Recorder(), ops.app),
    ):
        heard, heard_unwraps = burst()

    assert quiet == heard == [200] * 3 + [429] * 2
    # Unheard: no signal was sent at all.
    assert quiet_sent == []
    # Heard: both signals sent (repeat_offender once: threshold 1), and the only extra work
    # on the request proxy is building one request= argument per rate_limit_exceeded.
    assert sent == ["rate_limit_exceeded", "repeat_offender", "rate_limit_exceeded"]
    assert heard_unwraps - quiet_unwraps == 2


# -- log lines of refusals -------------------------------------------------------------------


@pytest.mark.redis
def test_refusals_are_logged_with_identity_limit_endpoint_and_request_id(
    redis_ops: OpsApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = redis_ops.app
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="flask_quota"):
        for _ in range(5):
            client.get("/key", headers={**KEY_HEADERS, "X-Request-ID": "req-42"})
        admin.block(app, "user:7", 60)
        client.get("/user", headers={**USER_HEADERS, "X-Request-ID": "req-43"})
        for _ in range(4):
            client.get("/user", headers={"X-User": "8"})

    records = [r for r in caplog.records if r.name == "flask_quota"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, f"rate limit per-key refused {HASHED_KEY} on key (request id req-42)"),
        (logging.INFO, "blocked identity user:7 refused on user (request id req-43)"),
        (logging.INFO, "rate limit per-user refused user:8 on user (request id -)"),
    ]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_dry_run_refusals_are_logged_and_not_refused(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app({"QUOTA_KEY_PREFIX": key_prefix, "QUOTA_DRY_RUN": True})
    state_of(app).storage = MemoryStorage(ManualClock())

    with caplog.at_level(logging.INFO, logger="flask_quota"):
        results = statuses(app, "/key", 5, headers=KEY_HEADERS)

    assert results == [200] * 5
    assert [r.getMessage() for r in caplog.records if r.name == "flask_quota"] == [
        f"dry-run limit per-key would refuse {HASHED_KEY} on key"
    ]
