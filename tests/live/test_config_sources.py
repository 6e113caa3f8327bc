"""Configuration from outside the code: every ``QUOTA_*`` option and named limit from
``app.config.from_file()`` (TOML and JSON) and from ``FLASK_QUOTA_*`` environment variables via
``app.config.from_prefixed_env()``; a bad value fails at ``init_app`` naming its key.

Environment variables are set with ``monkeypatch.setenv``, restored after each test.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from flask_quota import ConfigurationError, Quota, by_tenant
from flask_quota._config import DEFAULTS, ErrorFormat, FailMode, HeaderStyle, ResetFormat
from flask_quota.adaptive import InFlight
from flask_quota.algorithms import Algorithm
from tests.live.conftest import LiveBackend, StatsdListener, limit_header, state_of

#: A value for every option (most of them not the default). ``{prefix}``, ``{port}``: the test's.
TOML_CONFIG = """
QUOTA_ENABLED = true
QUOTA_STORAGE_URI = "memory://"
QUOTA_STORAGE_TIMEOUT = 0.25
QUOTA_RETRY_INTERVAL = 2.5
QUOTA_FAIL_MODE = "closed"
QUOTA_STRATEGY = "fixed_window"
QUOTA_KEY_PREFIX = "{prefix}"
QUOTA_DEFAULT_LIMITS = ["7/minute", "100/day"]
QUOTA_GLOBAL_LIMITS = "1000/minute"
QUOTA_DRY_RUN = false
QUOTA_HEADERS_ENABLED = true
QUOTA_HEADERS_STYLE = "both"
QUOTA_RESET_FORMAT = "epoch"
QUOTA_ERROR_FORMAT = "problem"
QUOTA_MAX_DELAY = 0.5
QUOTA_IPV6_PREFIX = 56
QUOTA_API_KEY_HEADER = "X-Key"
QUOTA_TENANT_HEADER = "X-Tenant"
QUOTA_WHITELIST = ["10.0.0.0/8", "user:42"]
QUOTA_BLOCK_DURATION = 600
QUOTA_COUNT_STATIC = true
QUOTA_COUNT_OPTIONS = true
QUOTA_ALERT_THRESHOLD = 20
QUOTA_ALERT_WINDOW = 120
QUOTA_STATSD_HOST = "127.0.0.1"
QUOTA_STATSD_PORT = {port}
QUOTA_STATSD_PREFIX = "api"
QUOTA_ADAPTIVE = "in_flight:4:8"

[QUOTA_LIMITS]
search = "3/minute"

