"""Robustness audit: bad input and failure, as the project's standards put it.

    Bad input gets a clear error, never a crash or silent misbehaviour: an invalid limit string
    fails at start-up naming the string; a Redis outage follows the configured fail mode; a
    hostile key (huge, binary, with ``{}`` or ``:``) cannot collide with or steer another key;
    the CLI exits non-zero with one clear line, never a traceback.

Black-box: ``flask_quota``'s exports, ``QUOTA_*`` config keys, Flask's test client and
``app.test_cli_runner()``. Two seams are borrowed from the suite, as its own tests use them: the
``backend`` fixture (tests/flask/conftest.py) that runs a test on ``memory://`` and on the test
Redis with a manual clock, and closing an app's Redis client at the end of a test (the suite
turns unclosed-socket warnings into errors). Outages are real: a port where nothing listens, a
socket that accepts and never answers, and a redis-server this file starts, stops and restarts.
Nothing sleeps to wait for a window. Whether a request waited on a hung server is seen from the
connections that server counts; durations get only generous upper bounds, which a hang breaks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, request

from flask_quota import ConfigurationError, Quota, by_api_key
from flask_quota.storage import RedisStorage
from tests._support import ManualClock
from tests.conftest import HungRedis, RedisProcess, _free_port
from tests.flask.conftest import Backend


def _close(app: Flask) -> None:
    storage = app.extensions["quota.state"].storage
    if isinstance(storage, RedisStorage):
        storage.client.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest, clock: ManualClock, key_prefix: str) -> Backend:
    """tests/flask/conftest.py's ``backend``: memory:// and the test Redis, on a manual clock."""
    client = None
    if getattr(request, "param", "memory") == "redis":
        client = request.getfixturevalue("redis_client")
    return Backend(getattr(request, "param", "memory"), clock, key_prefix, client)


