"""Setting the extension up: Quota(app), init_app and factories, options, start-up errors."""

from __future__ import annotations

import inspect

import pytest
from flask import Flask
from werkzeug.exceptions import TooManyRequests

from flask_quota import ConfigurationError, Quota, RateLimitExceeded, by_ip
from flask_quota.storage import MemoryStorage, RedisStorage
from tests.conftest import RedisServer
from tests.flask.conftest import Backend


def _ok() -> str:
    return "ok"


def test_quota_app_registers_itself(app: Flask) -> None:
    quota = Quota(app)

    assert app.extensions["quota"] is quota


@pytest.mark.parametrize("second", ["same", "other"])
def test_initialising_an_app_twice_fails_instead_of_counting_twice(
    app: Flask, backend: Backend, second: str
) -> None:
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit("3/minute")(_ok))
    backend.attach(app)

    with pytest.raises(RuntimeError, match="already"):
        (quota if second == "same" else Quota()).init_app(app)

    # The first set-up still works, and charges each request once.
    response = app.test_client().get("/")
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert app.extensions["quota"] is quota


def test_public_names_and_signature() -> None:
    parameters = inspect.signature(Quota).parameters

    assert list(parameters)[:7] == [
        "app",
        "default_limits",
        "global_limits",
        "key",
        "strategy",
        "storage_uri",
        "options",
    ]
    assert parameters["app"].default is None
    assert parameters["key"].default is by_ip
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD
    assert issubclass(RateLimitExceeded, TooManyRequests)
    assert issubclass(ConfigurationError, ValueError)


def test_init_app_registers_and_limits(app: Flask, backend: Backend) -> None:
    quota = Quota()
    app.add_url_rule("/", "index", quota.limit("2/minute")(_ok))
    quota.init_app(app)
    backend.attach(app)
    client = app.test_client()

    assert app.extensions["quota"] is quota
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]


def _factory(quota: Quota, config: dict[str, object]) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, **config)

    @app.route("/")
    @quota.limit("3/minute", name="index")
    def index() -> str:
        return "ok"

    @app.route("/other")
    def other() -> str:
        return "ok"

    quota.init_app(app)
    return app


def test_one_quota_serves_two_apps_without_sharing_state(backend: Backend) -> None:
    quota = Quota()
    first = _factory(
        quota,
        {
            "QUOTA_KEY_PREFIX": backend.key_prefix + "a",
            "QUOTA_DEFAULT_LIMITS": ["1/minute"],
            "QUOTA_HEADERS_STYLE": "ietf",
        },
    )
    second = _factory(
        quota,
        {
            "QUOTA_KEY_PREFIX": backend.key_prefix + "b",
            "QUOTA_DEFAULT_LIMITS": ["2/minute"],
            "QUOTA_STRATEGY": "token_bucket",
        },
    )
    backend.attach(first)
    backend.attach(second)
    one, two = first.test_client(), second.test_client()

    assert first.extensions["quota"] is quota and second.extensions["quota"] is quota
    assert first.extensions["quota.state"] is not second.extensions["quota.state"]
    # The decorated view counts in each app apart: 3 in the first do not touch the second.
    assert [one.get("/").status_code for _ in range(4)] == [200, 200, 200, 429]
    response = two.get("/")
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining"] == "2"
    # Each app keeps its own config: header style, default limits, strategy.
    assert "X-RateLimit-Limit" not in one.get("/other").headers
    assert one.get("/other").status_code == 429
    other = two.get("/other")
    assert other.headers["X-RateLimit-Limit"] == "2"
    assert other.headers["X-RateLimit-Reset"] == "30"  # token_bucket: one token per 30 s
    assert "RateLimit" not in other.headers


def test_keyword_options_override_config(app: Flask, backend: Backend) -> None:
    app.config.update(
        QUOTA_DEFAULT_LIMITS=["1/minute"],
        QUOTA_STRATEGY="fixed_window",
        QUOTA_HEADERS_STYLE="ietf",
        QUOTA_RESET_FORMAT="epoch",
    )
    quota = Quota(
        app,
        default_limits=["3/minute"],
        strategy="gcra",
        headers_style="x-ratelimit",
        reset_format="delta",
    )
    app.add_url_rule("/", "index", _ok)
    backend.attach(app)

    response = app.test_client().get("/")

    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert response.headers["X-RateLimit-Reset"] == "20"  # gcra: one cell per 20 s
    assert "RateLimit-Policy" not in response.headers
    assert app.extensions["quota"] is quota


def test_storage_uri_keyword_overrides_config(app: Flask, redis_server: RedisServer) -> None:
    app.config["QUOTA_STORAGE_URI"] = "memory://"

    Quota(app, storage_uri=redis_server.url)

    assert isinstance(app.extensions["quota.state"].storage, RedisStorage)


