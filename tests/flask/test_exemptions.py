"""Requests that no limit counts: exempt views and blueprints, request filters, static files,
OPTIONS. Each test proves the bypass charged nothing: the next counted request still has room."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Blueprint, Flask, request
from flask.testing import FlaskClient

from flask_quota import Quota
from tests.flask.conftest import Backend


def test_exempt_view_has_no_limits_at_all(app: Flask, backend: Backend) -> None:
    quota = Quota(app, global_limits=["2/minute"], default_limits=["1/minute"])

    @app.route("/health")
    @quota.exempt
    def health() -> str:
        return "ok"

    @app.route("/")
    def index() -> str:
        return "ok"

    backend.attach(app)
    client = app.test_client()

    exempt = [client.get("/health") for _ in range(5)]
    counted = client.get("/")

    assert [r.status_code for r in exempt] == [200] * 5
    assert all("X-RateLimit-Limit" not in r.headers for r in exempt)
    assert counted.status_code == 200
    assert counted.headers["X-RateLimit-Remaining"] == "0"  # the default limit, not global
    assert backend.stored_keys(app) != []


def test_exempt_applied_outside_the_route_decorator(app: Flask, backend: Backend) -> None:
    quota = Quota(app, default_limits=["1/minute"])

    @quota.exempt
    @app.route("/health")
    def health() -> str:
        return "ok"

    backend.attach(app)
    client = app.test_client()

    assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 200]


def test_exempt_blueprint_has_no_limits_at_all(app: Flask, backend: Backend) -> None:
    quota = Quota(app, global_limits=["1/minute"], default_limits=["1/minute"])
    internal = Blueprint("internal", __name__, url_prefix="/internal")

    @internal.route("/a")
    def a() -> str:
        return "ok"

    @internal.route("/b")
    @quota.limit("1/minute")
    def b() -> str:
        return "ok"

    quota.exempt_blueprint(internal)
    app.register_blueprint(internal)
    app.add_url_rule("/", "index", lambda: "ok")
    backend.attach(app)
    client = app.test_client()

    exempt = [client.get(path) for path in ("/internal/a", "/internal/b") * 3]

    assert [r.status_code for r in exempt] == [200] * 6
    assert all("X-RateLimit-Limit" not in r.headers for r in exempt)
    assert [client.get("/").status_code for _ in range(2)] == [200, 429]


def test_exempt_blueprint_registered_under_another_name(app: Flask, backend: Backend) -> None:
    quota = Quota(app, global_limits=["1/minute"])
    internal = Blueprint("internal", __name__)
    internal.add_url_rule("/ping", "ping", lambda: "pong")
    quota.exempt_blueprint(internal)
    app.register_blueprint(internal, url_prefix="/a")
    app.register_blueprint(internal, url_prefix="/b", name="internal_b")
    backend.attach(app)
    client = app.test_client()

    assert [client.get(path).status_code for path in ("/a/ping", "/b/ping") * 2] == [200] * 4


def test_request_filter_bypasses_every_limit_without_charging(app: Flask, backend: Backend) -> None:
    quota = Quota(app, global_limits=["1/minute"])

    @quota.request_filter
    def from_monitoring() -> bool:
        return request.headers.get("X-Monitoring") == "yes"

    @app.route("/")
    @quota.limit("1/minute")
    def index() -> str:
        return "ok"

    backend.attach(app)
    client = app.test_client()

    filtered = [client.get("/", headers={"X-Monitoring": "yes"}) for _ in range(4)]
    counted = [client.get("/") for _ in range(2)]

    assert [r.status_code for r in filtered] == [200] * 4
    assert all("X-RateLimit-Limit" not in r.headers for r in filtered)
    assert [r.status_code for r in counted] == [200, 429]
    assert from_monitoring.__name__ == "from_monitoring"  # the decorator returns the function


def _static(client: FlaskClient) -> tuple[int, str, str | None]:
    """Status, body and remaining of a static file; the file is closed before returning."""
    with client.get("/static/logo.txt") as response:
        return (
            response.status_code,
            response.get_data(as_text=True) if response.status_code == 200 else "",
            response.headers.get("X-RateLimit-Remaining"),
        )


@pytest.fixture
def static_app(tmp_path: Path, key_prefix: str) -> Flask:
    (tmp_path / "logo.txt").write_text("logo")
    app = Flask(__name__, static_folder=str(tmp_path), static_url_path="/static")
    app.config.update(TESTING=True, QUOTA_KEY_PREFIX=key_prefix)
    return app


def test_static_files_and_options_are_not_counted(static_app: Flask, backend: Backend) -> None:
    Quota(static_app, global_limits=["1/minute"], default_limits=["1/minute"])
    static_app.add_url_rule("/", "index", lambda: "ok")
    backend.attach(static_app)
    client = static_app.test_client()

    static = [_static(client) for _ in range(3)]
    options = [client.options("/") for _ in range(3)]
    counted = [client.get("/") for _ in range(2)]

    assert static == [(200, "logo", None)] * 3
    assert all("X-RateLimit-Limit" not in r.headers for r in options)
    assert [r.status_code for r in options] == [200] * 3
    assert [r.status_code for r in counted] == [200, 429]


def test_static_files_and_options_counted_when_configured(
    static_app: Flask, backend: Backend
) -> None:
    static_app.config.update(QUOTA_COUNT_STATIC=True, QUOTA_COUNT_OPTIONS=True)
    Quota(static_app, global_limits=["3/minute"])
    static_app.add_url_rule("/", "index", lambda: "ok")
    backend.attach(static_app)
    client = static_app.test_client()

    assert _static(client) == (200, "logo", "2")
    assert client.options("/").status_code == 200
    assert client.get("/").headers["X-RateLimit-Remaining"] == "0"
    assert _static(client)[0] == 429