BACKENDS = pytest.mark.parametrize(
    "backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps whose Redis clients are closed at the end of the test."""
    made: list[Flask] = []
    yield made
    for app in made:
        _close(app)


@pytest.fixture
def dead_uri() -> str:
    return f"redis://127.0.0.1:{_free_port()}/0"


def cli(app: Flask, *args: str, input: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=["quota", *args], input=input)


def assert_one_line_error(result: Any, code: int) -> str:
    """The CLI failed with ``code``, one ``Error: ...`` line on stderr, nothing on stdout and
    no exception escaping click (the runner's stand-in for a traceback)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


# == 1. Configuration keys ===================================================================

BAD_CONFIG: list[tuple[str, Any]] = [
    ("QUOTA_ENABLED", "maybe"),
    ("QUOTA_ENABLED", 2),
    ("QUOTA_ENABLED", None),
    ("QUOTA_STORAGE_URI", "mongodb://db:27017"),
    ("QUOTA_STORAGE_URI", "http://cache"),
    ("QUOTA_STORAGE_URI", ""),
    ("QUOTA_STORAGE_URI", None),
    ("QUOTA_STORAGE_URI", "REDIS://127.0.0.1:1/0"),
    ("QUOTA_STORAGE_URI", "redis://127.0.0.1:notaport/0"),
    ("QUOTA_STORAGE_URI", "redis://127.0.0.1:99999/0"),
    ("QUOTA_STORAGE_URI", "redis://127.0.0.1:1/0?socket_timeout=abc"),
    ("QUOTA_STORAGE_URI", "redis+sentinel://"),
    ("QUOTA_STORAGE_URI", "redis+sentinel://h:1"),
    ("QUOTA_STORAGE_URI", "redis+sentinel://h:x/svc"),
    ("QUOTA_STORAGE_TIMEOUT", 0),
    ("QUOTA_STORAGE_TIMEOUT", -1),
    ("QUOTA_STORAGE_TIMEOUT", "abc"),
    ("QUOTA_STORAGE_TIMEOUT", math.nan),
    ("QUOTA_STORAGE_TIMEOUT", math.inf),
    ("QUOTA_STORAGE_TIMEOUT", True),
    ("QUOTA_RETRY_INTERVAL", -1),
    ("QUOTA_RETRY_INTERVAL", "soon"),
    ("QUOTA_RETRY_INTERVAL", math.nan),
    ("QUOTA_RETRY_INTERVAL", math.inf),
    ("QUOTA_FAIL_MODE", "maybe"),
    ("QUOTA_FAIL_MODE", " closed"),
    ("QUOTA_FAIL_MODE", 1),
    ("QUOTA_STRATEGY", "nope"),
    ("QUOTA_STRATEGY", "concurrent"),
    ("QUOTA_STRATEGY", 3),
    ("QUOTA_KEY_PREFIX", ""),
    ("QUOTA_KEY_PREFIX", None),
    ("QUOTA_KEY_PREFIX", b"bytes"),
    ("QUOTA_DEFAULT_LIMITS", "garbage"),
    ("QUOTA_DEFAULT_LIMITS", 5),
    ("QUOTA_DEFAULT_LIMITS", None),
    ("QUOTA_DEFAULT_LIMITS", [""]),
    ("QUOTA_DEFAULT_LIMITS", ["1/second", 5]),
    ("QUOTA_DEFAULT_LIMITS", {"a": 1}),
    ("QUOTA_GLOBAL_LIMITS", "10/second;"),
    ("QUOTA_GLOBAL_LIMITS", b"1/second"),
    ("QUOTA_DRY_RUN", "maybe"),
    ("QUOTA_HEADERS_ENABLED", "perhaps"),
    ("QUOTA_HEADERS_STYLE", "draft"),
    ("QUOTA_HEADERS_STYLE", None),
    ("QUOTA_RESET_FORMAT", "unix"),
    ("QUOTA_RESET_FORMAT", 0),
    ("QUOTA_ERROR_FORMAT", "xml"),
    ("QUOTA_ERROR_FORMAT", None),
    ("QUOTA_MAX_DELAY", -1),
    ("QUOTA_MAX_DELAY", "x"),
    ("QUOTA_MAX_DELAY", math.nan),
    ("QUOTA_MAX_DELAY", math.inf),
    ("QUOTA_IPV6_PREFIX", -1),
    ("QUOTA_IPV6_PREFIX", 129),
    ("QUOTA_IPV6_PREFIX", 64.5),
    ("QUOTA_IPV6_PREFIX", "abc"),
    ("QUOTA_IPV6_PREFIX", True),
    ("QUOTA_API_KEY_HEADER", ""),
    ("QUOTA_API_KEY_HEADER", None),
    ("QUOTA_TENANT_HEADER", ""),
    ("QUOTA_WHITELIST", 5),
    ("QUOTA_WHITELIST", None),
    ("QUOTA_WHITELIST", [5]),
    ("QUOTA_WHITELIST", [""]),
    ("QUOTA_WHITELIST", [None]),
    ("QUOTA_WHITELIST", {"user:1": True}),
    ("QUOTA_BLOCK_DURATION", 0),
    ("QUOTA_BLOCK_DURATION", -5),
    ("QUOTA_BLOCK_DURATION", 1.5),
    ("QUOTA_BLOCK_DURATION", "x"),
    ("QUOTA_COUNT_STATIC", "x"),
    ("QUOTA_COUNT_OPTIONS", "x"),
    ("QUOTA_ALERT_THRESHOLD", 0),
    ("QUOTA_ALERT_THRESHOLD", -1),
    ("QUOTA_ALERT_THRESHOLD", 1.5),
    ("QUOTA_ALERT_WINDOW", 0),
    ("QUOTA_ALERT_WINDOW", 2.5),
    ("QUOTA_STATSD_HOST", ""),
    ("QUOTA_STATSD_HOST", "no such host.invalid"),
    ("QUOTA_STATSD_PORT", 0),
    ("QUOTA_STATSD_PORT", -1),
    ("QUOTA_STATSD_PORT", "x"),
    ("QUOTA_STATSD_PREFIX", ""),
    ("QUOTA_STATSD_PREFIX", None),
    ("QUOTA_LIMITS", "x"),
    ("QUOTA_LIMITS", None),
    ("QUOTA_LIMITS", ["a"]),
    ("QUOTA_LIMITS", {"a": 5}),
    ("QUOTA_LIMITS", {5: "1/second"}),
    ("QUOTA_PLANS", "x"),
    ("QUOTA_PLANS", {"free": 5}),
    ("QUOTA_PLANS", {"free": ["1/second"]}),
    ("QUOTA_ADAPTIVE", 5),
    ("QUOTA_ADAPTIVE", "foo"),
    ("QUOTA_ADAPTIVE", "in_flight:a:b"),
    ("QUOTA_ADAPTIVE", "in_flight:10:5"),
    ("QUOTA_ADAPTIVE", "in_flight:-1:2"),
    ("QUOTA_ADAPTIVE", "in_flight:1:2:0"),
    ("QUOTA_ADAPTIVE", "in_flight:1:2:2"),
    ("QUOTA_ADAPTIVE", "in_flight:1:2:nan"),
]


def _names_value(message: str, value: Any) -> bool:
    """The message quotes the value, or a list's offending (last) element, as its ``repr``."""
    return repr(value) in message or (isinstance(value, list) and repr(value[-1]) in message)


@pytest.mark.parametrize(("key", "value"), BAD_CONFIG)
def test_a_bad_config_value_fails_at_init_naming_key_and_value(key: str, value: Any) -> None:
    app = Flask(__name__)
    app.config[key] = value
    quota = Quota()

    with pytest.raises(ConfigurationError) as caught:
        quota.init_app(app)

    assert key in str(caught.value)
    assert _names_value(str(caught.value), value), str(caught.value)
    assert "quota" not in app.extensions  # nothing half-registered


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("QUOTA_LIMITS", {"search": "garbage"}, "QUOTA_LIMITS['search']"),
        ("QUOTA_LIMITS", {"search": ""}, "QUOTA_LIMITS['search']"),
        ("QUOTA_LIMITS", {"search": "0/second"}, "QUOTA_LIMITS['search']"),
        ("QUOTA_PLANS", {"free": "garbage"}, "QUOTA_PLANS['free']"),
        ("QUOTA_PLANS", {"free": "10/second;"}, "QUOTA_PLANS['free']"),
    ],
)
def test_a_bad_limit_string_in_a_mapping_names_the_entry(
    key: str, value: dict[str, str], named: str
) -> None:
    app = Flask(__name__)
    app.config[key] = value

    with pytest.raises(ConfigurationError) as caught:
        Quota(app)

    assert named in str(caught.value)
    assert repr(next(iter(value.values()))) in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value", "key"),
    [
        ("fail_mode", "maybe", "QUOTA_FAIL_MODE"),
        ("strategy", "nope", "QUOTA_STRATEGY"),
        ("storage_uri", "mongo://x", "QUOTA_STORAGE_URI"),
        ("key_prefix", "", "QUOTA_KEY_PREFIX"),
        ("storage_timeout", -1, "QUOTA_STORAGE_TIMEOUT"),
        ("error_format", "xml", "QUOTA_ERROR_FORMAT"),
    ],
)
def test_a_bad_keyword_option_names_its_config_key(option: str, value: Any, key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Quota(Flask(__name__), **{option: value})

    assert key in str(caught.value)
    assert repr(value) in str(caught.value)


def test_an_unknown_keyword_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="QUOTA_FROBNICATE"):
        Quota(Flask(__name__), frobnicate=1)


