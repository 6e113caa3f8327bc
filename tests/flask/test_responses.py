"""What clients see: the 429 body, Retry-After, and the rate-limit headers in every style."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask

from flask_quota import Quota, RateLimitExceeded
from flask_quota.extension import AppState
from tests._support import START_US
from tests.flask.conftest import Backend

START_S = START_US // 1_000_000
BODY_FIELDS = {
    "error",
    "message",
    "limit",
    "remaining",
    "reset",
    "resetAt",
    "retryAfter",
    "policy",
}


def iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def setup(app: Flask, backend: Backend, *limits: str, **options: Any) -> AppState:
    """One view at ``/`` with ``limits`` stacked, and an unlimited one at ``/free``."""
    quota = Quota(app, strategy="fixed_window", **options)

    def index() -> str:
        return "ok"

    for limit in reversed(limits):
        index = quota.limit(limit)(index)
    app.add_url_rule("/", "index", index)
    app.add_url_rule("/free", "free", lambda: "free")
    return backend.attach(app)


# -- the refusal ---------------------------------------------------------------------------


def test_refusal_body_has_exactly_the_contract_fields(app: Flask, backend: Backend) -> None:
    setup(app, backend, "2/minute")
    client = app.test_client()

    client.get("/")
    client.get("/")
    backend.clock.advance(15)
    refused = client.get("/")

    assert refused.status_code == 429
    assert refused.mimetype == "application/json"
    body = refused.get_json()
    assert set(body) == BODY_FIELDS
    assert body["error"] == "Too Many Requests"
    assert isinstance(body["message"], str) and body["message"]
    assert (body["limit"], body["remaining"], body["reset"], body["retryAfter"]) == (2, 0, 45, 45)
    assert body["resetAt"] == iso(START_S + 60)
    assert "index" in body["policy"] and "2/minute" in body["policy"]
    assert refused.headers["Retry-After"] == "45"


def test_retry_after_is_when_the_request_would_pass_and_reset_when_whole(
    app: Flask, backend: Backend
) -> None:
    quota = Quota(app, strategy="token_bucket")
    app.add_url_rule("/", "index", quota.limit("3/minute")(lambda: "ok"))
    backend.attach(app)
    client = app.test_client()

    for _ in range(3):
        client.get("/")
    refused = client.get("/")

    body = refused.get_json()
    # One token back in 20 s; the bucket is full again in 60 s.
    assert (body["retryAfter"], body["reset"]) == (20, 60)
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["X-RateLimit-Reset"] == "60"
    assert body["resetAt"] == iso(START_S + 60)


def test_retry_after_is_sent_only_on_refusals(app: Flask, backend: Backend) -> None:
    setup(app, backend, "2/minute")
    client = app.test_client()

    responses = [client.get("/") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert ["Retry-After" in r.headers for r in responses] == [False, False, True]
    assert responses[2].headers["Retry-After"] == str(responses[2].get_json()["retryAfter"])


def test_problem_format(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_ERROR_FORMAT"] = "problem"
    setup(app, backend, "1/minute")
    client = app.test_client()

    client.get("/")
    refused = client.get("/")

    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    body = refused.get_json(force=True)
    assert set(body) == BODY_FIELDS | {"type", "title", "status", "detail"}
    assert body["status"] == 429
    assert body["title"] == "Too Many Requests"
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert (body["limit"], body["remaining"], body["retryAfter"]) == (1, 0, 60)
    assert refused.headers["Retry-After"] == "60"


def test_errorhandler_429_reshapes_the_refusal(app: Flask, backend: Backend) -> None:
    @app.errorhandler(429)
    def too_many(error: RateLimitExceeded) -> tuple[dict[str, Any], int]:
        return {"slow_down": error.retry_after, "why": error.policy}, 429

    setup(app, backend, "1/minute")
    client = app.test_client()

    client.get("/")
    refused = client.get("/")

    assert refused.status_code == 429
    assert refused.get_json()["slow_down"] == 60
    assert "index" in refused.get_json()["why"]
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_errorhandler_rate_limit_exceeded_reshapes_the_refusal(
    app: Flask, backend: Backend
) -> None:
    @app.errorhandler(RateLimitExceeded)
    def too_many(error: RateLimitExceeded) -> tuple[dict[str, Any], int, dict[str, str]]:
        body = error.body
        return (
            {"code": "rate_limited", "seconds": body["retryAfter"], "who": error.identity},
            429,
            {"Retry-After": str(body["retryAfter"])},
        )

    setup(app, backend, "1/minute")
    client = app.test_client()

    client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    refused = client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"})

    assert refused.status_code == 429
    assert refused.get_json() == {"code": "rate_limited", "seconds": 60, "who": "203.0.113.9"}
    assert refused.headers["Retry-After"] == "60"


# -- the headers ---------------------------------------------------------------------------


def test_headers_on_every_limited_response_and_only_there(app: Flask, backend: Backend) -> None:
    setup(app, backend, "2/minute")
    client = app.test_client()

    responses = [client.get("/") for _ in range(3)]
    free = client.get("/free")

    assert [r.headers["X-RateLimit-Limit"] for r in responses] == ["2", "2", "2"]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert [r.headers["X-RateLimit-Reset"] for r in responses] == ["60", "60", "60"]
    assert not any(h.startswith(("X-RateLimit", "RateLimit")) for h in free.headers.keys())


def test_headers_describe_the_limit_with_least_remaining(app: Flask, backend: Backend) -> None:
    setup(app, backend, "5/minute", "3/hour")
    client = app.test_client()

    response = client.get("/")

    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert response.headers["X-RateLimit-Reset"] == "3600"


def test_headers_on_a_tie_describe_the_longest_reset(app: Flask, backend: Backend) -> None:
    setup(app, backend, "2/minute", "2/hour", "2/10 seconds")
    client = app.test_client()

    response = client.get("/")

    assert response.headers["X-RateLimit-Remaining"] == "1"
    assert response.headers["X-RateLimit-Reset"] == "3600"


@pytest.mark.parametrize(
    ("reset_format", "expected"),
    [
        ("delta", "45"),
        ("epoch", str(START_S + 60)),
        ("iso8601", iso(START_S + 60)),
    ],
)
def test_reset_format(app: Flask, backend: Backend, reset_format: str, expected: str) -> None:
    app.config["QUOTA_RESET_FORMAT"] = reset_format
    setup(app, backend, "2/minute")
    backend.clock.advance(15)

    response = app.test_client().get("/")

    assert response.headers["X-RateLimit-Reset"] == expected


def test_ietf_headers(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_HEADERS_STYLE"] = "ietf"
    quota = Quota(app, strategy="fixed_window")
    app.add_url_rule("/", "index", quota.limit("2/10 seconds", name="search")(lambda: "ok"))
    backend.attach(app)
    client = app.test_client()

    admitted = client.get("/")
    backend.clock.advance(3)
    client.get("/")
    refused = client.get("/")

    assert admitted.headers["RateLimit-Policy"] == '"search";q=2;w=10'
    assert admitted.headers["RateLimit"] == '"search";r=1;t=10'
    assert refused.headers["RateLimit"] == '"search";r=0;t=7'
    assert "X-RateLimit-Limit" not in admitted.headers
    assert refused.headers["Retry-After"] == "7"


def test_ietf_policy_name_is_an_escaped_sf_string(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_HEADERS_STYLE"] = "ietf"
    quota = Quota(app, strategy="fixed_window")
    app.add_url_rule("/", "index", quota.limit("5/minute", name='say "hi" \\ o')(lambda: "ok"))
    backend.attach(app)

    response = app.test_client().get("/")

    assert response.headers["RateLimit-Policy"] == '"say \\"hi\\" \\\\ o";q=5;w=60'
    assert response.headers["RateLimit"] == '"say \\"hi\\" \\\\ o";r=4;t=60'


def test_both_header_styles(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_HEADERS_STYLE"] = "both"
    quota = Quota(app, strategy="fixed_window")
    app.add_url_rule("/", "index", quota.limit("3/hour", name="daily-ish")(lambda: "ok"))
    backend.attach(app)

    response = app.test_client().get("/")

    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert response.headers["X-RateLimit-Reset"] == "3600"
    assert response.headers["RateLimit-Policy"] == '"daily-ish";q=3;w=3600'
    assert response.headers["RateLimit"] == '"daily-ish";r=2;t=3600'


def test_headers_disabled(app: Flask, backend: Backend) -> None:
    app.config.update(QUOTA_HEADERS_ENABLED=False, QUOTA_HEADERS_STYLE="both")
    setup(app, backend, "1/minute")
    client = app.test_client()

    admitted = client.get("/")
    refused = client.get("/")

    for response in (admitted, refused):
        assert not any(h.startswith(("X-RateLimit", "RateLimit")) for h in response.headers.keys())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.get_json()["retryAfter"] == 60