def test_storage_uri_defaults_to_memory(app: Flask) -> None:
    Quota(app)

    assert isinstance(app.extensions["quota.state"].storage, MemoryStorage)


@pytest.mark.parametrize("enabled", [False, "false"])
def test_quota_enabled_false_turns_every_limit_off(
    app: Flask, backend: Backend, enabled: object
) -> None:
    app.config["QUOTA_ENABLED"] = enabled
    quota = Quota(app, global_limits=["1/minute"], default_limits=["1/minute"])
    app.add_url_rule("/", "index", quota.limit("1/minute")(_ok))
    app.add_url_rule("/plain", "plain", _ok)
    backend.attach(app)
    client = app.test_client()

    responses = [client.get(path) for path in ("/", "/", "/plain", "/plain")]

    assert [r.status_code for r in responses] == [200] * 4
    assert all("X-RateLimit-Limit" not in r.headers for r in responses)
    assert backend.stored_keys(app) == []


def test_quota_enabled_from_prefixed_env(
    app: Flask, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_QUOTA_ENABLED", "false")
    app.config.from_prefixed_env()
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit("1/minute")(_ok))
    backend.attach(app)
    client = app.test_client()

    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.parametrize(
    "text", ["10/fortnight", "0/second", "", ";", "10/second;", "ten per second", "5/0 seconds"]
)
def test_invalid_limit_fails_at_decoration_naming_it(text: str) -> None:
    quota = Quota()

    with pytest.raises(ConfigurationError) as raised:
        quota.limit(text)

    assert repr(text) in str(raised.value)


def test_invalid_limit_fails_at_limit_blueprint() -> None:
    from flask import Blueprint

    quota = Quota()

    with pytest.raises(ConfigurationError, match="10/fortnight"):
        quota.limit_blueprint(Blueprint("api", __name__), "10/fortnight")


@pytest.mark.parametrize("option", ["default_limits", "global_limits"])
def test_invalid_limit_keyword_fails_at_start_up(option: str) -> None:
    with pytest.raises(ConfigurationError, match="3/fortnight"):
        Quota(**{option: ["1/second", "3/fortnight"]})


@pytest.mark.parametrize("config_key", ["QUOTA_DEFAULT_LIMITS", "QUOTA_GLOBAL_LIMITS"])
def test_invalid_limit_in_config_fails_at_init_app(app: Flask, config_key: str) -> None:
    app.config[config_key] = ["1/second", "3/fortnight"]
    quota = Quota()

    with pytest.raises(ConfigurationError) as raised:
        quota.init_app(app)

    assert "3/fortnight" in str(raised.value)
    assert config_key in str(raised.value)
    assert "quota" not in app.extensions


@pytest.mark.parametrize(
    ("config_key", "value"),
    [
        ("QUOTA_ENABLED", "maybe"),
        ("QUOTA_STORAGE_URI", "ftp://cache.example"),
        ("QUOTA_STORAGE_URI", ""),
        ("QUOTA_STORAGE_TIMEOUT", -1),
        ("QUOTA_RETRY_INTERVAL", "soon"),
        ("QUOTA_FAIL_MODE", "sometimes"),
        ("QUOTA_STRATEGY", "magic_window"),
        ("QUOTA_KEY_PREFIX", ""),
        ("QUOTA_DRY_RUN", "perhaps"),
        ("QUOTA_HEADERS_ENABLED", 2),
        ("QUOTA_HEADERS_STYLE", "x-custom"),
        ("QUOTA_RESET_FORMAT", "rfc1123"),
        ("QUOTA_ERROR_FORMAT", "xml"),
        ("QUOTA_MAX_DELAY", -0.5),
        ("QUOTA_IPV6_PREFIX", 129),
        ("QUOTA_API_KEY_HEADER", ""),
        ("QUOTA_TENANT_HEADER", None),
        ("QUOTA_DEFAULT_LIMITS", 10),
    ],
)
def test_bad_config_value_fails_at_init_app_naming_the_key(
    app: Flask, config_key: str, value: object
) -> None:
    app.config[config_key] = value
    quota = Quota()

    with pytest.raises(ConfigurationError) as raised:
        quota.init_app(app)

    assert config_key in str(raised.value)
    assert repr(value) in str(raised.value)


def test_bad_keyword_option_fails_naming_it(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="QUOTA_FAIL_MODE"):
        Quota(app, fail_mode="sometimes")
    with pytest.raises(ConfigurationError, match="fial_mode"):
        Quota(fial_mode="open")


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("strategy", "magic_window"),
        ("fail_mode", "sometimes"),
        ("cost", -1),
        ("burst", 0),
        ("key", "by_ip"),
        ("methods", "GET"),
    ],
)
def test_bad_decorator_argument_fails_at_decoration(argument: str, value: object) -> None:
    quota = Quota()

    with pytest.raises(ConfigurationError) as raised:
        quota.limit("1/second", **{argument: value})

    assert repr(value) in str(raised.value)