def test_a_bad_value_from_the_environment_fails_at_init(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_QUOTA_STORAGE_TIMEOUT", "soon")
    app = Flask(__name__)
    app.config.from_prefixed_env()

    with pytest.raises(ConfigurationError, match=r"QUOTA_STORAGE_TIMEOUT 'soon'"):
        Quota(app)


def test_unknown_quota_keys_are_logged_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    app.config.update(QUOTA_FAILMODE="closed", QUOTA_STORAGE="redis://x", OTHER_KEY=1)

    with caplog.at_level(logging.WARNING, logger="flask_quota"):
        Quota(app)

    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "QUOTA_FAILMODE" in warned
    assert "QUOTA_STORAGE" in warned
    assert "OTHER_KEY" not in warned


#: Nothing listens on port 1: a Redis that refuses every connection (made only on use).
REFUSING_URI = "redis://127.0.0.1:1/0"


def _statuses(app: Flask, times: int, **kwargs: Any) -> list[int]:
    client = app.test_client()
    return [client.get("/", **kwargs).status_code for _ in range(times)]


def _fails_closed(app: Flask) -> None:
    assert _statuses(app, 2) == [503, 503]


def _sends_ietf_headers(app: Flask) -> None:
    headers = app.test_client().get("/").headers
    assert headers["RateLimit-Policy"].endswith(";q=1;w=3600")
    assert "X-RateLimit-Limit" not in headers


def _resets_as_epoch(app: Flask) -> None:
    now = time.time()
    reset = int(app.test_client().get("/").headers["X-RateLimit-Reset"])
    assert now < reset <= now + 3601


def _refuses_as_problem(app: Flask) -> None:
    client = app.test_client()
    client.get("/")
    refused = client.get("/")
    assert (refused.status_code, refused.mimetype) == (429, "application/problem+json")


def _whitelists_network_and_identity(app: Flask) -> None:
    assert _statuses(app, 3, environ_base={"REMOTE_ADDR": "10.1.2.3"}) == [200] * 3
    assert _statuses(app, 3, headers={"X-Who": "user:42"}) == [200] * 3
    assert _statuses(app, 2) == [200, 429]  # anyone else is limited


def _is_disabled(app: Flask) -> None:
    assert _statuses(app, 3) == [200] * 3


def _times_out_after_half_a_second(app: Flask) -> None:
    connection = app.extensions["quota.state"].storage.client.connection_pool.connection_kwargs
    assert (connection["socket_connect_timeout"], connection["socket_timeout"]) == (0.5, 0.5)


@pytest.mark.parametrize(
    ("config", "check"),
    [
        pytest.param(  # documented case-insensitive
            {"QUOTA_FAIL_MODE": "CLOSED", "QUOTA_STORAGE_URI": REFUSING_URI},
            _fails_closed,
            id="QUOTA_FAIL_MODE",
        ),
        pytest.param(
            {"QUOTA_HEADERS_STYLE": "IETF"}, _sends_ietf_headers, id="QUOTA_HEADERS_STYLE"
        ),
        pytest.param({"QUOTA_RESET_FORMAT": "Epoch"}, _resets_as_epoch, id="QUOTA_RESET_FORMAT"),
        pytest.param(
            {"QUOTA_ERROR_FORMAT": "Problem"}, _refuses_as_problem, id="QUOTA_ERROR_FORMAT"
        ),
        pytest.param(  # one string, split on commas
            {"QUOTA_WHITELIST": "10.0.0.0/8, user:42"},
            _whitelists_network_and_identity,
            id="QUOTA_WHITELIST",
        ),
        pytest.param({"QUOTA_ENABLED": "off"}, _is_disabled, id="QUOTA_ENABLED"),
        pytest.param(  # from the environment, a string
            {"QUOTA_STORAGE_TIMEOUT": "0.5", "QUOTA_STORAGE_URI": REFUSING_URI},
            _times_out_after_half_a_second,
            id="QUOTA_STORAGE_TIMEOUT",
        ),
    ],
)
def test_documented_spellings_are_accepted_and_take_effect(
    apps: list[Flask], config: dict[str, Any], check: Callable[[Flask], None]
) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_STRATEGY="fixed_window", **config)
    quota = Quota(app)
    apps.append(app)
    limited = quota.limit("1/hour", key=lambda: request.headers.get("X-Who", request.remote_addr))
    app.add_url_rule("/", "index", limited(lambda: "ok"))

    check(app)


def test_a_dns_failure_is_an_outage_not_a_start_up_error(apps: list[Flask]) -> None:
    """storage.md: creating the client makes no network call; a DNS failure is a storage
    failure, so the fail mode decides."""
    app = Flask(__name__)
    app.config.update(
        QUOTA_STORAGE_URI="redis://no-such-host.invalid:6390/0",
        QUOTA_FAIL_MODE="closed",
        QUOTA_STORAGE_TIMEOUT=0.5,
    )
    Quota(app, default_limits=["5/hour"])
    apps.append(app)
    app.add_url_rule("/", "index", lambda: "ok")

    started = time.monotonic()
    response = app.test_client().get("/")

    assert response.status_code == 503
    assert time.monotonic() - started < 5


# == 2. Limit strings and decorator arguments ================================================

BAD_LIMITS = [
    "garbage",
    "",
    " ",
    ";",
    "10/second;",
    ";10/second",
    "10/second;;1/day",
    "١٠/second",  # Arabic-Indic digits
    "１０/second",  # full-width digits
    "²/second",
    "10/ｓecond",
    "99999999999999999999/second",
    "1000000001/second",
    "0/second",
    "-1/second",
    "+5/second",
    "1.5/second",
    "1e3/second",
    "0x10/second",
    "1_000/second",
    "1/0 seconds",
    "1/00 seconds",
    "1/-1 seconds",
    "1/1.5 seconds",
    "1/11 years",
    "1/99999999999999999999 seconds",
    "10/week",
    "10/s",
    "10/sec",
    "10/second extra",
    "10/second\x00",
]


