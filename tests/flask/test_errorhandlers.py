"""A refusal nothing would reshape is answered from the hook; one something would is raised.

``RecordingFlask`` notes every exception Flask's ``handle_user_exception`` is given: the fast
path never gets there, the raised path always does. A *pass-through* handler (it returns the
exception unchanged) takes Flask's own way of rendering an unhandled ``HTTPException``, so an
app with one is the raised path the fast path must equal byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.test import TestResponse

from flask_quota import Quota, RateLimitExceeded, admin
from flask_quota.storage import MemoryStorage
from tests._support import ManualClock

IP = "203.0.113.9"


class RecordingFlask(Flask):
    """A Flask app that remembers the exceptions it was asked to handle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: list[Exception] = []

    def handle_user_exception(self, e: Exception) -> HTTPException | ResponseReturnValue:
        self.handled.append(e)
        return super().handle_user_exception(e)


Handler = Callable[[Any], Any]
#: Where a handler goes ("app" or a blueprint's name), what it is for, and the handler.
Registration = tuple[str, type[Exception] | int, Handler]


def make_app(
    key_prefix: str,
    clock: ManualClock,
    *,
    handlers: Sequence[Registration] = (),
    **config: Any,
) -> RecordingFlask:
    """Every view limited to 1/minute per IP by default: ``/``, ``/bp/`` and ``/other/`` in
    blueprints of their own, ``/outer/inner/`` in blueprint ``inner`` nested in ``outer``;
    memory storage on the manual clock. ``handlers`` are registered before the blueprints."""
    app = RecordingFlask(__name__)
    app.config.update(TESTING=True, QUOTA_KEY_PREFIX=key_prefix, **config)
    Quota(app, strategy="fixed_window", default_limits=["1/minute"])
    app.add_url_rule("/", "index", lambda: "ok")
    blueprints = {
        name: Blueprint(name, __name__, url_prefix=f"/{name}")
        for name in ("bp", "other", "outer", "inner")
    }
    for name in ("bp", "other", "inner"):
        blueprints[name].add_url_rule("/", "view", lambda: "ok")
    for where, key, handler in handlers:
        target = app if where == "app" else blueprints[where]
        target.register_error_handler(key, handler)
    blueprints["outer"].register_blueprint(blueprints["inner"])
    for name in ("bp", "other", "outer"):
        app.register_blueprint(blueprints[name])
    app.extensions["quota.state"].storage = MemoryStorage(clock)
    return app


def refused(app: Flask, path: str = "/") -> TestResponse:
    """The second request of one client within the minute: the 429."""
    client = app.test_client()
    first = client.get(path, environ_base={"REMOTE_ADDR": IP})
    assert first.status_code == 200
    return client.get(path, environ_base={"REMOTE_ADDR": IP})


def blocked(app: Flask, path: str = "/") -> TestResponse:
    """A request of a client an operator blocked for 30 s: the 429 of the block."""
    admin.block(app, IP, 30)
    return app.test_client().get(path, environ_base={"REMOTE_ADDR": IP})


def pass_through(error: RateLimitExceeded) -> RateLimitExceeded:
    """Hands the exception back: Flask renders it as it would with no handler at all."""
    return error


#: The raised path, rendered the way Flask renders an HTTPException nothing handles.
RAISED: list[Registration] = [("app", RateLimitExceeded, pass_through)]


def wire(response: TestResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    """What goes out: the status line, every header in order, the body."""
    return response.status, response.headers.to_wsgi_list(), response.get_data()


# -- the fast path equals the raised one ---------------------------------------------------


@pytest.mark.parametrize("error_format", ["json", "problem"])
@pytest.mark.parametrize(
    ("style", "rate_limit_headers"),
    [
        ("x-ratelimit", ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]),
        ("ietf", ["RateLimit-Policy", "RateLimit"]),
        (
            "both",
            [
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "RateLimit-Policy",
                "RateLimit",
            ],
        ),
    ],
)
def test_an_unhandled_refusal_is_answered_unraised_and_byte_identical(
    key_prefix: str,
    clock: ManualClock,
    error_format: str,
    style: str,
    rate_limit_headers: list[str],
) -> None:
    config: dict[str, Any] = {"QUOTA_ERROR_FORMAT": error_format, "QUOTA_HEADERS_STYLE": style}
    fast = make_app(key_prefix, clock, **config)
    raised = make_app(f"{key_prefix}r", clock, handlers=RAISED, **config)
    clock.advance(15)

    fast_response = refused(fast)
    raised_response = refused(raised)

    assert fast.handled == []
    assert [type(e) for e in raised.handled] == [RateLimitExceeded]
    assert wire(fast_response) == wire(raised_response)
    status, headers, body = wire(fast_response)
    assert status == "429 TOO MANY REQUESTS"
    mimetype = "application/problem+json" if error_format == "problem" else "application/json"
    assert [name for name, _ in headers] == [
        "Content-Type",
        "Content-Length",
        "Retry-After",
        *rate_limit_headers,
    ]
    assert fast_response.headers["Content-Type"] == mimetype
    assert fast_response.headers["Retry-After"] == "45"
    assert fast_response.headers["Content-Length"] == str(len(body))
    assert fast_response.get_json(force=True)["retryAfter"] == 45


