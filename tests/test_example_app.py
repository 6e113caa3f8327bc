"""The example app: its limits through Flask's test client, and once over real HTTP.

Test-client tests run on ``memory://`` with a manual clock put in place of the app's storage, so
no window boundary can fall between two requests of a test. The HTTP test is the one place
that waits for real: a client that honours ``Retry-After`` must finish its calls while the
server refuses some of them, and that needs the server's clock to move.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from werkzeug.serving import make_server

from example_app import create_app
from flask_quota.storage import MemoryStorage, RedisStorage
from tests._support import ManualClock

ACME = {"Authorization": "Bearer user-1", "X-Org-ID": "acme"}  # pro plan
GLOBEX = {"Authorization": "Bearer user-2", "X-Org-ID": "globex"}  # free plan
PARTNER_KEY = "demo-partner-key"


def make_app(config: Mapping[str, Any], clock: ManualClock) -> Flask:
    """The example app with ``config``, deciding on ``clock``."""
    app = create_app({"TESTING": True, **config})
    app.extensions["quota.state"].storage = MemoryStorage(clock=clock)
    return app


@pytest.fixture
def client(clock: ManualClock) -> FlaskClient:
    app = make_app(
        {
            "QUOTA_PLANS": {"free": "2/minute", "pro": "3/minute"},
            "QUOTA_LIMITS": {"api-user": "100/minute"},
        },
        clock,
    )
    return app.test_client()


def statuses(client: FlaskClient, path: str, headers: Mapping[str, str], n: int) -> list[int]:
    return [client.get(path, headers=dict(headers)).status_code for _ in range(n)]


# -- plans and limits ------------------------------------------------------------------------


def test_each_plan_has_its_size_and_each_organisation_its_bucket(
    client: FlaskClient, clock: ManualClock
) -> None:
    assert statuses(client, "/api/projects", GLOBEX, 3) == [200, 200, 429]
    # Globex's bucket is empty; Acme's (pro) is whole, and bigger.
    first = client.get("/api/projects", headers=ACME)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "3"
    assert first.headers["X-RateLimit-Remaining"] == "2"
    assert statuses(client, "/api/projects", ACME, 3) == [200, 200, 429]

    refused = client.get("/api/projects", headers=GLOBEX)
    assert refused.status_code == 429
    assert refused.mimetype == "application/json"
    body = refused.get_json()
    assert body["policy"] == "api:2/minute"
    assert body["limit"] == 2
    assert body["remaining"] == 0
    assert refused.headers["Retry-After"] == str(body["retryAfter"])

    # sliding_window: two windows on, the old counts have faded completely.
    clock.advance(120)
    assert statuses(client, "/api/projects", GLOBEX, 3) == [200, 200, 429]


def test_the_views_of_the_api_share_the_organisation_bucket(client: FlaskClient) -> None:
    assert client.get("/api/projects", headers=GLOBEX).status_code == 200
    assert client.get("/api/me", headers=GLOBEX).status_code == 200
    assert client.get("/api/me", headers=GLOBEX).status_code == 429
    # Another user of the same organisation draws on the same bucket.
    colleague = {**GLOBEX, "Authorization": "Bearer user-3"}
    assert client.get("/api/projects", headers=colleague).status_code == 429


def test_per_user_limit_applies_across_organisations(clock: ManualClock) -> None:
    client = make_app({"QUOTA_LIMITS": {"api-user": "2/minute"}}, clock).test_client()
    assert client.get("/api/projects", headers=ACME).status_code == 200
    assert client.get("/api/projects", headers={**ACME, "X-Org-ID": "globex"}).status_code == 200
    refused = client.get("/api/projects", headers=ACME)
    assert refused.status_code == 429
    assert refused.get_json()["policy"] == "api-user"
    # user-1 is out; user-2 of the same organisation is not.
    assert (
        client.get("/api/projects", headers={**ACME, "Authorization": "Bearer user-2"}).status_code
        == 200
    )
    assert statuses(client, "/api/me", {**ACME, "Authorization": "Bearer user-2"}, 2) == [200, 429]


def test_unauthenticated_calls_are_turned_away_before_any_limit(client: FlaskClient) -> None:
    stranger = {"X-Org-ID": "globex"}
    assert statuses(client, "/api/projects", stranger, 5) == [401] * 5
    assert client.get("/api/projects", headers={**GLOBEX, "X-Org-ID": "initech"}).status_code == 403
    # None of that spent Globex's quota.
    assert client.get("/api/projects", headers=GLOBEX).headers["X-RateLimit-Remaining"] == "1"


def test_login_is_limited_per_ip_counting_failures(client: FlaskClient, clock: ManualClock) -> None:
    def login(password: str, ip: str = "203.0.113.9") -> int:
        response = client.post(
            "/login",
            json={"user": "7", "password": password},
            environ_base={"REMOTE_ADDR": ip},
        )
        return response.status_code

    assert [login("wrong") for _ in range(4)] == [401] * 4
    assert login("letmein") == 200
    assert login("letmein") == 429
    assert login("letmein", ip="198.51.100.4") == 200
    # sliding_log: each entry leaves exactly one minute after it was made.
    clock.advance(60)
    assert login("letmein") == 200


def test_login_token_authenticates_the_api(client: FlaskClient) -> None:
    token = client.post("/login", json={"user": "42", "password": "letmein"}).get_json()["token"]
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}", "X-Org-ID": "acme"})
    assert me.get_json() == {"user": "42", "organisation": "acme", "plan": "pro"}


def test_partner_keys_have_a_bucket_each(clock: ManualClock) -> None:
    client = make_app({"QUOTA_LIMITS": {"partner": "2/minute"}}, clock).test_client()
    path = "/partner/v1/catalogue"
    assert statuses(client, path, {"X-API-Key": PARTNER_KEY}, 3) == [200, 200, 429]
    assert statuses(client, path, {"X-API-Key": "second-partner-key"}, 1) == [200]
    assert statuses(client, path, {"X-API-Key": "guess"}, 3) == [401] * 3
    refused = client.get(path, headers={"X-API-Key": PARTNER_KEY})
    assert refused.get_json()["policy"] == "partner"


def test_global_limit_counts_every_client_together(clock: ManualClock) -> None:
    client = make_app({"QUOTA_GLOBAL_LIMITS": "3/minute"}, clock).test_client()
    codes = [
        client.get("/", environ_base={"REMOTE_ADDR": f"192.0.2.{n}"}).status_code for n in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    refused = client.get("/api/projects", headers=ACME)
    assert refused.status_code == 429
    assert refused.get_json()["policy"] == "global:3/minute"


def test_health_and_metrics_are_exempt(clock: ManualClock) -> None:
    client = make_app({"QUOTA_GLOBAL_LIMITS": "1/minute"}, clock).test_client()
    for _ in range(5):
        health = client.get("/health")
        assert health.status_code == 200
        assert "X-RateLimit-Limit" not in health.headers
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 429
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.get_json() == {
        "responses": 7,
        "by_status": {"200": 6, "429": 1},
        "rate_limited": 1,
        "rate_limited_by_policy": {"global:1/minute": 1},
    }


# -- request id and errors -------------------------------------------------------------------


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    # Not a sane token: replaced rather than echoed.
    odd = client.get("/health", headers={"X-Request-ID": "a b"})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-ID"])


def test_refusals_and_errors_carry_the_request_id(client: FlaskClient) -> None:
    headers = {**GLOBEX, "X-Request-ID": "req-7"}
    responses = [client.get("/api/projects", headers=headers) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert all(r.headers["X-Request-ID"] == "req-7" for r in responses)
    missing = client.get("/nowhere", headers={"X-Request-ID": "req-8"})
    assert missing.headers["X-Request-ID"] == "req-8"
    assert missing.get_json()["requestId"] == "req-8"


def test_errors_are_json(client: FlaskClient) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.mimetype == "application/json"
    assert missing.get_json()["error"] == "Not Found"

    wrong_method = client.delete("/login")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"] == "Method Not Allowed"
    assert set(wrong_method.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}

    unauthorised = client.get("/api/me", headers={"X-Org-ID": "acme"})
    assert unauthorised.status_code == 401
    assert unauthorised.get_json()["status"] == 401


def test_server_errors_are_json(clock: ManualClock) -> None:
    app = make_app({"TESTING": False}, clock)

    def broken() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/broken", view_func=broken)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "Internal Server Error"
    assert "boom" not in response.get_data(as_text=True)


# -- configuration ---------------------------------------------------------------------------


def test_environment_configures_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_QUOTA_PLANS", json.dumps({"free": "7/hour", "pro": "9/hour"}))
    monkeypatch.setenv("FLASK_QUOTA_HEADERS_STYLE", "ietf")
    client = create_app({"TESTING": True}).test_client()
    response = client.get("/api/projects", headers=GLOBEX)
    assert response.headers["RateLimit-Policy"] == '"api:7/hour";q=7;w=3600'
    assert response.headers["RateLimit"].startswith('"api:7/hour";r=6;t=')


@pytest.mark.redis
def test_runs_on_redis_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_server: Any, key_prefix: str
) -> None:
    monkeypatch.setenv("FLASK_QUOTA_STORAGE_URI", redis_server.url)
    monkeypatch.setenv("FLASK_QUOTA_KEY_PREFIX", key_prefix)
    # gcra has no calendar windows, so a boundary cannot fall between these requests.
    app = create_app(
        {
            "TESTING": True,
            "QUOTA_STRATEGY": "gcra",
            "QUOTA_PLANS": {"free": "2/day", "pro": "3/day"},
        }
    )
    assert isinstance(app.extensions["quota.state"].storage, RedisStorage)
    client = app.test_client()
    assert statuses(client, "/api/projects", GLOBEX, 3) == [200, 200, 429]
    assert statuses(client, "/api/projects", ACME, 4) == [200, 200, 200, 429]
    stored = redis.Redis.from_url(redis_server.url)
    try:
        keys = sorted(k.decode() for k in stored.scan_iter(match=f"{key_prefix}:*"))
    finally:
        stored.close()
    assert any(key.endswith(":api:gc:86400:tenant:globex") for key in keys)
    assert any(key.endswith(":api:gc:86400:tenant:acme") for key in keys)


# -- over real HTTP --------------------------------------------------------------------------


@pytest.fixture
def live_server() -> Iterator[str]:
    """The example app on a free local port; sliding_log so that refusals are exact."""
    app = create_app({"QUOTA_STRATEGY": "sliding_log", "QUOTA_LIMITS": {"partner": "2/second"}})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_client_honouring_retry_after_completes_its_calls(live_server: str) -> None:
    retry = Retry(
        total=3,
        status_forcelist=[429],
        respect_retry_after_header=True,
        allowed_methods=frozenset({"GET", "POST"}),
        backoff_factor=0,
    )
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.headers["X-API-Key"] = PARTNER_KEY
        # 2/second: the third call is refused, waits its Retry-After (1 s) and goes through;
        # by then the first two have left the log, so the fourth goes through at once.
        responses = [session.get(f"{live_server}/partner/v1/catalogue") for _ in range(4)]
        counted = session.get(f"{live_server}/metrics").json()

    assert [r.status_code for r in responses] == [200] * 4
    retried = [h.status for r in responses for h in r.raw.retries.history]
    assert retried == [429]
    assert counted["rate_limited"] == 1
    assert counted["rate_limited_by_policy"] == {"partner": 1}
