"""Black-box tests of the public contract (API.md), one group per section.

Only what API.md names is used: ``flask_quota``'s exports, ``flask_quota.signals``, Flask's test
client and CLI runner, and ``QUOTA_*`` config keys. Time is frozen by patching ``time.time``
(the ``memory://`` storage and the retry timer read it at each call), so windows move only when a
test says so. A few unavoidable exceptions, as the existing suite does it: a leaky-bucket
delay is recorded rather than slept (``app.extensions["quota.state"].sleep``), the StatsD
client is wrapped so its socket is closed at the end of the test, and the default storage
timeout is read from the app's Redis client (``app.extensions["quota.state"].storage``) rather
than timed. Durations are bounded only from above, generously, to catch a hang.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from flask import Blueprint, Flask, g, request
from werkzeug.exceptions import TooManyRequests

from flask_quota import (
    GLOBAL,
    ConfigurationError,
    Quota,
    RateLimitExceeded,
    by_api_key,
    by_endpoint,
    by_ip,
    by_tenant,
    by_user,
    signals,
)
from tests.conftest import HungRedis

#: 2025-11-24T16:00:00Z: on a minute, hour and two-hour boundary.
START = 1_764_000_000.0
IP1 = "203.0.113.9"
IP2 = "198.51.100.7"
DEAD = "redis://127.0.0.1:1/0"
HASHED_INTERNAL = "key:sha256:" + hashlib.sha256(b"internal").hexdigest()[:16]
BODY_FIELDS = {"error", "message", "limit", "remaining", "reset", "resetAt", "retryAfter", "policy"}
STRATEGIES = [
    "fixed_window",
    "sliding_window",
    "sliding_log",
    "token_bucket",
    "leaky_bucket",
    "gcra",
]


class FakeTime:
    """``time.time`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(time, "time", fake)
    return fake


#: The apps' StatsD sockets are closed at the end of each test (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("close_statsd_clients")


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, **config)
    return app


def get(client: Any, path: str = "/", ip: str = IP1, **kwargs: Any) -> Any:
    return client.get(path, environ_base={"REMOTE_ADDR": ip}, **kwargs)


def statuses(client: Any, path: str = "/", times: int = 1, **kwargs: Any) -> list[int]:
    return [get(client, path, **kwargs).status_code for _ in range(times)]


def one_view(
    limit: Any = "2/minute", *, quota_kwargs: dict[str, Any] | None = None, **config: Any
) -> tuple[Flask, Quota]:
    """An app with ``/`` limited by ``limit`` (fixed_window unless told) and an unlimited
    ``/free``."""
    app = make_app(**config)
    kwargs = {"strategy": "fixed_window", **(quota_kwargs or {})}
    quota = Quota(app, **kwargs)

    @app.get("/")
    @quota.limit(limit)
    def index() -> str:
        return "ok"

    @app.get("/free")
    def free() -> str:
        return "free"

    return app, quota


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cli(app: Flask, *args: str, input: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=["quota", *args], input=input)


def cli_json(app: Flask, *args: str) -> Any:
    result = cli(app, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        self.calls.append((sender, kwargs))


# -- setting up ----------------------------------------------------------------------------


def test_constructor_signature() -> None:
    params = inspect.signature(Quota).parameters
    assert list(params)[:7] == [
        "app",
        "default_limits",
        "global_limits",
        "key",
        "strategy",
        "storage_uri",
        "options",
    ]
    assert params["app"].default is None
    for name in ("default_limits", "global_limits", "key", "strategy", "storage_uri"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert tuple(params["default_limits"].default) == ()
    assert tuple(params["global_limits"].default) == ()
    assert params["key"].default is by_ip
    assert params["strategy"].default is None
    assert params["storage_uri"].default is None
    assert params["options"].kind is inspect.Parameter.VAR_KEYWORD


def test_limit_decorator_signature() -> None:
    params = inspect.signature(Quota().limit).parameters
    expected = {
        "key": None,
        "strategy": None,
        "cost": 1,
        "burst": None,
        "scope": None,
        "methods": None,
        "exempt_when": None,
        "name": None,
        "dry_run": False,
        "fail_mode": None,
    }
    assert list(params)[0] == "limit"
    for name, default in expected.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default == default


def test_registers_itself_in_app_extensions() -> None:
    app = make_app()
    quota = Quota(app)
    assert app.extensions["quota"] is quota
    later = Quota()
    other = make_app()
    later.init_app(other)
    assert other.extensions["quota"] is later


def test_keyword_arguments_override_config() -> None:
    app = make_app(
        QUOTA_HEADERS_STYLE="ietf",
        QUOTA_STRATEGY="token_bucket",
        QUOTA_STORAGE_URI=DEAD,
        QUOTA_FAIL_MODE="closed",
    )
    quota = Quota(
        app, headers_style="x-ratelimit", strategy="fixed_window", storage_uri="memory://"
    )

    @app.get("/")
    @quota.limit("2/minute")
    def index() -> str:
        return "ok"

    client = app.test_client()
    first = get(client)
    # memory:// from the keyword, not the dead Redis of the config (which would 503).
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert "RateLimit-Policy" not in first.headers
    (row,) = [r for r in cli_json(app, "limits") if r["endpoint"] == "index"]
    assert row["strategy"] == "fixed_window"


def test_options_keyword_sets_any_quota_key() -> None:
    app = make_app()
    quota = Quota(app, fail_mode="closed", storage_uri=DEAD, error_format="problem")

    @app.get("/")
    @quota.limit("2/minute")
    def index() -> str:
        return "ok"

    response = get(app.test_client())
    assert response.status_code == 503  # fail_mode="closed"
    assert response.mimetype == "application/problem+json"  # error_format="problem"


def test_one_quota_serves_several_apps() -> None:
    quota = Quota(strategy="fixed_window")

    @quota.limit("2/minute")
    def index() -> str:
        return "ok"

    apps = []
    for _ in range(2):
        app = make_app()
        app.add_url_rule("/", "index", index)
        quota.init_app(app)
        apps.append(app)
    assert statuses(apps[0].test_client(), times=3) == [200, 200, 429]
    # The second app counts on its own.
    assert statuses(apps[1].test_client(), times=3) == [200, 200, 429]
    assert apps[0].extensions["quota"] is apps[1].extensions["quota"] is quota


def test_factory_pattern_with_config_per_app() -> None:
    quota = Quota()

    @quota.limit("1/minute")
    def index() -> str:
        return "ok"

    first, second = make_app(QUOTA_ENABLED=False), make_app()
    for app in (first, second):
        app.add_url_rule("/", "index", index)
        quota.init_app(app)
    assert statuses(first.test_client(), times=3) == [200, 200, 200]
    assert statuses(second.test_client(), times=2) == [200, 429]


def test_default_limits_count_per_view_and_per_client() -> None:
    app = make_app()
    quota = Quota(app, default_limits=["2/minute"], strategy="fixed_window")
    app.add_url_rule("/a", "a", lambda: "a")
    app.add_url_rule("/b", "b", lambda: "b")
    client = app.test_client()
    assert statuses(client, "/a", 3) == [200, 200, 429]
    assert statuses(client, "/b", 2) == [200, 200]  # own counter per view
    assert statuses(client, "/a", 2, ip=IP2) == [200, 200]  # own counter per client
    assert quota is app.extensions["quota"]


def test_default_limits_skip_views_with_own_or_blueprint_limit() -> None:
    app = make_app()
    quota = Quota(app, default_limits=["1/minute"], strategy="fixed_window")

    @app.get("/own")
    @quota.limit("3/minute")
    def own() -> str:
        return "own"

    bp = Blueprint("bp", __name__)
    bp.add_url_rule("/bp", "view", lambda: "bp")
    quota.limit_blueprint(bp, "3/minute")
    app.register_blueprint(bp)
    client = app.test_client()
    assert statuses(client, "/own", 4) == [200, 200, 200, 429]
    assert statuses(client, "/bp", 4) == [200, 200, 200, 429]


def test_global_limits_one_counter_for_all_clients_and_views() -> None:
    app = make_app()
    quota = Quota(app, global_limits=["3/minute"], strategy="fixed_window")

    @app.get("/a")
    @quota.limit("100/minute")
    def a() -> str:
        return "a"

    app.add_url_rule("/b", "b", lambda: "b")
    client = app.test_client()
    assert get(client, "/a", ip=IP1).status_code == 200
    assert get(client, "/b", ip=IP2).status_code == 200
    assert get(client, "/a", ip="192.0.2.1").status_code == 200
    assert get(client, "/b", ip="192.0.2.2").status_code == 429


def test_config_default_and_global_limits() -> None:
    app = make_app(
        QUOTA_DEFAULT_LIMITS=["2/minute"],
        QUOTA_GLOBAL_LIMITS=["3/minute"],
        QUOTA_STRATEGY="fixed_window",
    )
    Quota(app)
    app.add_url_rule("/a", "a", lambda: "a")
    app.add_url_rule("/b", "b", lambda: "b")
    client = app.test_client()
    assert statuses(client, "/a", 3) == [200, 200, 429]
    assert statuses(client, "/b", 2) == [200, 429]  # global: 2 + 1 admitted


# -- limit strings -------------------------------------------------------------------------

#: A valid limit string, and the count and window (s) its most constraining limit reports.
VALID = [
    ("10/second", 10, 1),
    ("10 per second", 10, 1),
    ("5/10 seconds", 5, 10),
    ("1000/day", 1000, 86400),
    ("10/second;1000/day", 10, 1),
    ("3 per 2 hours", 3, 7200),
    ("1/month", 1, 30 * 86400),
    ("1/months", 1, 30 * 86400),
    ("2/months", 2, 30 * 86400),
    ("1/year", 1, 365 * 86400),
    ("2/years", 2, 365 * 86400),
    ("3 per 2 years", 3, 2 * 365 * 86400),
    ("10/seconds", 10, 1),
    ("5/minutes", 5, 60),
    ("5 per minute", 5, 60),
    ("1/hours", 1, 3600),
    ("7/days", 7, 86400),
]
INVALID = [
    "",
    "0/second",
    "10/second;",
    ";10/second",
    "10/second;;1/day",
    " ; ",
    "10/fortnight",
    "ten/second",
    "10",
    "-1/second",
    "1.5/second",
    "10/0 seconds",
    "10 per 0 minutes",
    "/second",
]


@pytest.mark.parametrize(("text", "count", "window"), VALID)
def test_valid_limit_strings_parse_at_decoration_into_count_and_window(
    text: str, count: int, window: int
) -> None:
    app, _ = one_view(text, QUOTA_HEADERS_STYLE="ietf")
    response = get(app.test_client())
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"].endswith(f";q={count};w={window}")


@pytest.mark.parametrize("text", INVALID)
def test_invalid_limit_strings_raise_at_decoration_naming_the_string(text: str) -> None:
    quota = Quota()
    with pytest.raises(ConfigurationError) as info:
        quota.limit(text)
    assert repr(text) in str(info.value) or f'"{text}"' in str(info.value)


@pytest.mark.parametrize("text", ["0/second", "", "10/second;", "5/fortnight"])
def test_invalid_limit_strings_raise_at_init_app(text: str) -> None:
    for key in ("QUOTA_DEFAULT_LIMITS", "QUOTA_GLOBAL_LIMITS"):
        app = make_app(**{key: [text]})
        with pytest.raises(ConfigurationError) as info:
            Quota(app)
        assert repr(text) in str(info.value)
    with pytest.raises(ConfigurationError):
        Quota(default_limits=[text])
    with pytest.raises(ConfigurationError):
        Quota(global_limits=[text])
    with pytest.raises(ConfigurationError):
        Quota().limit_blueprint(Blueprint("b", __name__), text)


def test_count_and_multiple_of_a_period(clock: FakeTime) -> None:
    app, _ = one_view("5/10 seconds")
    client = app.test_client()
    assert statuses(client, times=6) == [200] * 5 + [429]
    clock.advance(10)
    assert statuses(client) == [200]


def test_several_limits_joined_by_semicolon_each_apply(clock: FakeTime) -> None:
    app, _ = one_view("2/second;3/minute")
    client = app.test_client()
    assert statuses(client, times=3) == [200, 200, 429]
    clock.advance(1)
    assert statuses(client, times=2) == [200, 429]  # the minute limit now


def test_callable_limit_evaluated_per_request() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    def tier() -> str:
        return "3/minute" if request.headers.get("X-Tier") == "pro" else "1/minute"

    @app.get("/")
    @quota.limit(tier)
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert statuses(client, times=2) == [200, 429]
    pro = {"X-Tier": "pro"}
    assert statuses(client, times=3, ip=IP2, headers=pro) == [200, 200, 200]
    assert statuses(client, ip=IP2, headers=pro) == [429]


# -- @quota.limit keywords -----------------------------------------------------------------


def test_key_returning_none_skips_the_limit() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("1/minute", key=lambda: request.headers.get("X-Who"))
    def index() -> str:
        return "ok"

    client = app.test_client()
    skipped = [get(client) for _ in range(3)]
    assert [r.status_code for r in skipped] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in skipped[0].headers
    assert statuses(client, times=2, headers={"X-Who": "a"}) == [200, 429]
    assert statuses(client, times=1, headers={"X-Who": "b"}) == [200]


def test_custom_key_function_string_is_the_identity() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("1/minute", key=lambda: "team:blue")
    def index() -> str:
        return "ok"

    recorder = Recorder()
    client = app.test_client()
    with signals.rate_limit_exceeded.connected_to(recorder, app):
        assert statuses(client, times=2, ip=IP1) == [200, 429]
        assert statuses(client, times=1, ip=IP2) == [429]
    assert [kw["key"] for _, kw in recorder.calls] == ["team:blue", "team:blue"]


def test_cost_int() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("5/minute", cost=2)
    def index() -> str:
        return "ok"

    client = app.test_client()
    responses = [get(client) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses[:2]] == ["3", "1"]


def test_cost_callable() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("10/minute", cost=lambda: int(request.args.get("n", "1")))
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert get(client, "/?n=7").headers["X-RateLimit-Remaining"] == "3"
    assert get(client, "/?n=4").status_code == 429
    assert get(client, "/?n=3").headers["X-RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("strategy", ["token_bucket", "leaky_bucket", "gcra"])
def test_burst_is_the_bucket_capacity(strategy: str) -> None:
    app = make_app(QUOTA_MAX_DELAY=1000.0)
    quota = Quota(app, strategy=strategy)

    @app.get("/")
    @quota.limit("1/minute", burst=3)
    def index() -> str:
        return "ok"

    app.extensions["quota.state"].sleep = lambda _s: None
    client = app.test_client()
    responses = [get(client) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["X-RateLimit-Limit"] == "3"


def test_scope_shares_a_counter_between_views() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/a")
    @quota.limit("3/minute", scope="search")
    def a() -> str:
        return "a"

    @app.get("/b")
    @quota.limit("3/minute", scope="search")
    def b() -> str:
        return "b"

    client = app.test_client()
    assert statuses(client, "/a", 2) == [200, 200]
    assert statuses(client, "/b", 2) == [200, 429]
    assert statuses(client, "/a", 1) == [429]
    assert statuses(client, "/b", 1, ip=IP2) == [200]


def test_methods_limits_only_those_methods() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.route("/", methods=["GET", "POST"])
    @quota.limit("1/minute", methods=["POST"])
    def index() -> str:
        return "ok"

    client = app.test_client()
    gets = [get(client) for _ in range(3)]
    assert [r.status_code for r in gets] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in gets[0].headers
    posts = [client.post("/") for _ in range(2)]
    assert [r.status_code for r in posts] == [200, 429]


def test_exempt_when() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("1/minute", exempt_when=lambda: request.args.get("vip") == "1")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert statuses(client, "/?vip=1", 3) == [200, 200, 200]
    assert statuses(client, "/", 2) == [200, 429]


def test_name_labels_policy_headers_body_and_cli() -> None:
    app = make_app(QUOTA_HEADERS_STYLE="both")
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("1/minute", name="search")
    def index() -> str:
        return "ok"

    client = app.test_client()
    admitted = get(client)
    assert admitted.headers["RateLimit-Policy"] == '"search";q=1;w=60'
    refused = get(client)
    assert refused.get_json()["policy"] == "search"
    rows = cli_json(app, "limits")
    assert [r["name"] for r in rows if r["endpoint"] == "index"] == ["search"]
    counters = cli_json(app, "list")
    assert [(c["identity"], c["name"]) for c in counters] == [(IP1, "search")]


def test_default_name_is_derived_from_endpoint_and_limit() -> None:
    app, _ = one_view("1/minute")
    client = app.test_client()
    get(client)
    policy = get(client).get_json()["policy"]
    assert "index" in policy and "1/minute" in policy


def test_stacked_decorators_all_apply(clock: FakeTime) -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("2/second")
    @quota.limit("3/minute")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert statuses(client, times=3) == [200, 200, 429]
    clock.advance(1)
    assert statuses(client, times=2) == [200, 429]


def test_dry_run_never_refuses_reports_and_is_not_charged() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("2/minute", dry_run=True, name="trial")
    def index() -> str:
        return "ok"

    recorder = Recorder()
    client = app.test_client()
    with signals.rate_limit_exceeded.connected_to(recorder, app):
        responses = [get(client) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0", "0", "0"]
    assert len(recorder.calls) == 3
    (counter,) = cli_json(app, "list")
    assert (counter["name"], counter["used"], counter["remaining"]) == ("trial", 2, 0)


def test_quota_dry_run_for_all_limits() -> None:
    app, _ = one_view("1/minute", QUOTA_DRY_RUN=True)
    client = app.test_client()
    responses = [get(client) for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    # Evaluated and reported, not switched off.
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["0"] * 4


def test_fail_mode_on_a_limit_overrides_quota_fail_mode() -> None:
    app = make_app(QUOTA_STORAGE_URI=DEAD, QUOTA_FAIL_MODE="open")
    quota = Quota(app)

    @app.post("/login")
    @quota.limit("5/minute", fail_mode="closed")
    def login() -> str:
        return "token"

    @app.get("/search")
    @quota.limit("5/minute")
    def search() -> str:
        return "results"

    client = app.test_client()
    assert client.get("/search").status_code == 200
    assert client.post("/login").status_code == 503
    assert client.get("/search").status_code == 200


def test_bad_decorator_arguments_raise_configuration_error() -> None:
    quota = Quota()
    with pytest.raises(ConfigurationError):
        quota.limit("1/minute", strategy="bogus")
    with pytest.raises(ConfigurationError):
        quota.limit("1/minute", fail_mode="maybe")


# -- blueprints, exemptions, filters -------------------------------------------------------


def test_limit_blueprint_one_counter_per_identity_for_all_views() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")
    bp = Blueprint("api", __name__, url_prefix="/api")
    bp.add_url_rule("/a", "a", lambda: "a")
    bp.add_url_rule("/b", "b", lambda: "b")
    quota.limit_blueprint(bp, "3/minute")
    app.register_blueprint(bp)
    client = app.test_client()
    assert statuses(client, "/api/a", 2) == [200, 200]
    assert statuses(client, "/api/b", 2) == [200, 429]
    assert statuses(client, "/api/a", 1, ip=IP2) == [200]


def test_limit_blueprint_takes_the_same_options() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")
    bp = Blueprint("api", __name__)
    bp.add_url_rule("/a", "a", lambda: "a")
    quota.limit_blueprint(bp, "1/minute", key=lambda: "everyone", name="api-limit")
    app.register_blueprint(bp)
    client = app.test_client()
    assert get(client, "/a", ip=IP1).status_code == 200
    refused = get(client, "/a", ip=IP2)
    assert refused.status_code == 429
    assert refused.get_json()["policy"] == "api-limit"


def test_exempt_view_has_no_limits_at_all() -> None:
    app = make_app()
    quota = Quota(app, default_limits=["1/minute"], global_limits=["1/minute"])

    @app.get("/health")
    @quota.exempt
    def health() -> str:
        return "ok"

    responses = [get(app.test_client(), "/health") for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert "X-RateLimit-Limit" not in responses[0].headers


def test_exempt_blueprint() -> None:
    app = make_app()
    quota = Quota(app, default_limits=["1/minute"], global_limits=["1/minute"])
    bp = Blueprint("internal", __name__)
    bp.add_url_rule("/x", "x", lambda: "x")
    quota.exempt_blueprint(bp)
    app.register_blueprint(bp)
    assert statuses(app.test_client(), "/x", 3) == [200] * 3


def test_request_filter_bypasses_all_limits() -> None:
    app = make_app()
    quota = Quota(app, default_limits=["1/minute"], global_limits=["1/minute"])

    @quota.request_filter
    def trusted() -> bool:
        return request.headers.get("X-Trusted") == "yes"

    app.add_url_rule("/", "index", lambda: "ok")
    client = app.test_client()
    assert statuses(client, times=3, headers={"X-Trusted": "yes"}) == [200] * 3
    assert statuses(client, times=2) == [200, 429]


# -- key functions -------------------------------------------------------------------------


def identities(app: Flask, path: str = "/", times: int = 2, **kwargs: Any) -> list[str]:
    """The ``key`` of each rate_limit_exceeded signal over ``times`` requests."""
    recorder = Recorder()
    with signals.rate_limit_exceeded.connected_to(recorder, app):
        for _ in range(times):
            get(app.test_client(), path, **kwargs)
    return [kw["key"] for _, kw in recorder.calls]


def keyed_app(key: Callable[[], str | None], **config: Any) -> tuple[Flask, Quota]:
    app = make_app(**config)

    @app.before_request
    def authenticate() -> None:
        user = request.headers.get("X-User")
        if user:
            g.user = type("User", (), {"id": int(user)})()
        tenant = request.headers.get("X-Tenant-Var")
        if tenant:
            g.tenant_id = tenant

    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("1/minute", key=key)
    def index() -> str:
        return "ok"

    return app, quota


def test_by_ip_identity() -> None:
    app, _ = keyed_app(by_ip)
    assert identities(app, ip=IP1) == [IP1]


def test_by_ip_ipv6_counts_per_64() -> None:
    app, _ = keyed_app(by_ip)
    client = app.test_client()
    assert get(client, ip="2001:db8:1:2::1").status_code == 200
    assert get(client, ip="2001:db8:1:2:ffff::9").status_code == 429
    assert get(client, ip="2001:db8:1:3::1").status_code == 200
    assert identities(app, ip="2001:db8:1:2:aaaa::1", times=1) == ["2001:db8:1:2::/64"]


def test_quota_ipv6_prefix() -> None:
    app, _ = keyed_app(by_ip, QUOTA_IPV6_PREFIX=48)
    client = app.test_client()
    assert get(client, ip="2001:db8:1:2::1").status_code == 200
    assert get(client, ip="2001:db8:1:3::1").status_code == 429
    assert identities(app, ip="2001:db8:1:4::1", times=1) == ["2001:db8:1::/48"]


def test_by_user_identity_from_g_user() -> None:
    app, _ = keyed_app(by_user)
    assert identities(app, headers={"X-User": "42"}) == ["user:42"]
    # No g.user: the limit is skipped.
    assert statuses(app.test_client(), times=3) == [200, 200, 200]


def test_by_api_key_identity_is_hashed() -> None:
    app, _ = keyed_app(by_api_key)
    digest = hashlib.sha256(b"s3cret").hexdigest()[:16]
    assert identities(app, headers={"X-API-Key": "s3cret"}) == [f"key:sha256:{digest}"]
    assert statuses(app.test_client(), times=2) == [200, 200]  # no header: skipped


def test_quota_api_key_header() -> None:
    app, _ = keyed_app(by_api_key, QUOTA_API_KEY_HEADER="X-Token")
    client = app.test_client()
    assert statuses(client, times=2, headers={"X-API-Key": "a"}) == [200, 200]
    assert statuses(client, times=2, headers={"X-Token": "a"}) == [200, 429]


def test_by_tenant_header_and_g_tenant_id() -> None:
    app, _ = keyed_app(by_tenant)
    assert identities(app, headers={"X-Org-ID": "acme"}) == ["tenant:acme"]
    assert identities(app, headers={"X-Tenant-Var": "globex"}) == ["tenant:globex"]
    assert statuses(app.test_client(), times=2) == [200, 200]


def test_quota_tenant_header() -> None:
    app, _ = keyed_app(by_tenant, QUOTA_TENANT_HEADER="X-Team")
    assert identities(app, headers={"X-Team": "red"}) == ["tenant:red"]


def test_by_endpoint_and_global_identities() -> None:
    app, _ = keyed_app(by_endpoint)
    assert identities(app) == ["endpoint:index"]
    app, _ = keyed_app(GLOBAL)
    assert identities(app) == ["global"]
    assert GLOBAL() == "global"


def test_api_key_never_in_clear_in_cli_logs_or_exception(caplog: pytest.LogCaptureFixture) -> None:
    secret = "very-secret-key-123"
    hashed = "key:sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]
    app, _ = keyed_app(by_api_key)
    caught: list[RateLimitExceeded] = []

    @app.errorhandler(RateLimitExceeded)
    def handler(error: RateLimitExceeded) -> Any:
        caught.append(error)
        return error

    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        statuses(client, times=2, headers={"X-API-Key": secret})
    outputs = [
        cli(app, "list").output,
        cli(app, "list", "--json").output,
        cli(app, "top", "--json").output,
        cli(app, "reset", f"key:{secret}").output,
        cli(app, "block", f"key:{secret}").output,
        cli(app, "whitelist", "add", f"key:{secret}").output,
        cli(app, "whitelist", "list").output,
    ]
    # Each output and the log speak of the identity, hashed.
    assert all(hashed in text and secret not in text for text in outputs), outputs
    assert hashed in caplog.text and secret not in caplog.text
    assert caught and secret not in json.dumps(caught[0].get_response().get_json())


# -- strategies ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_by_name(strategy: str) -> None:
    # 2/second: a leaky_bucket delay (0.5 s) stays within QUOTA_MAX_DELAY.
    app = make_app(QUOTA_STRATEGY=strategy)
    quota = Quota(app)

    @app.get("/")
    @quota.limit("2/second")
    def index() -> str:
        return "ok"

    app.extensions["quota.state"].sleep = lambda _s: None
    assert statuses(app.test_client(), times=3) == [200, 200, 429]
    app2, _ = one_view("2/second", quota_kwargs={"strategy": strategy})
    app2.extensions["quota.state"].sleep = lambda _s: None
    assert statuses(app2.test_client(), times=3) == [200, 200, 429]
    assert cli_json(app2, "limits")[0]["strategy"] == strategy


def test_default_strategy_is_sliding_window() -> None:
    app = make_app()
    quota = Quota(app)

    @app.get("/")
    @quota.limit("2/minute")
    def index() -> str:
        return "ok"

    assert cli_json(app, "limits")[0]["strategy"] == "sliding_window"


def test_unknown_strategy_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Quota(make_app(QUOTA_STRATEGY="round_robin"))


def test_fixed_window_is_calendar_aligned(clock: FakeTime) -> None:
    clock.advance(45)
    app, _ = one_view("2/minute")
    client = app.test_client()
    responses = [get(client) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["X-RateLimit-Reset"] == "15"
    clock.advance(15)
    assert statuses(client) == [200]


def test_sliding_window_smooths_the_boundary(clock: FakeTime) -> None:
    app, _ = one_view("4/minute", quota_kwargs={"strategy": "sliding_window"})
    client = app.test_client()
    clock.advance(50)
    assert statuses(client, times=4) == [200] * 4
    clock.advance(15)  # 5 s into the next window: the previous one still weighs 55/60
    assert statuses(client) == [429]


def test_sliding_log_is_exact(clock: FakeTime) -> None:
    app, _ = one_view("2/minute", quota_kwargs={"strategy": "sliding_log"})
    client = app.test_client()
    assert statuses(client) == [200]
    clock.advance(30)
    assert statuses(client, times=2) == [200, 429]
    clock.advance(30)  # the first has left the last minute
    assert statuses(client, times=2) == [200, 429]


@pytest.mark.parametrize("strategy", ["token_bucket", "gcra"])
def test_bucket_holds_the_count_and_refills_at_count_per_period(
    clock: FakeTime, strategy: str
) -> None:
    app, _ = one_view("3/minute", quota_kwargs={"strategy": strategy})
    client = app.test_client()
    assert statuses(client, times=4) == [200, 200, 200, 429]  # burst defaults to the count
    clock.advance(20)
    assert statuses(client, times=2) == [200, 429]


def leaky_app(limit: str, **config: Any) -> tuple[Flask, list[float]]:
    app, _ = one_view(limit, quota_kwargs={"strategy": "leaky_bucket"}, **config)
    sleeps: list[float] = []
    app.extensions["quota.state"].sleep = sleeps.append
    return app, sleeps


def test_leaky_bucket_delays_requests_that_fit_and_sends_request_delayed() -> None:
    app, sleeps = leaky_app("10/10 seconds", QUOTA_MAX_DELAY=3.5)
    recorder = Recorder()
    with signals.request_delayed.connected_to(recorder, app):
        codes = statuses(app.test_client(), times=5)
    # Empty queue: at once; then 1 s, 2 s, 3 s; 4 s is above QUOTA_MAX_DELAY: refused.
    assert codes == [200, 200, 200, 200, 429]
    assert sleeps == pytest.approx([1.0, 2.0, 3.0])
    assert [kw["delay"] for _, kw in recorder.calls] == pytest.approx([1.0, 2.0, 3.0])
    sender, kwargs = recorder.calls[0]
    assert sender is app
    assert set(kwargs) == {"limit", "key", "delay"}
    assert kwargs["key"] == IP1


def test_leaky_bucket_max_delay_defaults_to_one_second() -> None:
    app, sleeps = leaky_app("10/10 seconds")
    assert statuses(app.test_client(), times=3) == [200, 200, 429]
    assert sleeps == pytest.approx([1.0])


def test_leaky_bucket_refuses_what_does_not_fit_the_queue() -> None:
    app = make_app(QUOTA_MAX_DELAY=100.0)
    quota = Quota(app, strategy="leaky_bucket")

    @app.get("/")
    @quota.limit("1/second", burst=3)
    def index() -> str:
        return "ok"

    sleeps: list[float] = []
    app.extensions["quota.state"].sleep = sleeps.append
    assert statuses(app.test_client(), times=4) == [200, 200, 200, 429]
    assert sleeps == pytest.approx([1.0, 2.0])


# -- evaluation ----------------------------------------------------------------------------


def test_all_or_nothing_a_refused_request_charges_no_counter() -> None:
    app = make_app()
    quota = Quota(app, global_limits=["10/minute"], strategy="fixed_window")

    @app.get("/a")
    @quota.limit("1/minute")
    def a() -> str:
        return "a"

    app.add_url_rule("/b", "b", lambda: "b")
    client = app.test_client()
    assert statuses(client, "/a", 4) == [200, 429, 429, 429]
    # Global: 1 admitted on /a + this one; the three refusals were not charged.
    assert get(client, "/b").headers["X-RateLimit-Remaining"] == "8"


def test_evaluation_order_global_first_stops_at_first_refusal() -> None:
    app = make_app()
    quota = Quota(app, global_limits=["1/minute"], strategy="fixed_window")
    bp = Blueprint("api", __name__)

    @bp.get("/a")
    @quota.limit("1/minute", name="view")
    def a() -> str:
        return "a"

    quota.limit_blueprint(bp, "1/minute", name="blueprint")
    app.register_blueprint(bp)
    client = app.test_client()
    get(client, "/a")
    refused = get(client, "/a")
    assert refused.status_code == 429
    assert refused.get_json()["policy"].startswith("global")


def test_blueprint_refuses_before_view() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")
    bp = Blueprint("api", __name__)

    @bp.get("/a")
    @quota.limit("1/minute", name="view")
    def a() -> str:
        return "a"

    quota.limit_blueprint(bp, "1/minute", name="blueprint")
    app.register_blueprint(bp)
    client = app.test_client()
    get(client, "/a")
    assert get(client, "/a").get_json()["policy"] == "blueprint"


# -- responses -----------------------------------------------------------------------------


def test_rate_limit_exceeded_is_too_many_requests() -> None:
    assert issubclass(RateLimitExceeded, TooManyRequests)


def test_refusal_body_and_retry_after() -> None:
    app, _ = one_view("2/minute")
    client = app.test_client()
    statuses(client, times=2)
    refused = get(client)
    assert refused.status_code == 429
    assert refused.mimetype == "application/json"
    body = refused.get_json()
    assert set(body) == BODY_FIELDS
    assert body["error"] == "Too Many Requests"
    assert isinstance(body["message"], str) and body["message"]
    assert (body["limit"], body["remaining"], body["reset"], body["retryAfter"]) == (2, 0, 60, 60)
    assert body["resetAt"] == iso(START + 60)
    assert refused.headers["Retry-After"] == "60"
    assert isinstance(body["policy"], str) and body["policy"]


def test_retry_after_is_when_admitted_and_reset_when_whole() -> None:
    app, _ = one_view("3/minute", quota_kwargs={"strategy": "token_bucket"})
    client = app.test_client()
    statuses(client, times=3)
    refused = get(client)
    body = refused.get_json()
    assert (body["retryAfter"], body["reset"]) == (20, 60)
    assert refused.headers["Retry-After"] == "20"


def test_retry_after_rounded_up(clock: FakeTime) -> None:
    app, _ = one_view("1/minute")
    client = app.test_client()
    clock.advance(0.5)
    statuses(client)
    refused = get(client)
    assert refused.headers["Retry-After"] == "60"  # 59.5 s, rounded up
    assert refused.get_json()["retryAfter"] == 60


def test_retry_after_only_on_refusals() -> None:
    app, _ = one_view("1/minute")
    client = app.test_client()
    admitted, refused = get(client), get(client)
    assert "Retry-After" not in admitted.headers
    assert "Retry-After" in refused.headers


def test_errorhandler_429_shapes_the_refusal() -> None:
    app, _ = one_view("1/minute")

    @app.errorhandler(429)
    def shaped(error: Any) -> Any:
        assert isinstance(error, RateLimitExceeded)
        return {"custom": True, "policy": error.policy}, 429

    client = app.test_client()
    get(client)
    refused = get(client)
    assert refused.status_code == 429
    assert refused.get_json()["custom"] is True


def test_errorhandler_rate_limit_exceeded_shapes_the_refusal() -> None:
    app, _ = one_view("1/minute")

    @app.errorhandler(RateLimitExceeded)
    def shaped(error: RateLimitExceeded) -> Any:
        return "slow down", 418

    client = app.test_client()
    get(client)
    refused = get(client)
    assert (refused.status_code, refused.get_data(as_text=True)) == (418, "slow down")


def test_problem_format() -> None:
    app, _ = one_view("1/minute", QUOTA_ERROR_FORMAT="problem")
    client = app.test_client()
    get(client)
    refused = get(client)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    body = json.loads(refused.get_data(as_text=True))
    assert set(body) == BODY_FIELDS | {"type", "title", "status", "detail"}
    assert body["status"] == 429
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert refused.headers["Retry-After"] == "60"


def test_x_ratelimit_headers_by_default() -> None:
    app, _ = one_view("2/minute")
    response = get(app.test_client())
    assert response.headers["X-RateLimit-Limit"] == "2"
    assert response.headers["X-RateLimit-Remaining"] == "1"
    assert response.headers["X-RateLimit-Reset"] == "60"
    assert "RateLimit" not in response.headers
    assert "RateLimit-Policy" not in response.headers


def test_ietf_headers() -> None:
    app = make_app(QUOTA_HEADERS_STYLE="ietf")
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("100/minute", name="search")
    def index() -> str:
        return "ok"

    response = get(app.test_client())
    assert response.headers["RateLimit-Policy"] == '"search";q=100;w=60'
    assert response.headers["RateLimit"] == '"search";r=99;t=60'
    assert "X-RateLimit-Limit" not in response.headers


def test_both_header_styles() -> None:
    app, _ = one_view("2/minute", QUOTA_HEADERS_STYLE="both")
    response = get(app.test_client())
    for name in (
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "RateLimit-Policy",
        "RateLimit",
    ):
        assert name in response.headers


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("delta", "60"), ("epoch", str(int(START) + 60)), ("iso8601", iso(START + 60))],
)
def test_reset_formats(fmt: str, expected: str) -> None:
    app, _ = one_view("2/minute", QUOTA_RESET_FORMAT=fmt)
    assert get(app.test_client()).headers["X-RateLimit-Reset"] == expected


def test_headers_enabled_false() -> None:
    app, _ = one_view("2/minute", QUOTA_HEADERS_ENABLED=False, QUOTA_HEADERS_STYLE="both")
    client = app.test_client()
    responses = [get(client) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]  # the limit still applies
    for response in responses:
        assert not [h for h in response.headers.keys() if "ratelimit" in h.lower()]


def test_headers_describe_the_least_remaining() -> None:
    app = make_app(QUOTA_HEADERS_STYLE="ietf")
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("10/minute", name="wide")
    @quota.limit("3/hour", name="narrow")
    def index() -> str:
        return "ok"

    response = get(app.test_client())
    assert response.headers["RateLimit"] == '"narrow";r=2;t=3600'


def test_headers_on_a_tie_describe_the_longest_reset() -> None:
    app = make_app(QUOTA_HEADERS_STYLE="both")
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("5/minute", name="minute")
    @quota.limit("5/hour", name="hour")
    @quota.limit("5/second", name="second")
    def index() -> str:
        return "ok"

    response = get(app.test_client())
    assert response.headers["RateLimit-Policy"] == '"hour";q=5;w=3600'
    assert response.headers["X-RateLimit-Reset"] == "3600"


def test_headers_on_every_limited_response_not_on_unlimited_ones() -> None:
    app, _ = one_view("5/minute")
    client = app.test_client()
    assert "X-RateLimit-Limit" in get(client).headers
    assert "X-RateLimit-Limit" not in get(client, "/free").headers


# -- failure of the storage ----------------------------------------------------------------


def test_fail_open_by_default_admits_and_signals() -> None:
    app, _ = one_view("1/minute", QUOTA_STORAGE_URI=DEAD)
    recorder = Recorder()
    with signals.storage_error.connected_to(recorder, app):
        assert statuses(app.test_client(), times=3) == [200, 200, 200]
    assert len(recorder.calls) == 1
    sender, kwargs = recorder.calls[0]
    assert sender is app and set(kwargs) == {"error"}


def test_fail_closed_answers_503() -> None:
    app, _ = one_view("1/minute", QUOTA_STORAGE_URI=DEAD, QUOTA_FAIL_MODE="closed")
    response = get(app.test_client())
    assert response.status_code == 503
    assert "Retry-After" in response.headers


def test_fail_local_keeps_per_process_limits() -> None:
    app, _ = one_view("2/minute", QUOTA_STORAGE_URI=DEAD, QUOTA_FAIL_MODE="local")
    assert statuses(app.test_client(), times=3) == [200, 200, 429]


def test_strictest_fail_mode_wins() -> None:
    app = make_app(QUOTA_STORAGE_URI=DEAD)
    quota = Quota(app, global_limits=["100/minute"])  # open, the default

    @app.get("/closed")
    @quota.limit("5/minute", fail_mode="closed")
    @quota.limit("5/minute", fail_mode="local", scope="other")
    def closed() -> str:
        return "x"

    @app.get("/local")
    @quota.limit("1/minute", fail_mode="local")
    def local() -> str:
        return "x"

    client = app.test_client()
    assert get(client, "/closed").status_code == 503
    assert statuses(client, "/local", 2) == [200, 429]


def test_dead_storage_costs_one_timeout_per_retry_interval(
    clock: FakeTime, hung_redis: HungRedis
) -> None:
    app, _ = one_view("1/minute", QUOTA_STORAGE_URI=hung_redis.uri, QUOTA_STORAGE_TIMEOUT=0.2)
    client = app.test_client()
    recorder = Recorder()
    with signals.storage_error.connected_to(recorder, app):
        started = time.perf_counter()
        assert statuses(client) == [200]
        assert time.perf_counter() - started < 5  # gave up on the silent server: no hang
        assert hung_redis.new_connections() == 1
        assert statuses(client, times=5) == [200] * 5
        assert hung_redis.new_connections() == 0  # the fail mode at once: nothing to wait on
        clock.advance(5.1)  # QUOTA_RETRY_INTERVAL default 5 s
        assert statuses(client) == [200]
        assert hung_redis.new_connections() == 1
    assert len(recorder.calls) == 2


def test_retry_interval_setting(clock: FakeTime) -> None:
    app, _ = one_view("1/minute", QUOTA_STORAGE_URI=DEAD, QUOTA_RETRY_INTERVAL=30)
    recorder = Recorder()
    client = app.test_client()
    with signals.storage_error.connected_to(recorder, app):
        statuses(client)
        clock.advance(10)
        statuses(client)
        assert len(recorder.calls) == 1
        clock.advance(21)
        statuses(client)
    assert len(recorder.calls) == 2


# -- lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "ip", "headers"),
    [
        ("10.0.0.0/8", "10.1.2.3", {}),
        ("203.0.113.9", IP1, {}),
        ("user:42", IP1, {"X-User": "42"}),
        ("key:internal", IP1, {"X-API-Key": "internal"}),
        (HASHED_INTERNAL, IP1, {"X-API-Key": "internal"}),
    ],
)
def test_quota_whitelist(entry: str, ip: str, headers: dict[str, str]) -> None:
    app = make_app(QUOTA_WHITELIST=[entry])

    @app.before_request
    def authenticate() -> None:
        user = request.headers.get("X-User")
        g.user = type("User", (), {"id": user})() if user else None

    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("1/minute", key=by_ip)
    @quota.limit("1/minute", key=by_user, scope="u")
    @quota.limit("1/minute", key=by_api_key, scope="k")
    def index() -> str:
        return "ok"

    client = app.test_client()
    responses = [get(client, ip=ip, headers=headers) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert statuses(client, times=2, ip=IP2) == [200, 429]


def test_stored_whitelist_via_cli() -> None:
    app, _ = one_view("1/minute")
    client = app.test_client()
    assert cli_json(app, "whitelist", "add", IP1)
    assert statuses(client, times=3) == [200] * 3
    listed = cli_json(app, "whitelist", "list")
    assert IP1 in json.dumps(listed)
    assert cli(app, "whitelist", "remove", IP1).exit_code == 0
    assert statuses(client, times=2) == [200, 429]


def test_block_defaults_to_one_hour_and_retry_after_is_time_left(clock: FakeTime) -> None:
    app, _ = one_view("100/minute")
    client = app.test_client()
    assert cli(app, "block", IP1).exit_code == 0
    refused = get(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"
    clock.advance(600)
    assert get(client).headers["Retry-After"] == "3000"
    assert get(client, ip=IP2).status_code == 200
    clock.advance(3001)
    assert get(client).status_code == 200


def test_block_for_and_unblock(clock: FakeTime) -> None:
    app, _ = one_view("100/minute")
    client = app.test_client()
    assert cli(app, "block", IP1, "--for", "120").exit_code == 0
    refused = get(client)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "120")
    assert cli(app, "unblock", IP1).exit_code == 0
    assert get(client).status_code == 200


def test_block_accepts_hashed_api_key() -> None:
    app, _ = keyed_app(by_api_key)
    digest = hashlib.sha256(b"abc").hexdigest()[:16]
    assert cli(app, "block", f"key:sha256:{digest}").exit_code == 0
    assert get(app.test_client(), headers={"X-API-Key": "abc"}).status_code == 429


# -- signals -------------------------------------------------------------------------------


def test_rate_limit_exceeded_signal_arguments() -> None:
    app, _ = one_view("1/minute")
    recorder = Recorder()
    with signals.rate_limit_exceeded.connected_to(recorder, app):
        statuses(app.test_client(), times=2)
    ((sender, kwargs),) = recorder.calls
    assert sender is app
    assert set(kwargs) == {"limit", "key", "request"}
    assert kwargs["key"] == IP1
    assert kwargs["request"].path == "/"


def test_repeat_offender_once_per_window(clock: FakeTime) -> None:
    app, _ = one_view("1/minute", QUOTA_ALERT_THRESHOLD=3, QUOTA_ALERT_WINDOW=60)
    recorder = Recorder()
    client = app.test_client()
    with signals.repeat_offender.connected_to(recorder, app):
        statuses(client, times=8)
    ((sender, kwargs),) = recorder.calls
    assert sender is app
    assert kwargs == {"key": IP1, "count": 3, "window": 60}


def test_repeat_offender_default_threshold_is_100() -> None:
    app, _ = one_view("1/hour")
    recorder = Recorder()
    client = app.test_client()
    with signals.repeat_offender.connected_to(recorder, app):
        statuses(client, times=100)
        assert recorder.calls == []
        statuses(client)
    ((_, kwargs),) = recorder.calls
    assert kwargs == {"key": IP1, "count": 100, "window": 300}


# -- metrics -------------------------------------------------------------------------------


class StatsdListener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.port: int = self.sock.getsockname()[1]

    def lines(self) -> list[str]:
        end = b"__end__"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
            marker.sendto(end, ("127.0.0.1", self.port))
        lines: list[str] = []
        while (data := self.sock.recv(65536)) != end:
            lines += data.decode().split("\n")
        return lines


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.sock.close()


def names(lines: list[str]) -> list[str]:
    return [line.split(":", 1)[0] for line in lines]


def test_metric_names(statsd: StatsdListener) -> None:
    app = make_app(QUOTA_STATSD_HOST="127.0.0.1", QUOTA_STATSD_PORT=statsd.port)
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("5/minute", name="search")
    def index() -> str:
        return "ok"

    @app.get("/dry")
    @quota.limit("1/minute", name="trial", dry_run=True)
    def dry() -> str:
        return "ok"

    @quota.request_filter
    def bypass() -> bool:
        return request.args.get("bypass") == "1"

    client = app.test_client()
    get(client)
    first = statsd.lines()
    assert "quota.allowed" in names(first)
    assert any(line.startswith("quota.check:") and line.endswith("|ms") for line in first)
    statuses(client, times=3)
    assert "quota.near_limit" not in names(statsd.lines())  # 1 of 5 left: not < 20%
    statuses(client)
    assert "quota.near_limit" in names(statsd.lines())  # 0 left
    statuses(client)
    denied = names(statsd.lines())
    assert "quota.denied" in denied and "quota.denied.search" in denied
    get(client, "/?bypass=1")
    assert "quota.bypassed" in names(statsd.lines())
    statuses(client, "/dry", 2)
    assert "quota.dry_run_denied" in names(statsd.lines())


def test_metric_prefix_and_storage_error(statsd: StatsdListener) -> None:
    app = make_app(
        QUOTA_STATSD_HOST="127.0.0.1",
        QUOTA_STATSD_PORT=statsd.port,
        QUOTA_STATSD_PREFIX="api.rl",
        QUOTA_STORAGE_URI=DEAD,
    )
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit("1/minute")(lambda: "ok"))
    get(app.test_client())
    assert "api.rl.storage_error" in names(statsd.lines())


# -- CLI -----------------------------------------------------------------------------------


def cli_app() -> tuple[Flask, Quota]:
    app = make_app(QUOTA_STRATEGY="fixed_window")

    @app.before_request
    def authenticate() -> None:
        user = request.headers.get("X-User")
        g.user = type("User", (), {"id": user})() if user else None

    quota = Quota(app, default_limits=["10/minute"])

    @app.get("/search")
    @quota.limit("5/minute", key=by_user, name="search")
    def search() -> str:
        return "s"

    @app.get("/")
    def index() -> str:
        return "i"

    return app, quota


def test_cli_limits() -> None:
    app, _ = cli_app()
    result = cli(app, "limits")
    assert result.exit_code == 0
    assert "/search" in result.output and "search" in result.output
    assert "fixed_window" in result.output
    rows = cli_json(app, "limits")
    by_rule = {r["rule"]: r for r in rows}
    assert by_rule["/search"]["strategy"] == "fixed_window"
    assert by_rule["/search"]["name"] == "search"
    assert "/" in by_rule


def test_cli_list_pattern() -> None:
    app, _ = cli_app()
    client = app.test_client()
    statuses(client, "/search", 2, headers={"X-User": "42"})
    statuses(client, "/search", 1, headers={"X-User": "7"})
    statuses(client, "/", 1)
    rows = cli_json(app, "list", "user:4*")
    assert len(rows) == 1
    row = rows[0]
    assert row["identity"] == "user:42"
    assert row["name"] == "search"
    assert (row["used"], row["remaining"]) == (2, 3)
    everyone = cli_json(app, "list")
    assert {r["identity"] for r in everyone} == {"user:42", "user:7", IP1}
    text = cli(app, "list", "user:*").stdout
    assert "user:42" in text and "user:7" in text and IP1 not in text


def test_cli_reset_identity_and_limit() -> None:
    app, _ = cli_app()
    client = app.test_client()
    assert statuses(client, "/search", 6, headers={"X-User": "42"})[-1] == 429
    assert statuses(client, "/", 10)[-1] == 200
    assert cli(app, "reset", "user:42", "--limit", "search").exit_code == 0
    assert statuses(client, "/search", 1, headers={"X-User": "42"}) == [200]
    assert statuses(client, "/", 1) == [429]
    assert cli(app, "reset", IP1, "--json").exit_code == 0
    assert statuses(client, "/", 1) == [200]


def test_cli_reset_all_asks_for_confirmation() -> None:
    app, _ = cli_app()
    client = app.test_client()
    statuses(client, "/", 10)
    declined = cli(app, "reset", "--all", input="n\n")
    assert declined.exit_code != 0
    assert statuses(client, "/", 1) == [429]
    accepted = cli(app, "reset", "--all", input="y\n")
    assert accepted.exit_code == 0
    assert statuses(client, "/", 1) == [200]
    statuses(client, "/", 10)
    assert cli(app, "reset", "--all", "--yes").exit_code == 0
    assert statuses(client, "/", 1) == [200]
    assert cli(app, "reset", "--all", "--yes", "--json").exit_code == 0


def test_cli_top() -> None:
    app, _ = cli_app()
    client = app.test_client()
    statuses(client, "/search", 9, headers={"X-User": "1"})  # 4 refusals
    statuses(client, "/search", 7, headers={"X-User": "2"})  # 2 refusals
    statuses(client, "/search", 6, headers={"X-User": "3"})  # 1 refusal
    assert cli_json(app, "top", "--limit", "2") == [
        {"identity": "user:1", "refusals": 4},
        {"identity": "user:2", "refusals": 2},
    ]
    text = cli(app, "top").stdout
    assert "user:1" in text and "user:3" in text


@pytest.mark.parametrize(
    "args",
    [
        ("limits",),
        ("list",),
        ("list", "user:*"),
        ("reset", "user:1"),
        ("reset", "--all", "--yes"),
        ("whitelist", "add", "user:9"),
        ("whitelist", "list"),
        ("whitelist", "remove", "user:9"),
        ("block", "user:9"),
        ("block", "user:8", "--for", "60"),
        ("unblock", "user:9"),
        ("top",),
        ("top", "--limit", "3"),
        ("set", "search", "1/minute"),
        ("set", "search", "1/minute", "--for", "30"),
        ("overrides",),
        ("unset", "search"),
        ("emergency", "on", "--factor", "0.5"),
        ("emergency", "off"),
    ],
)
def test_every_command_has_json(args: tuple[str, ...]) -> None:
    app, _ = cli_app()
    cli(app, "block", "user:9")  # so that unblock has something to lift
    cli(app, "set", "search", "2/minute")  # so that unset has something to drop
    cli(app, "whitelist", "add", "user:9")
    result = cli(app, *args, "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("set", "search", "bogus"), "'bogus'"),
        (("set", "search", "0/second"), "'0/second'"),
        (("reset", "user:1", "--limit", "no-such-limit"), "'no-such-limit'"),
        (("unset", "never-set"), "'never-set'"),
        (("emergency", "on", "--factor", "2"), "factor 2"),
        (("emergency", "on"), "--factor"),
        (("block", "user:1", "--for", "0"), "--for"),
        (("reset",), "IDENTITY or --all"),
        (("whitelist", "add"), "IDENTITY"),
    ],
)
def test_cli_errors_exit_non_zero_with_an_error_line(args: tuple[str, ...], mentions: str) -> None:
    app, _ = cli_app()
    result = cli(app, *args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    # The error is about the bad input, not, say, a command that does not exist.
    assert len(error_lines) == 1 and mentions in error_lines[0], error_lines


# -- plans and live changes ----------------------------------------------------------------


def test_quota_limits_name_lookup() -> None:
    app = make_app(QUOTA_LIMITS={"search": "1/minute"})
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("100/minute", name="search")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert get(client).headers["X-RateLimit-Limit"] == "1"
    assert statuses(client) == [429]


def test_quota_limits_bad_entry_fails_at_init_app() -> None:
    with pytest.raises(ConfigurationError) as info:
        Quota(make_app(QUOTA_LIMITS={"search": "0/second"}))
    assert "0/second" in str(info.value)
    with pytest.raises(ConfigurationError):
        Quota(make_app(QUOTA_PLANS={"free": "lots"}))


def test_plans() -> None:
    app = make_app(
        QUOTA_PLANS={"free": "1/minute", "pro": "3/minute", "internal": None},
        QUOTA_STRATEGY="fixed_window",
    )
    quota = Quota(app)

    def current_plan() -> str | None:
        return request.headers.get("X-Plan")

    @app.get("/")
    @quota.limit(quota.plan(by=current_plan), key=by_tenant)
    def index() -> str:
        return "ok"

    client = app.test_client()
    free = {"X-Org-ID": "a", "X-Plan": "free"}
    pro = {"X-Org-ID": "b", "X-Plan": "pro"}
    internal = {"X-Org-ID": "c", "X-Plan": "internal"}
    assert statuses(client, times=2, headers=free) == [200, 429]
    assert statuses(client, times=4, headers=pro) == [200, 200, 200, 429]
    assert statuses(client, times=5, headers=internal) == [200] * 5
    assert statuses(client, times=5, headers={"X-Org-ID": "d"}) == [200] * 5  # plan None


def test_overrides_api(clock: FakeTime) -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("100/minute", name="search")
    def index() -> str:
        return "ok"

    client = app.test_client()
    with app.app_context():
        quota.set_override("search", "2/minute")
        overrides = quota.overrides()
    assert list(overrides) == ["search"]
    assert "2/minute" in json.dumps(overrides)
    assert statuses(client, times=3) == [200, 200, 429]
    with app.app_context():
        quota.clear_override("search")
        assert quota.overrides() == {}
    assert get(client).headers["X-RateLimit-Limit"] == "100"
    with app.app_context():
        quota.set_override("search", "1/minute", ttl=30)
    assert get(client).headers["X-RateLimit-Limit"] == "1"
    clock.advance(31)
    assert get(client).headers["X-RateLimit-Limit"] == "100"
    with app.app_context():
        assert quota.overrides() == {}


def test_override_bad_limit_raises() -> None:
    app = make_app()
    quota = Quota(app)
    with app.app_context(), pytest.raises(ConfigurationError):
        quota.set_override("search", "0/second")


def test_cli_set_unset_overrides(clock: FakeTime) -> None:
    app, _ = cli_app()
    client = app.test_client()
    user = {"X-User": "1"}
    assert cli(app, "set", "search", "1/minute").exit_code == 0
    assert statuses(client, "/search", 2, headers=user) == [200, 429]
    listed = cli_json(app, "overrides")
    assert "search" in json.dumps(listed) and "1/minute" in json.dumps(listed)
    assert cli(app, "unset", "search").exit_code == 0
    assert statuses(client, "/search", 1, headers=user) == [200]
    assert cli_json(app, "overrides") in ([], {})
    assert cli(app, "set", "search", "2/minute", "--for", "10").exit_code == 0
    assert get(client, "/search", headers=user).headers["X-RateLimit-Limit"] == "2"
    clock.advance(11)
    assert get(client, "/search", headers=user).headers["X-RateLimit-Limit"] == "5"


def test_emergency_on_and_off() -> None:
    app, _ = cli_app()
    client = app.test_client()
    assert cli(app, "emergency", "on", "--factor", "0.2").exit_code == 0
    response = get(client, "/search", headers={"X-User": "1"})
    assert response.headers["X-RateLimit-Limit"] == "1"
    assert get(client, "/").headers["X-RateLimit-Limit"] == "2"
    assert cli(app, "emergency", "off").exit_code == 0
    assert get(client, "/").headers["X-RateLimit-Limit"] == "10"


def test_quota_adaptive_callable() -> None:
    factor = [1.0]
    app, _ = one_view("10/minute", QUOTA_ADAPTIVE=lambda: factor[0])
    client = app.test_client()
    assert get(client).headers["X-RateLimit-Limit"] == "10"
    factor[0] = 0.5
    assert get(client).headers["X-RateLimit-Limit"] == "5"


def test_concurrent_limits_in_flight_requests_and_releases_on_error() -> None:
    app = make_app()
    quota = Quota(app)
    inner: list[int] = []

    @app.get("/slow")
    @quota.concurrent(1, key=lambda: "one")
    def slow() -> str:
        if request.args.get("nested"):
            inner.append(app.test_client().get("/slow").status_code)
        if request.args.get("fail"):
            raise RuntimeError("boom")
        return "ok"

    client = app.test_client()
    assert client.get("/slow?nested=1").status_code == 200
    assert inner == [429]
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert client.get("/slow?fail=1").status_code == 500
    assert client.get("/slow").status_code == 200  # the slot was given back


# -- configuration -------------------------------------------------------------------------


def test_from_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_QUOTA_DEFAULT_LIMITS", "2/minute")
    monkeypatch.setenv("FLASK_QUOTA_STRATEGY", "fixed_window")
    monkeypatch.setenv("FLASK_QUOTA_HEADERS_STYLE", "ietf")
    monkeypatch.setenv("FLASK_QUOTA_LIMITS", '{"index:2/minute": "1/minute"}')
    app = make_app()
    app.config.from_prefixed_env()
    Quota(app)
    app.add_url_rule("/", "index", lambda: "ok")
    client = app.test_client()
    first = get(client)
    assert first.headers["RateLimit-Policy"].endswith(";q=1;w=60")
    assert get(client).status_code == 429


def test_from_prefixed_env_enabled_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_QUOTA_ENABLED", "false")
    app = make_app()
    app.config.from_prefixed_env()
    _, _ = one_view_on(app, "1/minute")
    assert statuses(app.test_client(), times=3) == [200] * 3


def one_view_on(app: Flask, limit: str) -> tuple[Flask, Quota]:
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit(limit)(lambda: "ok"))
    return app, quota


def test_from_file(tmp_path: Any) -> None:
    path = tmp_path / "quota.json"
    path.write_text(json.dumps({"QUOTA_DEFAULT_LIMITS": ["1/minute"], "QUOTA_WHITELIST": [IP2]}))
    app = make_app()
    app.config.from_file(str(path), load=json.load)
    Quota(app)
    app.add_url_rule("/", "index", lambda: "ok")
    client = app.test_client()
    assert statuses(client, times=2) == [200, 429]
    assert statuses(client, times=2, ip=IP2) == [200, 200]


def test_quota_enabled_false() -> None:
    app, _ = one_view("1/minute", QUOTA_ENABLED=False)
    responses = [get(app.test_client()) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert "X-RateLimit-Limit" not in responses[0].headers


def test_quota_key_prefix_namespaces_every_key(request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("key_prefix")
    app = make_app(QUOTA_STORAGE_URI=server.url, QUOTA_KEY_PREFIX=prefix)
    quota = Quota(app, global_limits=["100/minute"])

    @app.get("/")
    @quota.limit("5/minute", key=by_api_key)
    def index() -> str:
        return "ok"

    client = app.test_client()
    secret = "plain-text-secret"
    conn = redis.Redis.from_url(server.url)
    # Every key on the server, not only those matching the prefix: tests run one at a time,
    # so what is new after this test's requests and commands is what they wrote.
    before = set(conn.scan_iter())
    try:
        statuses(client, times=7, headers={"X-API-Key": secret})
        assert cli(app, "block", "user:1").exit_code == 0
        assert cli(app, "whitelist", "add", "user:2").exit_code == 0
        assert cli(app, "set", "x", "1/minute").exit_code == 0
        written = sorted(k.decode() for k in set(conn.scan_iter()) - before)
        assert len(written) >= 5, written
        assert [k for k in written if not k.startswith(f"{prefix}:")] == []
        assert not any(secret in k for k in written)
    finally:
        for key in conn.scan_iter(match=f"{prefix}*"):
            conn.delete(key)
        conn.close()
        app.extensions["quota.state"].storage.client.close()  # type: ignore[attr-defined]


def test_storage_timeout_defaults_to_a_tenth_of_a_second(hung_redis: HungRedis) -> None:
    app, _ = one_view("1/minute", QUOTA_STORAGE_URI=hung_redis.uri)
    # The value is read from the client: a wall-clock bound tight enough to tell 0.1 s from
    # 0.5 s would be flaky on a loaded machine.
    connection = app.extensions["quota.state"].storage.client.connection_pool.connection_kwargs
    assert (connection["socket_connect_timeout"], connection["socket_timeout"]) == (0.1, 0.1)
    started = time.perf_counter()
    assert statuses(app.test_client()) == [200]
    assert time.perf_counter() - started < 5  # gave up on the silent server: no hang
    assert hung_redis.new_connections() == 1