[QUOTA_PLANS]
free = "2/minute"
pro = "10/second;100000/day"
"""


def expected_settings(prefix: str, port: int) -> dict[str, Any]:
    """The settings every source below spells, field by field."""
    import ipaddress

    return {
        "enabled": True,
        "storage_uri": "memory://",
        "storage_timeout_s": 0.25,
        "retry_interval_s": 2.5,
        "fail_mode": FailMode.CLOSED,
        "strategy": Algorithm.FIXED_WINDOW,
        "key_prefix": prefix,
        "default_limits": ("7/minute", "100/day"),
        "global_limits": ("1000/minute",),
        "dry_run": False,
        "headers_enabled": True,
        "headers_style": HeaderStyle.BOTH,
        "reset_format": ResetFormat.EPOCH,
        "error_format": ErrorFormat.PROBLEM,
        "max_delay_s": 0.5,
        "ipv6_prefix": 56,
        "api_key_header": "X-Key",
        "tenant_header": "X-Tenant",
        "whitelist_identities": frozenset({"user:42"}),
        "whitelist_networks": (ipaddress.ip_network("10.0.0.0/8"),),
        "block_duration_s": 600,
        "count_static": True,
        "count_options": True,
        "alert_threshold": 20,
        "alert_window_s": 120,
        "statsd_host": "127.0.0.1",
        "statsd_port": port,
        "statsd_prefix": "api",
        "named_limits": {"search": "3/minute"},
        "plans": {"free": "2/minute", "pro": "10/second;100000/day"},
        "adaptive": InFlight(4, 8, 0.1),
    }


def settings_of(app: Flask) -> dict[str, Any]:
    settings = state_of(app).settings
    return {name: getattr(settings, name) for name in expected_settings("", 0)}


def configured_app(load: Callable[[Flask], object]) -> Flask:
    """An app configured by ``load`` only, with a view using a named limit and a plan."""
    app = Flask(__name__)
    app.config["TESTING"] = True
    load(app)
    quota = Quota(app)

    @app.get("/search")
    @quota.limit("100/minute", name="search", key=by_tenant)
    def search() -> str:
        return "search"

    @app.get("/items")
    @quota.limit(quota.plan(by=lambda: request.args.get("plan")), key=by_tenant)
    def items() -> str:
        return "items"

    return app


def statuses(app: Flask, path: str, times: int, tenant: str = "acme") -> list[int]:
    client = app.test_client()
    header = state_of(app).settings.tenant_header
    return [client.get(path, headers={header: tenant}).status_code for _ in range(times)]


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No ``FLASK_*`` variable of the outer environment leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name)
    yield monkeypatch


# -- files --------------------------------------------------------------------------------------


def test_the_toml_example_spells_every_option() -> None:
    spelt = tomllib.loads(TOML_CONFIG.format(prefix="p", port=1))

    assert sorted(spelt) == sorted(DEFAULTS)


def test_every_option_and_named_limit_from_a_toml_file(
    tmp_path: Path, key_prefix: str, statsd: StatsdListener, backend: LiveBackend
) -> None:
    path = tmp_path / "quota.toml"
    path.write_text(TOML_CONFIG.format(prefix=key_prefix, port=statsd.port))

    app = configured_app(lambda app: app.config.from_file(path, load=tomllib.load, text=False))
    backend.attach(app)

    assert settings_of(app) == expected_settings(key_prefix, statsd.port)
    # The file's numbers, not the code's: search 3/minute, the free plan 2/minute.
    assert statuses(app, "/search", 4) == [200, 200, 200, 429]
    assert statuses(app, "/items?plan=free", 3) == [200, 200, 429]
    assert statuses(app, "/items?plan=pro", 11) == [200] * 10 + [429]
    response = app.test_client().get("/search", headers={"X-Tenant": "acme"})
    assert response.status_code == 429
    assert response.content_type == "application/problem+json"  # QUOTA_ERROR_FORMAT
    assert response.headers["RateLimit-Policy"] == '"search";q=3;w=60'  # QUOTA_HEADERS_STYLE
    assert "api.denied.search:1|c" in statsd.wait_for("api.denied.search:1|c")


def test_every_option_and_named_limit_from_a_json_file(
    tmp_path: Path, key_prefix: str, backend: LiveBackend
) -> None:
    config = tomllib.loads(TOML_CONFIG.format(prefix=key_prefix, port=9125))
    # JSON can say what TOML cannot: null, an unlimited name or plan.
    config["QUOTA_LIMITS"]["export"] = None
    config["QUOTA_PLANS"]["internal"] = None
    config["QUOTA_STATSD_HOST"] = None
    path = tmp_path / "quota.json"
    path.write_text(json.dumps(config))

    app = configured_app(lambda app: app.config.from_file(str(path), load=json.load))
    backend.attach(app)

    expected = expected_settings(key_prefix, 9125)
    expected["named_limits"] = {"search": "3/minute", "export": None}
    expected["plans"] = {**expected["plans"], "internal": None}
    expected["statsd_host"] = None
    assert settings_of(app) == expected
    assert statuses(app, "/search", 4) == [200, 200, 200, 429]
    assert statuses(app, "/items?plan=internal", 20) == [200] * 20


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('QUOTA_FAIL_MODE = "sideways"', "QUOTA_FAIL_MODE 'sideways'"),
        ("QUOTA_ENABLED = 2", "QUOTA_ENABLED 2"),
        ('QUOTA_DEFAULT_LIMITS = ["10/fortnight"]', "QUOTA_DEFAULT_LIMITS: invalid limit"),
        ('QUOTA_PLANS = { free = "0/second" }', "QUOTA_PLANS['free']: invalid limit '0/second'"),
        ('QUOTA_ADAPTIVE = "in_flight:four:8"', "QUOTA_ADAPTIVE 'in_flight:four:8'"),
    ],
)
def test_a_bad_value_in_a_file_fails_at_init_app_naming_the_key(
    tmp_path: Path, line: str, named: str
) -> None:
    path = tmp_path / "quota.toml"
    path.write_text(line + "\n")
    app = Flask(__name__)
    app.config.from_file(path, load=tomllib.load, text=False)

    with pytest.raises(ConfigurationError, match=re.escape(named)):
        Quota(app)


# -- environment --------------------------------------------------------------------------------


def environment(prefix: str, port: int) -> dict[str, str]:
    """Every option as ``FLASK_QUOTA_*``: JSON where a mapping, list, number or bool is meant
    (Flask decodes each value as JSON, falling back to the plain string)."""
    return {
        "FLASK_QUOTA_ENABLED": "true",
        "FLASK_QUOTA_STORAGE_URI": "memory://",
        "FLASK_QUOTA_STORAGE_TIMEOUT": "0.25",
        "FLASK_QUOTA_RETRY_INTERVAL": "2.5",
        "FLASK_QUOTA_FAIL_MODE": "closed",
        "FLASK_QUOTA_STRATEGY": "fixed_window",
        "FLASK_QUOTA_KEY_PREFIX": prefix,
        "FLASK_QUOTA_DEFAULT_LIMITS": '["7/minute", "100/day"]',
        "FLASK_QUOTA_GLOBAL_LIMITS": "1000/minute",
        "FLASK_QUOTA_DRY_RUN": "false",
        "FLASK_QUOTA_HEADERS_ENABLED": "true",
        "FLASK_QUOTA_HEADERS_STYLE": "both",
        "FLASK_QUOTA_RESET_FORMAT": "epoch",
        "FLASK_QUOTA_ERROR_FORMAT": "problem",
        "FLASK_QUOTA_MAX_DELAY": "0.5",
        "FLASK_QUOTA_IPV6_PREFIX": "56",
        "FLASK_QUOTA_API_KEY_HEADER": "X-Key",
        "FLASK_QUOTA_TENANT_HEADER": "X-Tenant",
        "FLASK_QUOTA_WHITELIST": '["10.0.0.0/8", "user:42"]',
        "FLASK_QUOTA_BLOCK_DURATION": "600",
        "FLASK_QUOTA_COUNT_STATIC": "true",
        "FLASK_QUOTA_COUNT_OPTIONS": "true",
        "FLASK_QUOTA_ALERT_THRESHOLD": "20",
        "FLASK_QUOTA_ALERT_WINDOW": "120",
        "FLASK_QUOTA_STATSD_HOST": "127.0.0.1",
        "FLASK_QUOTA_STATSD_PORT": str(port),
        "FLASK_QUOTA_STATSD_PREFIX": "api",
        "FLASK_QUOTA_LIMITS": '{"search": "3/minute"}',
        "FLASK_QUOTA_PLANS": '{"free": "2/minute", "pro": "10/second;100000/day"}',
        "FLASK_QUOTA_ADAPTIVE": "in_flight:4:8",
    }


def set_environment(monkeypatch: pytest.MonkeyPatch, values: Mapping[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_the_environment_example_spells_every_option() -> None:
    names = environment("p", 1)

    assert sorted(name.removeprefix("FLASK_") for name in names) == sorted(DEFAULTS)


def test_every_option_and_named_limit_from_the_environment(
    clean_environ: pytest.MonkeyPatch, key_prefix: str, statsd: StatsdListener, backend: LiveBackend
) -> None:
    set_environment(clean_environ, environment(key_prefix, statsd.port))

    app = configured_app(lambda app: app.config.from_prefixed_env())
    backend.attach(app)

    assert settings_of(app) == expected_settings(key_prefix, statsd.port)
    assert statuses(app, "/search", 4) == [200, 200, 200, 429]
    assert statuses(app, "/items?plan=free", 3) == [200, 200, 429]
    assert "api.denied.search:1|c" in statsd.wait_for("api.denied.search:1|c")


def test_nested_environment_variables_name_one_limit_or_plan(
    clean_environ: pytest.MonkeyPatch, key_prefix: str, backend: LiveBackend
) -> None:
    set_environment(
        clean_environ,
        {
            "FLASK_QUOTA_KEY_PREFIX": key_prefix,
            "FLASK_QUOTA_LIMITS__search": "2/minute",
            "FLASK_QUOTA_PLANS__free": "1/minute",
            "FLASK_QUOTA_PLANS__internal": "null",
        },
    )

    app = configured_app(lambda app: app.config.from_prefixed_env())
    backend.attach(app)

    assert state_of(app).settings.named_limits == {"search": "2/minute"}
    assert state_of(app).settings.plans == {"free": "1/minute", "internal": None}
    assert statuses(app, "/search", 3) == [200, 200, 429]
    assert statuses(app, "/items?plan=free", 2) == [200, 429]
    assert statuses(app, "/items?plan=internal", 10) == [200] * 10


def test_flask_quota_enabled_false_turns_every_limit_off(
    clean_environ: pytest.MonkeyPatch, key_prefix: str, backend: LiveBackend
) -> None:
    set_environment(
        clean_environ,
        {
            "FLASK_QUOTA_ENABLED": "false",
            "FLASK_QUOTA_KEY_PREFIX": key_prefix,
            "FLASK_QUOTA_GLOBAL_LIMITS": '["1/minute"]',
            "FLASK_QUOTA_LIMITS": '{"search": "1/minute"}',
        },
    )

    app = configured_app(lambda app: app.config.from_prefixed_env())
    backend.attach(app)
    client = app.test_client()
    responses = [client.get("/search", headers={"X-Org-ID": "acme"}) for _ in range(5)]

    assert app.config["QUOTA_ENABLED"] is False
    assert [(r.status_code, limit_header(r)) for r in responses] == [(200, None)] * 5
    assert backend.stored_keys(app) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("in_flight:4:8", InFlight(4, 8, 0.1)),
        ("in_flight:4:8:0.25", InFlight(4, 8, 0.25)),
        ("  in_flight:0:1  ", InFlight(0, 1, 0.1)),
    ],
)
def test_flask_quota_adaptive_spells_the_built_in_in_flight_factor(
    clean_environ: pytest.MonkeyPatch, value: str, expected: InFlight
) -> None:
    clean_environ.setenv("FLASK_QUOTA_ADAPTIVE", value)

    app = configured_app(lambda app: app.config.from_prefixed_env())

    assert state_of(app).settings.adaptive == expected


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("FLASK_QUOTA_ENABLED", "maybe", "QUOTA_ENABLED 'maybe'"),
        ("FLASK_QUOTA_FAIL_MODE", "sideways", "QUOTA_FAIL_MODE 'sideways'"),
        ("FLASK_QUOTA_STRATEGY", "random", "QUOTA_STRATEGY 'random'"),
        ("FLASK_QUOTA_STORAGE_URI", "mongodb://db", "QUOTA_STORAGE_URI 'mongodb://db'"),
        ("FLASK_QUOTA_STORAGE_TIMEOUT", "-1", "QUOTA_STORAGE_TIMEOUT -1"),
        ("FLASK_QUOTA_STATSD_PORT", "eighty", "QUOTA_STATSD_PORT 'eighty'"),
        ("FLASK_QUOTA_IPV6_PREFIX", "129", "QUOTA_IPV6_PREFIX 129"),
        ("FLASK_QUOTA_HEADERS_STYLE", "fancy", "QUOTA_HEADERS_STYLE 'fancy'"),
        ("FLASK_QUOTA_KEY_PREFIX", '""', "QUOTA_KEY_PREFIX ''"),
        ("FLASK_QUOTA_DEFAULT_LIMITS", "10/fortnight", "QUOTA_DEFAULT_LIMITS: invalid limit"),
        ("FLASK_QUOTA_GLOBAL_LIMITS", '["5/minute", 7]', "QUOTA_GLOBAL_LIMITS ['5/minute', 7]"),
        ("FLASK_QUOTA_PLANS", "free", "QUOTA_PLANS 'free'"),
        ("FLASK_QUOTA_PLANS", '{"pro": "0/second"}', "QUOTA_PLANS['pro']: invalid limit"),
        ("FLASK_QUOTA_PLANS__pro", "5 per fortnight", "QUOTA_PLANS['pro']: invalid limit"),
        ("FLASK_QUOTA_LIMITS", '["search"]', "QUOTA_LIMITS ['search']"),
        ("FLASK_QUOTA_ADAPTIVE", "in_flight:4", "QUOTA_ADAPTIVE 'in_flight:4'"),
        ("FLASK_QUOTA_ADAPTIVE", "42", "QUOTA_ADAPTIVE 42"),
        ("FLASK_QUOTA_ADAPTIVE", "in_flight:8:4", "QUOTA_ADAPTIVE 'in_flight:8:4': invalid"),
        ("FLASK_QUOTA_ADAPTIVE", "in_flight:4:8:1.5", "QUOTA_ADAPTIVE 'in_flight:4:8:1.5': "),
        ("FLASK_QUOTA_ADAPTIVE", "in_flight:4:8:0", "QUOTA_ADAPTIVE 'in_flight:4:8:0': "),
        ("FLASK_QUOTA_ADAPTIVE", "in_flight:4:8:1.2.3", "QUOTA_ADAPTIVE 'in_flight:4:8:1.2.3'"),
    ],
)
def test_a_bad_environment_variable_fails_at_init_app_naming_the_key(
    clean_environ: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    clean_environ.setenv(name, value)
    app = Flask(__name__)
    app.config.from_prefixed_env()

    with pytest.raises(ConfigurationError, match=re.escape(named)):
        Quota(app)
