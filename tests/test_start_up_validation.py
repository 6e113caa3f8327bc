"""Bad declarations and options fail at start-up with ConfigurationError naming what is wrong,
never later as a 500: numbers too large for the script's 64-bit wire format and exact doubles,
durations that overflow a socket timeout or an expiry, and values of the wrong type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_quota import ConfigurationError, Quota
from flask_quota.limits import MAX_COUNT, MAX_PERIOD_S

DECLARATIONS: dict[str, tuple[Callable[[Quota], object], str]] = {
    "cost above the largest count": (
        lambda q: q.limit("10/hour", cost=MAX_COUNT + 1),
        "invalid cost",
    ),
    "burst above the largest count": (
        lambda q: q.limit("10/hour", strategy="token_bucket", burst=10**30),
        "invalid burst",
    ),
    "concurrency above the largest count": (
        lambda q: q.concurrent(MAX_COUNT + 1),
        "invalid concurrency",
    ),
    "lease beyond the longest period": (
        lambda q: q.concurrent(2, lease=MAX_PERIOD_S + 1),
        "invalid lease",
    ),
    "infinite lease": (lambda q: q.concurrent(2, lease=float("inf")), "invalid lease"),
    "dry_run as a string": (lambda q: q.limit("1/hour", dry_run="false"), "invalid dry_run"),
    "methods as a number": (lambda q: q.limit("1/hour", methods=5), "invalid methods"),
    "methods empty": (lambda q: q.limit("1/hour", methods=[]), "invalid methods"),
    "methods as one string": (lambda q: q.limit("1/hour", methods="GET"), "invalid methods"),
    "plan by a string": (lambda q: q.plan(by="free"), "invalid plan"),
    "request filter not callable": (lambda q: q.request_filter(5), "invalid request_filter"),
}


@pytest.mark.parametrize("case", DECLARATIONS)
def test_a_bad_declaration_fails_when_made(case: str) -> None:
    declare, message = DECLARATIONS[case]
    with pytest.raises(ConfigurationError, match=message):
        declare(Quota(Flask(__name__)))


@pytest.mark.parametrize("value", [5, {"a": "1/hour"}, None])
def test_default_limits_of_the_wrong_type_fail_in_the_constructor(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="invalid default_limits"):
        Quota(default_limits=value)


@pytest.mark.parametrize("storage", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_the_largest_numbers_are_served(
    storage: str, request: pytest.FixtureRequest, key_prefix: str
) -> None:
    app = Flask(__name__)
    if storage == "redis":
        app.config["QUOTA_STORAGE_URI"] = request.getfixturevalue("redis_server").url
        app.config["QUOTA_KEY_PREFIX"] = key_prefix
    quota = Quota(app)

    @app.get("/")
    @quota.limit("10/hour", cost=MAX_COUNT)  # above the capacity: never admitted
    @quota.concurrent(MAX_COUNT, lease=MAX_PERIOD_S)
    def index() -> str:
        return "ok"

    response = app.test_client().get("/")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3600"


OPTIONS: dict[str, object] = {
    "QUOTA_STORAGE_TIMEOUT": 1e308,
    "QUOTA_RETRY_INTERVAL": MAX_PERIOD_S + 1,
    "QUOTA_MAX_DELAY": 1e300,
    "QUOTA_BLOCK_DURATION": 10**30,
    "QUOTA_ALERT_WINDOW": 10**13,
    "QUOTA_ALERT_THRESHOLD": MAX_COUNT + 1,
    "QUOTA_STATSD_PORT": 65536,
    "QUOTA_DEFAULT_LIMITS": "",
    "QUOTA_GLOBAL_LIMITS": "  ",
}


@pytest.mark.parametrize("key", OPTIONS)
def test_an_option_out_of_range_fails_at_init_naming_it(key: str) -> None:
    app = Flask(__name__)
    app.config[key] = OPTIONS[key]
    with pytest.raises(ConfigurationError, match=f"invalid {key} "):
        Quota(app)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "2001:db8::/129", "10.0.0.0 /8", "1.2.3", "  "])
def test_a_malformed_whitelist_entry_fails_at_init(entry: str) -> None:
    app = Flask(__name__)
    app.config["QUOTA_WHITELIST"] = [entry]
    with pytest.raises(ConfigurationError, match="invalid QUOTA_WHITELIST"):
        Quota(app)


def test_whitelist_entries_are_stripped_and_names_that_look_like_words_kept() -> None:
    app = Flask(__name__)
    app.config["QUOTA_WHITELIST"] = [" 10.0.0.0/8 ", "cafe:babe", "42", "a.b"]
    Quota(app)
    settings = app.extensions["quota.state"].settings
    assert [str(n) for n in settings.whitelist_networks] == ["10.0.0.0/8"]
    assert settings.whitelist_identities == frozenset({"cafe:babe", "42", "a.b"})


def test_a_storage_uri_the_storage_refuses_is_named_with_its_password_masked() -> None:
    app = Flask(__name__)
    app.config["QUOTA_STORAGE_URI"] = "redis://:s3cret@127.0.0.1:1/0?decode_responses=true"
    with pytest.raises(ConfigurationError) as caught:
        Quota(app)
    message = str(caught.value)
    assert "invalid QUOTA_STORAGE_URI 'redis://:***@127.0.0.1:1/0?decode_responses=true'" in message
    assert "decode_responses=False" in message
    assert "s3cret" not in message


def test_names_of_choices_are_taken_in_any_case() -> None:
    app = Flask(__name__)
    quota = Quota(app, strategy="FIXED_WINDOW", fail_mode="OPEN")

    @app.get("/")
    @quota.limit("1/hour", strategy="Token_Bucket", fail_mode="CLOSED")
    @quota.concurrent(1, fail_mode="Local")
    def index() -> str:
        return "ok"

    assert [app.test_client().get("/").status_code for _ in range(2)] == [200, 429]


def test_a_unit_is_quoted_as_written() -> None:
    with pytest.raises(ConfigurationError, match="got 'secs'"):
        Quota().limit("10/secs")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("redis://127.0.0.1:1/cache", "the path '/cache' must be a database number"),
        ("unix://", "expected unix:///path"),
    ],
)
def test_a_storage_uri_redis_py_would_misread_fails_at_init(uri: str, message: str) -> None:
    app = Flask(__name__)
    app.config["QUOTA_STORAGE_URI"] = uri
    with pytest.raises(ConfigurationError, match=f"invalid QUOTA_STORAGE_URI '{uri}': {message}"):
        Quota(app)