@pytest.mark.parametrize("limit", BAD_LIMITS)
def test_a_bad_limit_string_fails_at_decoration_naming_it(limit: str) -> None:
    quota = Quota()

    with pytest.raises(ConfigurationError) as caught:
        quota.limit(limit)

    assert repr(limit) in str(caught.value)


@pytest.mark.parametrize("limit", BAD_LIMITS)
def test_a_bad_limit_string_fails_at_init_app_naming_it(limit: str) -> None:
    app = Flask(__name__)
    app.config["QUOTA_DEFAULT_LIMITS"] = [limit]

    with pytest.raises(ConfigurationError) as caught:
        Quota(app)

    assert "QUOTA_DEFAULT_LIMITS" in str(caught.value)
    assert repr(limit) in str(caught.value)


@pytest.mark.parametrize("limit", ["garbage", "0/second", "10/second;"])
def test_bad_limit_strings_in_constructor_and_overrides_fail_at_once(limit: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid limit"):
        Quota(default_limits=[limit])
    with pytest.raises(ConfigurationError, match="invalid limit"):
        Quota(global_limits=limit)
    app = Flask(__name__)
    quota = Quota(app)
    with pytest.raises(ConfigurationError, match="invalid limit"):
        quota.set_override("anything", limit, app=app)
    result = cli(app, "set", "anything", limit)
    assert repr(limit) in assert_one_line_error(result, 1)


@pytest.mark.parametrize(
    "limit",
    [
        " 2/minute ",
        "2 / minute",
        "2/ minute",
        "2  per  minute",
        "2\t/\tminute",
        "2/MINUTE",
        "02/minute",
    ],
)
def test_whitespace_and_case_variants_parse_as_the_same_limit(limit: str) -> None:
    app = Flask(__name__)
    app.config["TESTING"] = True
    quota = Quota(app, strategy="fixed_window")
    app.add_url_rule("/", "index", quota.limit(limit)(lambda: "ok"))
    client = app.test_client()

    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("cost", -1),
        ("cost", "2"),
        ("cost", 1.5),
        ("cost", True),
        ("cost", None),
        ("cost", math.nan),
        ("burst", 0),
        ("burst", -1),
        ("burst", "5"),
        ("burst", 1.5),
        ("burst", True),
        ("methods", "GET"),
        ("methods", [1]),
        ("strategy", "nope"),
        ("strategy", "concurrent"),
        ("strategy", 5),
        ("fail_mode", "maybe"),
        ("fail_mode", 1),
        ("key", "not callable"),
        ("key", 5),
        ("exempt_when", "x"),
        ("scope", ""),
        ("scope", 5),
        ("name", ""),
        ("name", 5),
    ],
)
def test_a_bad_decorator_argument_fails_at_decoration_naming_it(option: str, value: Any) -> None:
    quota = Quota()

    with pytest.raises(ConfigurationError) as caught:
        quota.limit("10/second", **{option: value})

    assert option in str(caught.value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("value", [10, None, b"10/second", ["10/second"], object()])
def test_a_limit_of_the_wrong_type_fails_at_decoration(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="expected a string or a callable"):
        Quota().limit(value)


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((0,), {}, "concurrency 0"),
        ((-1,), {}, "concurrency -1"),
        (("2",), {}, "concurrency '2'"),
        ((1.5,), {}, "concurrency 1.5"),
        ((2,), {"lease": 0}, "lease 0"),
        ((2,), {"lease": -1}, "lease -1"),
        ((2,), {"lease": "x"}, "lease 'x'"),
        ((2,), {"key": "x"}, "key 'x'"),
        ((2,), {"fail_mode": "x"}, "fail_mode 'x'"),
    ],
)
def test_a_bad_concurrency_argument_fails_at_decoration(
    args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Quota().concurrent(*args, **kwargs)

    assert named in str(caught.value)


def test_limit_blueprint_validates_like_limit() -> None:
    from flask import Blueprint

    quota = Quota()
    for option, value in [("cost", -1), ("methods", "GET"), ("key", "x")]:
        with pytest.raises(ConfigurationError, match=option):
            quota.limit_blueprint(Blueprint("bp", __name__), "1/second", **{option: value})


def _dynamic_app(**limit_options: Any) -> Flask:
    app = Flask(__name__)
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit(**limit_options)(lambda: "ok"))
    return app


@pytest.mark.parametrize("returned", ["garbage", "", "0/second", 5, b"1/second"])
def test_a_callable_limit_returning_garbage_fails_at_request_time(returned: Any) -> None:
    """Documented (configuration.md): a callable's bad string can only fail at request time.
    It fails as a ConfigurationError naming the value (a 500), not as a silent pass."""
    app = _dynamic_app(limit=lambda: returned)

    assert app.test_client().get("/").status_code == 500
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ConfigurationError) as caught:
        app.test_client().get("/")
    assert repr(returned) in str(caught.value)


@pytest.mark.parametrize("returned", [-1, "2", 1.5, None, True])
def test_a_cost_callable_returning_garbage_fails_at_request_time(returned: Any) -> None:
    app = _dynamic_app(limit="10/second", cost=lambda: returned)

    assert app.test_client().get("/").status_code == 500
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ConfigurationError, match="cost callable returned"):
        app.test_client().get("/")