def test_a_head_refusal_is_byte_identical(key_prefix: str, clock: ManualClock) -> None:
    fast = make_app(key_prefix, clock)
    raised = make_app(f"{key_prefix}r", clock, handlers=RAISED)

    responses = []
    for app in (fast, raised):
        client = app.test_client()
        client.head("/", environ_base={"REMOTE_ADDR": IP})
        responses.append(client.head("/", environ_base={"REMOTE_ADDR": IP}))

    assert fast.handled == [] and len(raised.handled) == 1
    assert wire(responses[0]) == wire(responses[1])
    assert responses[0].status_code == 429 and responses[0].get_data() == b""


def test_a_block_refusal_takes_the_fast_path_too(key_prefix: str, clock: ManualClock) -> None:
    fast = make_app(key_prefix, clock)
    raised = make_app(f"{key_prefix}r", clock, handlers=RAISED)

    fast_response = blocked(fast)
    raised_response = blocked(raised)

    assert fast.handled == []
    assert [e.policy for e in raised.handled if isinstance(e, RateLimitExceeded)] == ["blocked"]
    assert wire(fast_response) == wire(raised_response)
    assert fast_response.status_code == 429
    assert fast_response.headers["Retry-After"] == "30"
    assert fast_response.headers["X-RateLimit-Remaining"] == "0"
    assert fast_response.get_json()["policy"] == "blocked"


def test_a_handler_of_another_blueprint_does_not_apply(key_prefix: str, clock: ManualClock) -> None:
    app = make_app(key_prefix, clock, handlers=[("other", 429, pass_through)])

    response = refused(app, "/bp/")

    assert app.handled == []
    assert response.status_code == 429
    assert response.get_json()["retryAfter"] == 60


def test_the_lookup_adds_no_entry_to_the_handler_registry(
    key_prefix: str, clock: ManualClock
) -> None:
    app = make_app(key_prefix, clock, handlers=[("other", 429, pass_through)])
    before = {name: dict(by_code) for name, by_code in app.error_handler_spec.items()}

    refused(app, "/outer/inner/")

    assert app.handled == []
    assert {name: dict(by_code) for name, by_code in app.error_handler_spec.items()} == before


# -- whatever would reshape the refusal still gets it ----------------------------------------


@pytest.mark.parametrize(
    ("where", "key", "path"),
    [
        ("app", 429, "/"),
        ("app", RateLimitExceeded, "/"),
        ("app", HTTPException, "/"),
        ("app", Exception, "/"),
        ("app", 429, "/bp/"),
        ("bp", 429, "/bp/"),
        ("bp", RateLimitExceeded, "/bp/"),
        ("outer", 429, "/outer/inner/"),
        ("inner", Exception, "/outer/inner/"),
    ],
)
def test_an_error_handler_still_shapes_the_refusal(
    key_prefix: str,
    clock: ManualClock,
    where: str,
    key: type[Exception] | int,
    path: str,
) -> None:
    received: list[Exception] = []

    def shape(error: Exception) -> tuple[dict[str, Any], int]:
        received.append(error)
        return {"shaped": where}, 429

    app = make_app(key_prefix, clock, handlers=[(where, key, shape)])

    response = refused(app, path)

    assert response.status_code == 429
    assert response.get_json() == {"shaped": where}
    assert response.headers["X-RateLimit-Remaining"] == "0"
    [error] = received
    assert isinstance(error, RateLimitExceeded)
    assert error.identity == IP
    assert error.retry_after == 60
    assert error.body["retryAfter"] == 60
    assert "1/minute" in error.policy


def test_an_error_handler_shapes_a_block_refusal(key_prefix: str, clock: ManualClock) -> None:
    app = make_app(key_prefix, clock)
    received: list[RateLimitExceeded] = []

    @app.errorhandler(RateLimitExceeded)
    def shape(error: RateLimitExceeded) -> tuple[str, int]:
        received.append(error)
        return "blocked, go away", 429

    response = blocked(app)

    assert response.get_data(as_text=True) == "blocked, go away"
    assert [(e.policy, e.identity, e.retry_after) for e in received] == [("blocked", IP, 30)]


def test_trapped_http_exceptions_propagate_as_before(key_prefix: str, clock: ManualClock) -> None:
    app = make_app(key_prefix, clock, TRAP_HTTP_EXCEPTIONS=True)

    with pytest.raises(RateLimitExceeded) as raised:
        refused(app)

    assert raised.value.code == 429
    assert raised.value.identity == IP
    assert raised.value.body["retryAfter"] == 60
    assert app.handled == [raised.value]
