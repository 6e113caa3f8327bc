"""Declaring limits, through Flask's test client, on memory and on Redis.

Apps here use ``fixed_window`` unless a test is about strategies: the manual clock starts on a
minute boundary, so a ``/minute`` window has exactly 60 s left and numbers are exact.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import pytest
from flask import Blueprint, Flask, request
from flask.views import MethodView
from werkzeug.test import TestResponse

from flask_quota import Quota, _registry
from tests.flask.conftest import Backend

IP1 = "203.0.113.9"
IP2 = "198.51.100.7"
IP3 = "192.0.2.33"


def get(client: object, path: str = "/", ip: str = IP1, **kwargs: object) -> TestResponse:
    response: TestResponse = client.get(  # type: ignore[attr-defined]
        path, environ_base={"REMOTE_ADDR": ip}, **kwargs
    )
    return response


def statuses(client: object, path: str, times: int, ip: str = IP1) -> list[int]:
    return [get(client, path, ip).status_code for _ in range(times)]


def view() -> Callable[[], str]:
    """A new view function: limits are registered per function object."""

    def ok() -> str:
        return "ok"

    return ok


@pytest.fixture
def quota_app(app: Flask) -> Flask:
    app.config["QUOTA_STRATEGY"] = "fixed_window"
    return app


# -- where limits apply --------------------------------------------------------------------


def test_global_limits_are_one_counter_for_all_clients(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app, global_limits=["3/minute"])
    quota_app.add_url_rule("/a", "a", view())
    quota_app.add_url_rule("/b", "b", quota.limit("100/minute")(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    first = get(client, "/a", IP1)
    second = get(client, "/b", IP2)
    third = get(client, "/a", IP3)
    fourth = get(client, "/b", "192.0.2.200")

    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert first.headers["X-RateLimit-Remaining"] == "2"
    assert second.headers["X-RateLimit-Remaining"] == "1"
    assert fourth.status_code == 429
    assert fourth.json is not None and fourth.json["limit"] == 3


def test_limit_blueprint_is_one_counter_per_identity_across_its_views(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)
    api = Blueprint("api", __name__, url_prefix="/api")
    api.add_url_rule("/a", "a", view())
    api.add_url_rule("/b", "b", view())
    quota.limit_blueprint(api, "3/minute")
    quota_app.register_blueprint(api)
    quota_app.add_url_rule("/outside", "outside", view())
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert [get(client, p).status_code for p in ("/api/a", "/api/b", "/api/a")] == [200] * 3
    refused = get(client, "/api/b")
    other_client = get(client, "/api/a", IP2)
    outside = get(client, "/outside")

    assert refused.status_code == 429
    assert other_client.status_code == 200
    assert other_client.headers["X-RateLimit-Remaining"] == "2"
    assert outside.status_code == 200
    assert "X-RateLimit-Limit" not in outside.headers


def test_view_limit_inside_a_limited_blueprint_stacks_with_it(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)
    api = Blueprint("api", __name__, url_prefix="/api")
    api.add_url_rule("/strict", "strict", quota.limit("1/minute")(view()))
    api.add_url_rule("/open", "open", view())
    quota.limit_blueprint(api, "3/minute")
    quota_app.register_blueprint(api)
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert statuses(client, "/api/strict", 3) == [200, 429, 429]
    # The blueprint counter paid only for the admitted request.
    assert get(client, "/api/open").headers["X-RateLimit-Remaining"] == "1"


def test_limit_blueprint_covers_nested_blueprints(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    api = Blueprint("api", __name__, url_prefix="/api")
    v1 = Blueprint("v1", __name__, url_prefix="/v1")
    api.add_url_rule("/top", "top", view())
    v1.add_url_rule("/items", "items", view())
    api.register_blueprint(v1)
    quota.limit_blueprint(api, "2/minute")
    quota_app.register_blueprint(api)
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert get(client, "/api/top").status_code == 200
    assert get(client, "/api/v1/items").headers["X-RateLimit-Remaining"] == "0"
    assert get(client, "/api/v1/items").status_code == 429
    assert get(client, "/api/top").status_code == 429


def test_limit_blueprint_covers_a_blueprint_registered_under_another_name(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)
    api = Blueprint("api", __name__)
    api.add_url_rule("/items", "items", view())
    quota.limit_blueprint(api, "2/minute")
    quota_app.register_blueprint(api, url_prefix="/v1")
    quota_app.register_blueprint(api, url_prefix="/v2", name="api_v2")
    backend.attach(quota_app)
    client = quota_app.test_client()

    # All of the blueprint's views share its one counter, whichever registration serves them.
    assert [get(client, p).status_code for p in ("/v2/items", "/v1/items")] == [200, 200]
    assert get(client, "/v2/items").status_code == 429


def test_default_limits_count_per_view_and_per_client(quota_app: Flask, backend: Backend) -> None:
    Quota(quota_app, default_limits=["2/minute"])
    quota_app.add_url_rule("/x", "x", view())
    quota_app.add_url_rule("/y", "y", view())
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert statuses(client, "/x", 3) == [200, 200, 429]
    own_view = get(client, "/y")
    other_client = get(client, "/x", IP2)

    assert own_view.status_code == 200
    assert own_view.headers["X-RateLimit-Remaining"] == "1"
    assert other_client.status_code == 200
    assert other_client.headers["X-RateLimit-Remaining"] == "1"


def test_default_limits_skip_views_with_their_own_or_a_blueprint_limit(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app, default_limits=["2/minute"])
    quota_app.add_url_rule("/own", "own", quota.limit("5/minute")(view()))
    limited = Blueprint("limited", __name__, url_prefix="/limited")
    limited.add_url_rule("/z", "z", view())
    quota.limit_blueprint(limited, "4/minute")
    plain = Blueprint("plain", __name__, url_prefix="/plain")
    plain.add_url_rule("/w", "w", view())
    quota_app.register_blueprint(limited)
    quota_app.register_blueprint(plain)
    backend.attach(quota_app)
    client = quota_app.test_client()

    own = [get(client, "/own") for _ in range(3)]
    blueprint = [get(client, "/limited/z") for _ in range(3)]

    assert [r.status_code for r in own] == [200, 200, 200]
    assert own[-1].headers["X-RateLimit-Limit"] == "5"
    assert own[-1].headers["X-RateLimit-Remaining"] == "2"
    assert [r.status_code for r in blueprint] == [200, 200, 200]
    assert blueprint[-1].headers["X-RateLimit-Limit"] == "4"
    # A blueprint without a limit of its own gets the defaults.
    assert statuses(client, "/plain/w", 3) == [200, 200, 429]


def test_stacked_limits_all_apply(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)

    @quota_app.route("/")
    @quota.limit("2/minute")
    @quota.limit("3/hour")
    def index() -> str:
        return "ok"

    backend.attach(quota_app)
    client = quota_app.test_client()

    first = get(client)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert get(client).status_code == 200
    by_minute = get(client)
    backend.clock.advance(60)
    assert get(client).status_code == 200
    by_hour = get(client)

    assert by_minute.status_code == 429
    assert by_minute.json is not None and by_minute.json["limit"] == 2
    assert by_hour.status_code == 429
    assert by_hour.json is not None and by_hour.json["limit"] == 3
    assert by_hour.json["retryAfter"] == 3600 - 60


@pytest.mark.parametrize("strategy", ["fixed_window", "token_bucket", "gcra", "sliding_log"])
@pytest.mark.parametrize("order", ["tight first", "tight last"])
def test_stacked_limits_with_one_period_keep_their_own_counters(
    quota_app: Flask, backend: Backend, strategy: str, order: str
) -> None:
    quota = Quota(quota_app, strategy=strategy)
    limits = ["2/minute", "5/minute"] if order == "tight first" else ["5/minute", "2/minute"]
    index = view()
    for limit in reversed(limits):
        index = quota.limit(limit)(index)
    quota_app.add_url_rule("/", "index", index)
    backend.attach(quota_app)
    client = quota_app.test_client()

    responses = [get(client) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["X-RateLimit-Remaining"] == "1"


def test_stacked_method_limit_counts_only_its_methods(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)

    @quota_app.route("/", methods=["GET", "POST"])
    @quota.limit("10/minute")
    @quota.limit("2/minute", methods=["POST"])
    def index() -> str:
        return "ok"

    backend.attach(quota_app)
    client = quota_app.test_client()

    reads = [client.get("/").status_code for _ in range(3)]
    writes = [client.post("/").status_code for _ in range(3)]

    assert reads == [200, 200, 200]
    assert writes == [200, 200, 429]


def test_stacked_costly_limit_does_not_charge_its_neighbour(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)

    @quota_app.route("/")
    @quota.limit("4/minute")
    @quota.limit("1000/minute", cost=10)
    def index() -> str:
        return "ok"

    backend.attach(quota_app)
    client = quota_app.test_client()

    assert statuses(client, "/", 5) == [200, 200, 200, 200, 429]


def test_limits_on_method_view_methods_count_those_methods(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)

    class Items(MethodView):
        @quota.limit("1/minute")
        def get(self) -> str:
            return "list"

        @quota.limit("2/minute")
        def post(self) -> str:
            return "created"

    quota_app.add_url_rule("/items", view_func=Items.as_view("items"))
    backend.attach(quota_app)
    client = quota_app.test_client()

    reads = [client.get("/items").status_code for _ in range(2)]
    head = client.head("/items").status_code
    writes = [client.post("/items").status_code for _ in range(3)]

    assert reads == [200, 429]
    assert head == 429  # Flask answers HEAD with get()
    assert writes == [200, 200, 429]


def test_method_view_decorators_limit_every_method_together(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)

    class Items(MethodView):
        decorators = [quota.limit("2/minute")]

        def get(self) -> str:
            return "list"

        def post(self) -> str:
            return "created"

    quota_app.add_url_rule("/items", view_func=Items.as_view("items"))
    backend.attach(quota_app)
    client = quota_app.test_client()

    statuses = [client.get("/items").status_code, client.post("/items").status_code]

    assert statuses == [200, 200]
    assert client.post("/items").status_code == 429


def test_view_wrapped_by_another_decorator_keeps_its_limit(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)

    def login_required(function: Callable[[], str]) -> Callable[[], str]:
        @functools.wraps(function)
        def wrapper() -> str:
            return function()

        return wrapper

    @quota_app.route("/inner")
    @login_required
    @quota.limit("1/minute")
    def inner() -> str:
        return "ok"

    @quota_app.route("/outer")
    @quota.limit("1/minute")
    @login_required
    def outer() -> str:
        return "ok"

    backend.attach(quota_app)
    client = quota_app.test_client()

    assert statuses(client, "/inner", 2) == [200, 429]
    assert statuses(client, "/outer", 2) == [200, 429]


def test_key_returning_none_skips_the_limit(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)

    @quota_app.route("/")
    @quota.limit("1/minute", key=lambda: request.headers.get("X-Client"))
    def index() -> str:
        return "ok"

    backend.attach(quota_app)
    client = quota_app.test_client()

    anonymous = [client.get("/") for _ in range(3)]
    alice = [client.get("/", headers={"X-Client": "alice"}) for _ in range(2)]
    bob = client.get("/", headers={"X-Client": "bob"})

    assert [r.status_code for r in anonymous] == [200, 200, 200]
    assert all("X-RateLimit-Limit" not in r.headers for r in anonymous)
    assert [r.status_code for r in alice] == [200, 429]
    assert bob.status_code == 200


# -- how a limit counts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "reset_after_one"),
    [
        ("fixed_window", "60"),
        ("sliding_log", "60"),
        ("token_bucket", "20"),
        ("gcra", "20"),
    ],
)
def test_strategy_per_limit(
    quota_app: Flask, backend: Backend, strategy: str, reset_after_one: str
) -> None:
    quota = Quota(quota_app, strategy="sliding_window")
    quota_app.add_url_rule("/", "index", quota.limit("3/minute", strategy=strategy)(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    responses = [get(client) for _ in range(4)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["X-RateLimit-Reset"] == reset_after_one
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]


def test_strategy_default_is_sliding_window(app: Flask, backend: Backend) -> None:
    quota = Quota(app)
    app.add_url_rule("/", "index", quota.limit("3/minute")(view()))
    backend.attach(app)
    client = app.test_client()

    assert statuses(client, "/", 4) == [200, 200, 200, 429]
    backend.clock.advance(60)
    # Weighted two windows: the 3 requests of the last minute still weigh 3 as it ends...
    assert get(client).status_code == 429
    backend.clock.advance(30)
    # ...half as much half a minute later...
    assert get(client).status_code == 200
    backend.clock.advance(30)
    # ...and not at all in the next window, where only the one request above still counts.
    assert statuses(client, "/", 3) == [200, 200, 429]


def test_cost_int(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    quota_app.add_url_rule("/", "index", quota.limit("5/minute", cost=2)(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    responses = [get(client) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["3", "1", "1"]


def test_cost_callable(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    cost = quota.limit("5/minute", cost=lambda: int(request.args.get("n", "1")))
    quota_app.add_url_rule("/", "index", cost(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    four = get(client, "/?n=4")
    two = get(client, "/?n=2")
    one = get(client, "/?n=1")

    assert (four.status_code, four.headers["X-RateLimit-Remaining"]) == (200, "1")
    assert (two.status_code, two.headers["X-RateLimit-Remaining"]) == (429, "1")
    assert (one.status_code, one.headers["X-RateLimit-Remaining"]) == (200, "0")


def test_burst_sets_the_bucket_capacity(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    bucket = quota.limit("1/minute", strategy="token_bucket", burst=3)
    quota_app.add_url_rule("/", "index", bucket(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    burst = [get(client) for _ in range(4)]
    backend.clock.advance(60)
    refilled = [get(client) for _ in range(2)]

    assert [r.status_code for r in burst] == [200, 200, 200, 429]
    assert burst[0].headers["X-RateLimit-Limit"] == "3"
    assert [r.headers["X-RateLimit-Remaining"] for r in burst[:3]] == ["2", "1", "0"]
    assert [r.status_code for r in refilled] == [200, 429]


def test_scope_shares_one_counter_between_views(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    quota_app.add_url_rule("/a", "a", quota.limit("3/minute", scope="search")(view()))
    quota_app.add_url_rule("/b", "b", quota.limit("3/minute", scope="search")(view()))
    quota_app.add_url_rule("/c", "c", quota.limit("3/minute")(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert [get(client, p).status_code for p in ("/a", "/b", "/a", "/b")] == [200, 200, 200, 429]
    assert get(client, "/c").headers["X-RateLimit-Remaining"] == "2"
    assert get(client, "/b", IP2).headers["X-RateLimit-Remaining"] == "2"


@pytest.mark.parametrize("methods", [["POST"], ["post"]])
def test_methods_limit_only_those_methods(
    quota_app: Flask, backend: Backend, methods: list[str]
) -> None:
    quota = Quota(quota_app)
    writes_only = quota.limit("1/minute", methods=methods)(view())
    quota_app.add_url_rule("/", "index", writes_only, methods=["GET", "POST"])
    backend.attach(quota_app)
    client = quota_app.test_client()

    reads = [client.get("/") for _ in range(3)]
    writes = [client.post("/") for _ in range(2)]

    assert [r.status_code for r in reads] == [200, 200, 200]
    assert all("X-RateLimit-Limit" not in r.headers for r in reads)
    assert [r.status_code for r in writes] == [200, 429]


def test_get_limit_covers_head(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    quota_app.add_url_rule("/", "index", quota.limit("2/minute", methods=["GET"])(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    # Flask answers HEAD by running the GET view: the GET limit must count it.
    assert [client.head("/").status_code for _ in range(2)] == [200, 200]
    assert client.get("/").status_code == 429


def test_exempt_when_bypasses_without_charging(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    internal = quota.limit("1/minute", exempt_when=lambda: request.headers.get("X-Internal") == "1")
    quota_app.add_url_rule("/", "index", internal(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    bypassed = [client.get("/", headers={"X-Internal": "1"}) for _ in range(3)]
    counted = [client.get("/") for _ in range(2)]

    assert [r.status_code for r in bypassed] == [200, 200, 200]
    assert all("X-RateLimit-Limit" not in r.headers for r in bypassed)
    assert [r.status_code for r in counted] == [200, 429]


def test_name_labels_the_limit_in_headers_and_body(quota_app: Flask, backend: Backend) -> None:
    quota_app.config["QUOTA_HEADERS_STYLE"] = "both"
    quota = Quota(quota_app)
    quota_app.add_url_rule("/", "index", quota.limit("1/minute", name="search")(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    admitted = client.get("/")
    refused = client.get("/")

    assert admitted.headers["RateLimit-Policy"] == '"search";q=1;w=60'
    assert refused.json is not None and refused.json["policy"] == "search"


def test_default_name_is_derived_from_endpoint_and_limit(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)
    quota_app.add_url_rule("/", "lookup", quota.limit("1/minute")(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    client.get("/")
    refused = client.get("/")

    assert refused.json is not None
    assert "lookup" in refused.json["policy"]
    assert "1/minute" in refused.json["policy"]


# -- callable limits -----------------------------------------------------------------------

TIERS = {"gold": "5/minute", "free": "2/minute", "internal": None}


def _tier_limit() -> str | None:
    return TIERS[request.headers.get("X-Tier", "free")]


def test_callable_limit_is_evaluated_per_request(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)
    quota_app.add_url_rule("/", "index", quota.limit(_tier_limit)(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()
    gold = {"X-Tier": "gold"}

    free = [get(client, "/", IP1) for _ in range(3)]
    paying = [get(client, "/", IP2, headers=gold) for _ in range(5)]
    upgraded = get(client, "/", IP1, headers=gold)
    unlimited = [get(client, "/", IP3, headers={"X-Tier": "internal"}) for _ in range(7)]

    assert [r.status_code for r in free] == [200, 200, 429]
    assert free[0].headers["X-RateLimit-Limit"] == "2"
    assert [r.status_code for r in paying] == [200] * 5
    assert paying[0].headers["X-RateLimit-Limit"] == "5"
    # Same identity, same period: the counter carries over to the new tier.
    assert upgraded.status_code == 200
    assert upgraded.headers["X-RateLimit-Remaining"] == "2"
    assert [r.status_code for r in unlimited] == [200] * 7
    assert "X-RateLimit-Limit" not in unlimited[0].headers


def test_callable_limit_parses_each_string_once(
    quota_app: Flask, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real_parse = _registry.parse_limits

    def counting_parse(text: str) -> object:
        parsed.append(text)
        return real_parse(text)

    monkeypatch.setattr(_registry, "parse_limits", counting_parse)
    _registry.parse_cached.cache_clear()
    quota = Quota(quota_app)
    quota_app.add_url_rule("/", "index", quota.limit(_tier_limit)(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    for tier, ip in [("gold", IP1), ("free", IP2), ("gold", IP3)] * 2:
        assert get(client, "/", ip, headers={"X-Tier": tier}).status_code == 200

    assert sorted(parsed) == ["2/minute", "5/minute"]


# -- dry run -------------------------------------------------------------------------------


def test_dry_run_reports_but_never_refuses(
    quota_app: Flask, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    quota = Quota(quota_app)
    trial = quota.limit("2/minute", strategy="token_bucket", dry_run=True)
    quota_app.add_url_rule("/", "index", trial(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    with caplog.at_level(logging.INFO, logger="flask_quota"):
        responses = [get(client) for _ in range(5)]
    would_refuse = [r for r in caplog.records if "would refuse" in r.getMessage()]

    assert [r.status_code for r in responses] == [200] * 5
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0", "0", "0"]
    assert len(would_refuse) == 3
    # Not charged when it would refuse: the bucket is as empty after 5 requests as after 2
    # (full again in 60 s, one token back after 30 s).
    assert [r.headers["X-RateLimit-Reset"] for r in responses[1:]] == ["60"] * 4
    caplog.clear()
    backend.clock.advance(30)
    with caplog.at_level(logging.INFO, logger="flask_quota"):
        after_refill = get(client)
    assert after_refill.headers["X-RateLimit-Remaining"] == "0"
    assert not [r for r in caplog.records if "would refuse" in r.getMessage()]


def test_dry_run_limit_does_not_stop_a_real_one(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app)

    @quota_app.route("/")
    @quota.limit("1/minute", dry_run=True)
    @quota.limit("3/minute")
    def index() -> str:
        return "ok"

    backend.attach(quota_app)
    client = quota_app.test_client()

    responses = [get(client) for _ in range(4)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[3].json is not None and responses[3].json["limit"] == 3


def test_dry_run_rollout_beside_a_real_limit_never_refuses_for_it(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app, strategy="token_bucket")

    @quota_app.route("/")
    @quota.limit("3/minute")
    @quota.limit("1/minute", dry_run=True)  # the tighter limit being rolled out
    def index() -> str:
        return "ok"

    backend.attach(quota_app)
    client = quota_app.test_client()

    responses = [get(client) for _ in range(4)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[3].json is not None and responses[3].json["limit"] == 3


def test_quota_dry_run_applies_to_every_limit(quota_app: Flask, backend: Backend) -> None:
    quota_app.config["QUOTA_DRY_RUN"] = True
    quota = Quota(quota_app, global_limits=["2/minute"], default_limits=["1/minute"])
    quota_app.add_url_rule("/", "index", quota.limit("1/minute")(view()))
    quota_app.add_url_rule("/plain", "plain", view())
    backend.attach(quota_app)
    client = quota_app.test_client()

    responses = [get(client, path) for path in ("/", "/", "/plain", "/plain", "/")]

    assert [r.status_code for r in responses] == [200] * 5
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["0"] * 5


# -- all-or-nothing ------------------------------------------------------------------------


def test_refused_request_charges_no_limit(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app, global_limits=["10/minute"])

    @quota_app.route("/strict")
    @quota.limit("20/minute", scope="roomy")
    @quota.limit("2/minute")
    def strict() -> str:
        return "ok"

    quota_app.add_url_rule("/roomy", "roomy", quota.limit("20/minute", scope="roomy")(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert statuses(client, "/strict", 5) == [200, 200, 429, 429, 429]
    roomy = get(client, "/roomy")

    # 2 admitted + this one: neither the global nor the shared counter paid for refusals.
    assert roomy.headers["X-RateLimit-Remaining"] == "7"
    assert roomy.headers["X-RateLimit-Limit"] == "10"
    assert get(client, "/roomy").headers["X-RateLimit-Remaining"] == "6"


def test_refused_request_charges_no_limit_by_shared_scope(
    quota_app: Flask, backend: Backend
) -> None:
    quota = Quota(quota_app)

    @quota_app.route("/strict")
    @quota.limit("20/minute", scope="roomy", name="roomy")
    @quota.limit("2/minute")
    def strict() -> str:
        return "ok"

    quota_app.add_url_rule("/roomy", "roomy", quota.limit("20/minute", scope="roomy")(view()))
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert statuses(client, "/strict", 6) == [200, 200, 429, 429, 429, 429]

    assert get(client, "/roomy").headers["X-RateLimit-Remaining"] == "17"


def test_first_refusing_limit_in_order_is_reported(quota_app: Flask, backend: Backend) -> None:
    quota = Quota(quota_app, global_limits=["2/minute"])
    api = Blueprint("api", __name__)
    api.add_url_rule("/", "index", quota.limit("2/minute", name="view")(view()))
    quota.limit_blueprint(api, "2/minute", name="blueprint")
    quota_app.register_blueprint(api)
    backend.attach(quota_app)
    client = quota_app.test_client()

    assert statuses(client, "/", 2) == [200, 200]
    refused = get(client)

    # Global, blueprint and view limits are all spent: the global one is checked first.
    assert refused.status_code == 429
    assert refused.json is not None
    assert refused.json["policy"].startswith("global")