@pytest.mark.parametrize("returned", [5, b"x", ["x"]])
def test_a_key_function_returning_a_non_string_raises_type_error(returned: Any) -> None:
    """configuration.md: a key function returning anything but a str or None raises
    TypeError."""
    app = _dynamic_app(limit="10/second", key=lambda: returned)
    app.config["PROPAGATE_EXCEPTIONS"] = True

    with pytest.raises(TypeError, match="not a str or None"):
        app.test_client().get("/")


def test_a_plan_name_missing_from_quota_plans_fails_at_request_time() -> None:
    app = Flask(__name__)
    app.config["QUOTA_PLANS"] = {"free": "10/day"}
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit(quota.plan(by=lambda: "gold"))(lambda: "ok"))
    app.config["PROPAGATE_EXCEPTIONS"] = True

    with pytest.raises(ConfigurationError, match="gold"):
        app.test_client().get("/")


@BACKENDS
def test_a_cost_above_capacity_is_refused_with_one_period(backend: Backend) -> None:
    """A cost above the capacity can never pass: docs say Retry-After is one full period."""
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_KEY_PREFIX=backend.key_prefix)
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit("10/hour", cost=10**9)(lambda: "ok"))
    backend.attach(app)

    response = app.test_client().get("/")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3600"


# == 3. Hostile identities ===================================================================

HOSTILE = {
    "huge": "x" * 1_000_000,
    "huge-other": "x" * 999_999 + "y",
    "long129": "y" * 129,
    "surrogate": "\ud800",
    "binary": "\x00\xff\x7f\x1b",
    "braces": "{x}",
    "open-brace": "{",
    "close-brace": "}",
    "tag-forge": "{0000}",
    "colons": "a:fw:3600:b",
    "colon-only": ":",
    "star": "*",
    "question": "?",
    "bracket": "[a]",
    "a": "a",
    "newline": "a\nb",
    "crlf": "a\r\nb",
    "percent": "%",
    "percent-41": "%41",
    "A": "A",
    "percent-utf8": "%C3%A9",
    "e-acute": "é",
    "empty": "",
    "spaces": "   ",
    "tab": "\t",
    "hash": "#abc",
    "allow-forge": "%allow:x",
    "key-digest": "key:sha256:" + "0" * 16,
}


def _hostile_app(backend: Backend, limit: str = "2/hour") -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, QUOTA_KEY_PREFIX=backend.key_prefix, QUOTA_STRATEGY="fixed_window"
    )
    quota = Quota(app)
    app.add_url_rule(
        "/", "index", quota.limit(limit, key=lambda: HOSTILE[request.args["who"]])(lambda: "ok")
    )
    backend.attach(app)
    return app


def _as(client: Any, who: str) -> Any:
    return client.get("/", query_string={"who": who})


@BACKENDS
def test_every_hostile_identity_has_a_counter_of_its_own(backend: Backend) -> None:
    app = _hostile_app(backend)
    client = app.test_client()

    first = {who: _as(client, who).status_code for who in HOSTILE}
    second = {who: _as(client, who).status_code for who in HOSTILE}
    counters = backend.stored_keys(app)
    third = {who: _as(client, who).status_code for who in HOSTILE}

    # Had two identities shared a counter, one of them would be refused early.
    assert set(first.values()) == {200}
    assert set(second.values()) == {200}
    assert set(third.values()) == {429}
    assert len(counters) == len(HOSTILE)


@BACKENDS
def test_hostile_identities_cannot_escape_the_prefix_or_choose_a_tag(backend: Backend) -> None:
    app = _hostile_app(backend)
    client = app.test_client()
    for who in HOSTILE:
        _as(client, who)

    keys = backend.stored_keys(app)

    assert len(keys) == len(HOSTILE)
    for key in keys:
        assert key.startswith(f"{backend.key_prefix}:{{"), key
        assert len(key) < 200, key[:80]  # the 1 MB identity is digested
        tag_end = key.index("}")
        rest = key[tag_end + 1 :]
        # Only the first {...} is a hash tag: no brace, glob or blank after it.
        assert not set(rest) & set("{}*?[] \t\r\n\x00"), key
        assert key.isascii() and key.isprintable(), key
        assert rest.startswith(":index:fw:3600:"), key


@BACKENDS
def test_an_identity_cannot_forge_the_key_of_another_scope(backend: Backend) -> None:
    """Identity ``a:fw:3600:b`` in scope ``s`` against identity ``b`` in a scope spelt
    ``s:fw:3600:a``: without escaping, both keys would read ``s:fw:3600:a:fw:3600:b``."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True, QUOTA_KEY_PREFIX=backend.key_prefix, QUOTA_STRATEGY="fixed_window"
    )
    quota = Quota(app)
    app.add_url_rule(
        "/one", "one", quota.limit("1/hour", scope="s", key=lambda: "a:fw:3600:b")(lambda: "1")
    )
    app.add_url_rule(
        "/two", "two", quota.limit("1/hour", scope="s:fw:3600:a", key=lambda: "b")(lambda: "2")
    )
    backend.attach(app)
    client = app.test_client()

    assert client.get("/one").status_code == 200
    assert client.get("/two").status_code == 200
    assert len(backend.stored_keys(app)) == 2


@BACKENDS
def test_a_client_cannot_take_an_api_keys_counter_by_sending_its_digest(
    backend: Backend,
) -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, QUOTA_KEY_PREFIX=backend.key_prefix, QUOTA_STRATEGY="fixed_window"
    )
    quota = Quota(app)
    app.add_url_rule(
        "/api", "api", quota.limit("2/hour", key=by_api_key, scope="shared")(lambda: "ok")
    )
    app.add_url_rule(
        "/raw",
        "raw",
        quota.limit("2/hour", key=lambda: request.headers["X-Client"], scope="shared")(
            lambda: "ok"
        ),
    )
    backend.attach(app)
    client = app.test_client()
    digest = "key:sha256:" + hashlib.sha256(b"secret").hexdigest()[:16]

    victim = [client.get("/api", headers={"X-API-Key": "secret"}).status_code for _ in range(2)]
    attacker = [client.get("/raw", headers={"X-Client": digest}).status_code for _ in range(2)]

    assert victim == [200, 200]
    assert attacker == [200, 200]


SHOWN = [who for who in HOSTILE if who not in {"huge", "huge-other", "long129", "key-digest"}]


@BACKENDS
def test_list_json_shows_hostile_identities_as_they_were(backend: Backend) -> None:
    app = _hostile_app(backend)
    client = app.test_client()
    for who in HOSTILE:
        _as(client, who)

    result = cli(app, "list", "--json")

    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    identities = [row["identity"] for row in rows]
    assert len(identities) == len(HOSTILE)
    for who in SHOWN:
        assert identities.count(HOSTILE[who]) == 1, who
    assert all(row["used"] == 1 for row in rows)
    # A request's key: identity is hashed even when it looks like a digest (configuration.md).
    digest_of_it = "key:sha256:" + hashlib.sha256(b"sha256:" + b"0" * 16).hexdigest()[:16]
    assert HOSTILE["key-digest"] not in identities
    assert digest_of_it in identities
    # The long ones are shown digested, never in full.
    digested = [i for i in identities if i.startswith("#") and i != "#abc"]
    assert len(digested) == 3
    assert all(len(i) == 33 for i in digested)


@BACKENDS
@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", None),  # everything
        ("[*]", {"*"}),  # a literal star, through a glob class
        ("[[]a]", {"[a]"}),
        ("[a]", {"a"}),  # a glob, as documented
        ("{x}", {"{x}"}),
        ("a:fw:*", {"a:fw:3600:b"}),
        ("%41", {"%41"}),
    ],
)
def test_list_patterns_are_globs_on_the_identity(
    backend: Backend, pattern: str, expected: set[str] | None
) -> None:
    app = _hostile_app(backend)
    client = app.test_client()
    for who in HOSTILE:
        _as(client, who)

    result = cli(app, "list", pattern, "--json")

    assert result.exit_code == 0, result.stderr
    found = {row["identity"] for row in json.loads(result.stdout)}
    if expected is None:
        assert len(found) == len(HOSTILE)
    else:
        assert found == expected


@BACKENDS
@pytest.mark.parametrize("who", ["star", "question", "bracket", "braces", "colons", "percent"])
def test_reset_takes_its_identity_literally(backend: Backend, who: str) -> None:
    """``reset '*'`` clears the identity ``*``, not every identity."""
    app = _hostile_app(backend)
    client = app.test_client()
    for name in HOSTILE:
        _as(client, name)
    before = len(backend.stored_keys(app))

    result = cli(app, "reset", HOSTILE[who], "--json")

    assert result.exit_code == 0, result.stderr
    assert len(backend.stored_keys(app)) == before - 1
    assert _as(client, who).headers["X-RateLimit-Remaining"] == "1"
    assert _as(client, "a").headers["X-RateLimit-Remaining"] == "0"


@BACKENDS
@pytest.mark.parametrize("who", ["star", "braces", "colons", "question"])
def test_block_and_whitelist_take_their_identity_literally(backend: Backend, who: str) -> None:
    app = _hostile_app(backend, limit="100/hour")
    client = app.test_client()

    assert cli(app, "block", HOSTILE[who], "--for", "120").exit_code == 0
    assert _as(client, who).status_code == 429
    assert _as(client, "a").status_code == 200
    assert _as(client, "A").status_code == 200

    assert cli(app, "unblock", HOSTILE[who]).exit_code == 0
    assert cli(app, "whitelist", "add", HOSTILE[who]).exit_code == 0
    assert "X-RateLimit-Remaining" not in _as(client, who).headers  # allowed: unchecked
    assert "X-RateLimit-Remaining" in _as(client, "a").headers


# == 4. Redis outage =========================================================================


def _outage_app(apps: list[Flask], uri: str, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        QUOTA_STORAGE_URI=uri,
        QUOTA_STRATEGY="sliding_log",
        QUOTA_STORAGE_TIMEOUT=0.1,
        **config,
    )
    quota = Quota(app, global_limits=["100/hour"])
    app.add_url_rule("/", "index", quota.limit("2/hour")(lambda: "ok"))
    app.add_url_rule("/slot", "slot", quota.concurrent(3)(quota.limit("2/hour")(lambda: "ok")))
    apps.append(app)
    return app


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("open", [200, 200, 200]), ("closed", [503, 503, 503]), ("local", [200, 200, 429])],
)
@pytest.mark.parametrize("path", ["/", "/slot"])
def test_dead_port_follows_the_fail_mode_quickly(
    apps: list[Flask], dead_uri: str, key_prefix: str, mode: str, expected: list[int], path: str
) -> None:
    app = _outage_app(apps, dead_uri, QUOTA_FAIL_MODE=mode, QUOTA_KEY_PREFIX=key_prefix)
    client = app.test_client()

    started = time.monotonic()
    responses = [client.get(path) for _ in range(3)]
    elapsed = time.monotonic() - started

    assert [r.status_code for r in responses] == expected
    assert elapsed < 2.0
    if mode == "open":
        assert all("X-RateLimit-Limit" not in r.headers for r in responses)
    if mode == "closed":
        assert responses[0].get_json()["error"] == "Service Unavailable"
        assert int(responses[0].headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("open", [200, 200, 200]), ("closed", [503, 503, 503]), ("local", [200, 200, 429])],
)
def test_a_hung_redis_costs_one_timeout_then_the_fail_mode_applies_at_once(
    apps: list[Flask], hung_redis: HungRedis, key_prefix: str, mode: str, expected: list[int]
) -> None:
    app = _outage_app(
        apps,
        hung_redis.uri,
        QUOTA_FAIL_MODE=mode,
        QUOTA_KEY_PREFIX=key_prefix,
        QUOTA_RETRY_INTERVAL=60,
    )
    client = app.test_client()

    started = time.monotonic()
    first = client.get("/slot")
    assert time.monotonic() - started < 5  # gave up after the 0.1 s timeout: no hang
    assert hung_redis.new_connections() == 1  # one attempt, no redis-py retry
    rest = [client.get("/slot") for _ in range(2)]

    assert [r.status_code for r in [first, *rest]] == expected
    assert hung_redis.new_connections() == 0  # the fail mode at once: nothing to wait on


@pytest.mark.redis
@pytest.mark.parametrize(
    ("mode", "while_down"),
    [("open", [200, 200, 200]), ("closed", [503, 503, 503]), ("local", [200, 200, 429])],
)
def test_redis_stopped_mid_test_then_restarted(
    apps: list[Flask], own_redis: RedisProcess, key_prefix: str, mode: str, while_down: list[int]
) -> None:
    # Retry interval 0: every request asks the storage, so no clock needs to move.
    app = _outage_app(
        apps,
        own_redis.url,
        QUOTA_FAIL_MODE=mode,
        QUOTA_KEY_PREFIX=key_prefix,
        QUOTA_RETRY_INTERVAL=0,
    )
    client = app.test_client()

    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    own_redis.stop()
    started = time.monotonic()
    down = [client.get("/slot").status_code for _ in range(3)]
    assert time.monotonic() - started < 3.0
    assert down == while_down
    for command in (["list", "--json"], ["block", "x"], ["emergency", "status"]):
        assert "redis unavailable" in assert_one_line_error(cli(app, *command), 1)

    own_redis.start()
    # The restarted server (no persistence) starts afresh; enforcement resumes by itself.
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert cli(app, "list", "--json").exit_code == 0


CLI_COMMANDS = [
    ["list"],
    ["list", "user:*"],
    ["reset", "user:1"],
    ["reset", "user:1", "--limit", "index:2/hour"],
    ["reset", "--all", "--yes"],
    ["whitelist", "add", "user:1"],
    ["whitelist", "remove", "user:1"],
    ["whitelist", "list"],
    ["block", "user:1"],
    ["block", "user:1", "--for", "60"],
    ["unblock", "user:1"],
    ["top"],
    ["top", "--limit", "3"],
    ["set", "index:2/hour", "1/hour"],
    ["set", "index:2/hour", "1/hour", "--for", "60"],
    ["unset", "index:2/hour"],
    ["overrides"],
    ["emergency", "on", "--factor", "0.5"],
    ["emergency", "off"],
    ["emergency", "status"],
]


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
@pytest.mark.parametrize("command", CLI_COMMANDS, ids=lambda c: " ".join(c))
def test_every_cli_command_against_a_dead_redis_fails_in_one_line(
    apps: list[Flask], dead_uri: str, command: list[str], json_flag: list[str]
) -> None:
    app = _outage_app(apps, dead_uri)

    line = assert_one_line_error(cli(app, *command, *json_flag), 1)

    assert "redis unavailable" in line


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_cli_limits_needs_no_storage(
    apps: list[Flask], dead_uri: str, json_flag: list[str]
) -> None:
    app = _outage_app(apps, dead_uri)

    result = cli(app, "limits", *json_flag)

    assert result.exit_code == 0
    assert "2/hour" in result.stdout


@pytest.mark.parametrize(
    "command", [["list"], ["reset", "--all", "--yes"], ["top"], ["block", "x"], ["overrides"]]
)
def test_cli_against_a_hung_redis_gives_up_after_the_timeout(
    apps: list[Flask], hung_redis: HungRedis, command: list[str]
) -> None:
    app = _outage_app(apps, hung_redis.uri)

    started = time.monotonic()
    result = cli(app, *command)

    assert time.monotonic() - started < 5  # gave up after the 0.1 s timeout: no hang
    assert hung_redis.new_connections() == 1
    assert "redis unavailable" in assert_one_line_error(result, 1)


# == 5. CLI bad input ========================================================================

USAGE = 2
FAILURE = 1
CLI_BAD_INPUT: list[tuple[list[str], int, str]] = [
    (["block", "x", "--for", "-5"], USAGE, "--for"),
    (["block", "x", "--for", "0"], USAGE, "--for"),
    (["block", "x", "--for", "abc"], USAGE, "'abc'"),
    (["block", "x", "--for", "1.5"], USAGE, "'1.5'"),
    (["block", "x", "--for"], USAGE, "--for"),
    (["block"], USAGE, "IDENTITY"),
    (["block", "x", "y"], USAGE, "(y)"),
    (["block", ""], FAILURE, "identity"),
    (["block", "10.0.0.0/8"], FAILURE, "10.0.0.0/8"),
    (["unblock"], USAGE, "IDENTITY"),
    (["unblock", "nobody"], FAILURE, "nobody"),
    (["top", "--limit", "0"], USAGE, "--limit"),
    (["top", "--limit", "-1"], USAGE, "--limit"),
    (["top", "--limit", "abc"], USAGE, "'abc'"),
    (["top", "extra"], USAGE, "(extra)"),
    (["list", "--limit", "0"], USAGE, "--limit"),
    (["list", "a", "b"], USAGE, "(b)"),
    (["list", "--frob"], USAGE, "--frob"),
    (["list", ""], FAILURE, "identity"),
    (["set", "name", "garbage"], FAILURE, "'garbage'"),
    (["set", "name", ""], FAILURE, "''"),
    (["set", "name", "0/second"], FAILURE, "'0/second'"),
    (["set", "name", "10/second;"], FAILURE, "'10/second;'"),
    (["set", "name", "1/hour", "--for", "-1"], USAGE, "--for"),
    (["set", "name", "1/hour", "--for", "abc"], USAGE, "'abc'"),
    (["set", "name"], USAGE, "LIMIT"),
    (["set"], USAGE, "NAME"),
    (["set", "", "1/hour"], FAILURE, "name"),
    (["unset"], USAGE, "NAME"),
    (["unset", "nothing"], FAILURE, "'nothing'"),
    (["reset"], USAGE, "IDENTITY or --all"),
    (["reset", "x", "--all"], USAGE, "IDENTITY or --all"),
    (["reset", "--all", "--limit", "n"], USAGE, "--limit"),
    (["reset", "x", "--limit", "nope"], FAILURE, "'nope'"),
    (["reset", ""], FAILURE, "identity"),
    (["reset", "10.0.0.0/8"], FAILURE, "10.0.0.0/8"),
    (["emergency", "on"], USAGE, "--factor"),
    (["emergency", "on", "--factor", "0"], FAILURE, "factor 0"),
    (["emergency", "on", "--factor", "1.5"], FAILURE, "factor 1.5"),
    (["emergency", "on", "--factor", "-1"], FAILURE, "factor -1"),
    (["emergency", "on", "--factor", "nan"], FAILURE, "nan"),
    (["emergency", "on", "--factor", "inf"], FAILURE, "inf"),
    (["emergency", "on", "--factor", "abc"], USAGE, "'abc'"),
    (["emergency", "on", "--factor", "0.5", "--for", "0"], USAGE, "--for"),
    (["emergency", "off", "--factor", "0.5"], USAGE, "--factor"),
    (["emergency", "maybe"], USAGE, "'maybe'"),
    (["whitelist", "add"], USAGE, "IDENTITY"),
    (["whitelist", "add", ""], FAILURE, "identity"),
    (["whitelist", "add", "10.0.0.0/8"], FAILURE, "10.0.0.0/8"),
    (["whitelist", "remove", "nobody"], FAILURE, "nobody"),
    (["whitelist", "frobnicate"], USAGE, "No such command 'frobnicate'"),
    (["whitelist", "list", "extra"], USAGE, "(extra)"),
    (["limits", "extra"], USAGE, "(extra)"),
    (["overrides", "x"], USAGE, "(x)"),
    (["frobnicate"], USAGE, "No such command 'frobnicate'"),
]


@pytest.mark.redis
@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
@pytest.mark.parametrize(
    ("command", "code", "mentions"),
    CLI_BAD_INPUT,
    ids=lambda v: repr(v) if isinstance(v, list) else None,
)
def test_cli_bad_input_fails_in_one_line(
    apps: list[Flask],
    redis_server: Any,
    key_prefix: str,
    command: list[str],
    code: int,
    mentions: str,
    json_flag: list[str],
) -> None:
    app = _outage_app(apps, redis_server.url, QUOTA_KEY_PREFIX=key_prefix)

    line = assert_one_line_error(cli(app, *command, *json_flag), code)

    assert mentions in line


@pytest.mark.redis
def test_reset_all_without_yes_asks_and_a_no_changes_nothing(
    apps: list[Flask], redis_server: Any, key_prefix: str
) -> None:
    app = _outage_app(apps, redis_server.url, QUOTA_KEY_PREFIX=key_prefix)
    client = app.test_client()
    client.get("/")

    result = cli(app, "reset", "--all", input="n\n")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert client.get("/").headers["X-RateLimit-Remaining"] == "0"  # still counted


# == 6. Bodies and headers under QUOTA_ERROR_FORMAT = "problem" ==============================


@pytest.mark.parametrize("path", ["/", "/slot"])
def test_storage_outage_fail_closed_is_a_problem_json_503_with_retry_after(
    apps: list[Flask], dead_uri: str, path: str
) -> None:
    app = _outage_app(
        apps,
        dead_uri,
        QUOTA_FAIL_MODE="closed",
        QUOTA_ERROR_FORMAT="problem",
        QUOTA_RETRY_INTERVAL=7,
    )

    response = app.test_client().get(path)

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"
    assert body["type"] == "about:blank"
    assert body["detail"]
    assert response.headers["Retry-After"] == "7"
    assert not [h for h in response.headers.keys() if "ratelimit" in h.lower()]


@BACKENDS
def test_a_blocked_identity_gets_a_problem_json_429(backend: Backend) -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, QUOTA_KEY_PREFIX=backend.key_prefix, QUOTA_ERROR_FORMAT="problem"
    )
    Quota(app, default_limits=["100/hour"])
    app.add_url_rule("/", "index", lambda: "ok")
    backend.attach(app)
    assert cli(app, "block", "203.0.113.9", "--for", "120").exit_code == 0

    response = app.test_client().get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"})

    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert (body["status"], body["title"], body["policy"], body["limit"]) == (
        429,
        "Too Many Requests",
        "blocked",
        0,
    )
    assert response.headers["Retry-After"] == "120"
    assert body["retryAfter"] == int(response.headers["Retry-After"])
    assert app.test_client().get("/", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == (
        200
    )


def test_a_refusal_under_problem_format_keeps_the_429_fields() -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_ERROR_FORMAT="problem", QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit("1/hour")(lambda: "ok"))
    client = app.test_client()
    client.get("/")

    response = client.get("/")

    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert list(body)[:4] == ["type", "title", "status", "detail"]
    assert {"limit", "remaining", "reset", "resetAt", "retryAfter", "policy"} <= set(body)
    assert response.headers["Retry-After"] == str(body["retryAfter"])
