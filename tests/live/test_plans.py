"""Tiers: ``QUOTA_PLANS`` with ``quota.plan(by=...)`` as view, blueprint and global limits, and
``QUOTA_LIMITS``, which names a limit so operators change its numbers without editing views.

Every test decides on the manual clock (``START_US`` is 2025-11-24 16:00:00 UTC, 8 h before a
calendar day ends), on ``memory://`` and on real Redis.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask, request
from flask.testing import FlaskClient

from flask_quota import ConfigurationError, Quota, by_tenant, parse_limits
from flask_quota.algorithms import Algorithm, Rule
from flask_quota.keys import limit_key, parse_key
from flask_quota.storage.base import Check
from tests.live.conftest import LiveBackend, limit_header

PLANS: dict[str, str | None] = {"free": "2/minute", "pro": "5/minute", "internal": None}
#: The plan each organisation pays for; "nobody" has none (unlimited), "umbrella" a plan
#: that QUOTA_PLANS does not know.
TENANT_PLANS: dict[str, str | None] = {
    "acme": "pro",
    "initech": "pro",
    "globex": "free",
    "hooli": "internal",
    "nobody": None,
    "umbrella": "platinum",
}


def current_plan() -> str | None:
    return TENANT_PLANS.get(request.headers.get("X-Org-ID", ""))


def org(tenant: str) -> dict[str, str]:
    return {"X-Org-ID": tenant}


def answers(
    client: FlaskClient, tenant: str, times: int, path: str = "/items"
) -> list[tuple[int, int | None]]:
    """``(status, X-RateLimit-Limit)`` of ``times`` requests of ``tenant``."""
    responses = [client.get(path, headers=org(tenant)) for _ in range(times)]
    return [(r.status_code, limit_header(r)) for r in responses]


def stored_identities(backend: LiveBackend, app: Flask) -> list[tuple[str, str, int]]:
    """``(identity, scope, period_s)`` of every limit state the app holds."""
    prefix = app.config["QUOTA_KEY_PREFIX"]
    found = []
    for key in backend.stored_keys(app):
        parsed = parse_key(key, prefix)
        assert parsed is not None, key
        if not parsed.kind.startswith("%"):
            found.append((parsed.identity, parsed.kind, parsed.period_s))
    return sorted(found)


@pytest.fixture
def plan_app(make_app: Callable[..., Flask], backend: LiveBackend) -> Flask:
    """``/items``: the tenant's plan, per tenant (``fixed_window``, so counts are exact)."""
    app = make_app(QUOTA_PLANS=PLANS, QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)

    @app.get("/items")
    @quota.limit(quota.plan(by=current_plan), key=by_tenant)
    def items() -> str:
        return "items"

    backend.attach(app)
    return app


# -- plans ----------------------------------------------------------------------------------


def test_a_view_plan_gives_each_tenant_its_plans_size_and_its_own_counter(
    plan_app: Flask, backend: LiveBackend
) -> None:
    client = plan_app.test_client()

    assert answers(client, "globex", 3) == [(200, 2), (200, 2), (429, 2)]
    assert answers(client, "acme", 6) == [(200, 5)] * 5 + [(429, 5)]
    # Same plan as acme, yet a counter of its own: acme's refusals cost initech nothing.
    assert answers(client, "initech", 6) == [(200, 5)] * 5 + [(429, 5)]
    assert answers(client, "globex", 1) == [(429, 2)]
    assert stored_identities(backend, plan_app) == [
        ("tenant:acme", "items", 60),
        ("tenant:globex", "items", 60),
        ("tenant:initech", "items", 60),
    ]


@pytest.mark.parametrize("tenant", ["hooli", "nobody"], ids=["plan-mapped-to-None", "None-plan"])
def test_a_plan_of_none_is_unlimited(plan_app: Flask, backend: LiveBackend, tenant: str) -> None:
    client = plan_app.test_client()

    responses = [client.get("/items", headers=org(tenant)) for _ in range(50)]

    assert [r.status_code for r in responses] == [200] * 50
    assert [r.headers.get("X-RateLimit-Limit") for r in responses] == [None] * 50
    assert stored_identities(backend, plan_app) == []


def test_an_unknown_plan_is_a_configuration_error_naming_it(plan_app: Flask) -> None:
    client = plan_app.test_client()

    with pytest.raises(ConfigurationError, match=r"unknown plan 'platinum'.*'free'.*'pro'"):
        client.get("/items", headers=org("umbrella"))


def test_a_blueprint_plan_counts_all_its_views_together_per_tenant(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = make_app(QUOTA_PLANS=PLANS, QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.get("/a")
    def a() -> str:
        return "a"

    @api.get("/b")
    def b() -> str:
        return "b"

    quota.limit_blueprint(api, quota.plan(by=current_plan), key=by_tenant)
    app.register_blueprint(api)
    backend.attach(app)
    client = app.test_client()

    globex = [answers(client, "globex", 1, path)[0] for path in ("/api/a", "/api/b", "/api/a")]
    acme = [answers(client, "acme", 1, path)[0] for path in ["/api/a", "/api/b"] * 3]

    assert globex == [(200, 2), (200, 2), (429, 2)]
    assert acme == [(200, 5)] * 5 + [(429, 5)]
    assert answers(client, "hooli", 10, "/api/b") == [(200, None)] * 10


def test_a_global_plan_is_one_counter_for_every_client(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    # The deployment's tier: one plan, one counter shared by every client of the app.
    app = make_app(
        QUOTA_PLANS={"small": "3/minute", "unlimited": None},
        QUOTA_STRATEGY="fixed_window",
        DEPLOYMENT_PLAN="small",
    )
    quota = Quota()
    app.config["QUOTA_GLOBAL_LIMITS"] = [
        quota.plan(by=lambda: str(app.config["DEPLOYMENT_PLAN"])),
    ]
    quota.init_app(app)

    @app.get("/items")
    def items() -> str:
        return "items"

    backend.attach(app)
    client = app.test_client()

    first = answers(client, "acme", 2)
    second = answers(client, "globex", 2)
    app.config["DEPLOYMENT_PLAN"] = "unlimited"  # by() is asked on every request
    third = answers(client, "globex", 5)

    assert first + second == [(200, 3), (200, 3), (200, 3), (429, 3)]
    assert third == [(200, None)] * 5
    assert stored_identities(backend, app) == [("global", "global", 60)]


def test_callable_default_limits_from_the_constructor(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = make_app(QUOTA_PLANS=PLANS, QUOTA_STRATEGY="fixed_window")
    quota = Quota(app, default_limits=[lambda: "2/minute" if current_plan() else None])

    @app.get("/items")
    def items() -> str:
        return "items"

    backend.attach(app)
    client = app.test_client()

    assert answers(client, "acme", 3) == [(200, 2), (200, 2), (429, 2)]
    assert answers(client, "stranger", 5) == [(200, None)] * 5
    assert quota.overrides(app=app) == {}


def test_a_plan_of_two_limits_holds_a_request_to_both(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = make_app(QUOTA_PLANS={"pro": "10/second;100000/day"}, QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)

    @app.get("/items")
    @quota.limit(quota.plan(by=current_plan), key=by_tenant)
    def items() -> str:
        return "items"

    state = backend.attach(app)
    client = app.test_client()

    def day_used() -> int:
        """The day counter, read with a peek (a check of cost 0: decided, never written)."""
        day = parse_limits("100000/day")[0]
        key = limit_key(state.settings.key_prefix, "items", "fixed_window", 86400, "tenant:acme")
        peek = Check(key=key, rule=Rule.build(Algorithm.FIXED_WINDOW, day), cost=0)
        decision = state.storage.evaluate([peek]).decisions[0]
        return decision.limit - decision.remaining

    first = [client.get("/items", headers=org("acme")) for _ in range(11)]
    used_after_first = day_used()
    backend.clock.advance(1)
    second = [client.get("/items", headers=org("acme")) for _ in range(11)]

    for burst in (first, second):
        # The second limit binds first, and the headers describe it (the least remaining).
        assert [r.status_code for r in burst] == [200] * 10 + [429]
        assert [limit_header(r) for r in burst] == [10] * 11
        assert [r.headers["X-RateLimit-Remaining"] for r in burst] == [
            *(str(n) for n in range(9, -1, -1)),
            "0",
        ]
        assert burst[-1].headers["Retry-After"] == "1"
    # Each admitted request charged the day too; the refused ones charged nothing.
    assert used_after_first == 10
    assert day_used() == 20
    assert stored_identities(backend, app) == [
        ("tenant:acme", "items", 1),
        ("tenant:acme", "items", 86400),
    ]


#: Per algorithm, for "3/day" starting 8 h before midnight UTC: the statuses of four requests,
#: the Retry-After of the refusal, and the statuses of four more one day later.
DAY_SEMANTICS: dict[str, tuple[list[int], str, list[int]]] = {
    # Calendar days: whole again at midnight (8 h on); a day later, a fresh window.
    "fixed_window": ([200, 200, 200, 429], "28800", [200, 200, 200, 429]),
    # The previous day still weighs (1 - 16 h / 24 h) x 3 = 1 a day later: one of the three
    # is still taken. A fourth request fits once that weight is <= 2/3: 8 + 8 h on.
    "sliding_window": ([200, 200, 200, 429], "57600", [200, 200, 429, 429]),
    # Each request leaves the log exactly one day after it was made.
    "sliding_log": ([200, 200, 200, 429], "86400", [200, 200, 200, 429]),
    # One unit back every 8 h; after a day the bucket is full again.
    "token_bucket": ([200, 200, 200, 429], "28800", [200, 200, 200, 429]),
    "gcra": ([200, 200, 200, 429], "28800", [200, 200, 200, 429]),
    # One request per 8 h leaves the queue; any other would wait longer than QUOTA_MAX_DELAY
    # (1 s), so is refused until its wait is 1 s: 8 h - 1 s.
    "leaky_bucket": ([200, 429, 429, 429], "28799", [200, 429, 429, 429]),
}


@pytest.mark.parametrize("strategy", sorted(DAY_SEMANTICS))
def test_a_day_quota_resets_after_a_day_as_its_algorithm_says(
    make_app: Callable[..., Flask], backend: LiveBackend, strategy: str
) -> None:
    app = make_app(QUOTA_PLANS={"free": "3/day"}, QUOTA_STRATEGY=strategy)
    quota = Quota(app)

    @app.get("/items")
    @quota.limit(quota.plan(by=current_plan), key=by_tenant)
    def items() -> str:
        return "items"

    backend.attach(app)
    client = app.test_client()
    expected_first, retry_after, expected_next_day = DAY_SEMANTICS[strategy]

    first = [client.get("/items", headers=org("globex")) for _ in range(4)]
    backend.clock.advance(86400)
    next_day = [client.get("/items", headers=org("globex")) for _ in range(4)]

    assert [r.status_code for r in first] == expected_first
    assert [limit_header(r) for r in first] == [3] * 4
    assert first[-1].headers["Retry-After"] == retry_after
    assert [r.status_code for r in next_day] == expected_next_day
    assert backend.sleeps == []  # nothing was admitted with a delay


def test_a_fixed_window_day_quota_resets_at_midnight_utc(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = make_app(QUOTA_PLANS={"free": "3/day"}, QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)

    @app.get("/items")
    @quota.limit(quota.plan(by=current_plan), key=by_tenant)
    def items() -> str:
        return "items"

    backend.attach(app)
    client = app.test_client()
    assert backend.clock.now_us % 86_400_000_000 == 16 * 3_600_000_000  # 16:00 UTC

    spent = answers(client, "globex", 4)
    backend.clock.advance(8 * 3600, us=-1)  # 23:59:59.999999
    before_midnight = answers(client, "globex", 1)
    backend.clock.advance(us=1)  # 00:00:00
    after_midnight = answers(client, "globex", 4)

    assert spent == [(200, 3)] * 3 + [(429, 3)]
    assert before_midnight == [(429, 3)]
    assert after_midnight == [(200, 3)] * 3 + [(429, 3)]


# -- QUOTA_LIMITS -------------------------------------------------------------------------------


def named_app(make_app: Callable[..., Flask], backend: LiveBackend, **config: Any) -> Flask:
    """``/search``: ``100/minute`` named ``search``, under ``4/minute`` named ``other``;
    ``/api/a``: blueprint limit ``100/minute`` named ``api``."""
    app = make_app(QUOTA_STRATEGY="fixed_window", **config)
    quota = Quota(app, key=by_tenant)

    @app.get("/search")
    @quota.limit("100/minute", name="search")
    @quota.limit("4/minute", name="other")
    def search() -> str:
        return "search"

    api = Blueprint("api", __name__, url_prefix="/api")

    @api.get("/a")
    def a() -> str:
        return "a"

    quota.limit_blueprint(api, "100/minute", name="api")
    app.register_blueprint(api)
    backend.attach(app)
    return app


def test_quota_limits_replaces_a_named_limits_numbers(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = named_app(make_app, backend, QUOTA_LIMITS={"search": "3/minute", "api": "2/minute"})
    client = app.test_client()

    search = answers(client, "acme", 4, "/search")
    api = answers(client, "acme", 3, "/api/a")

    assert search == [(200, 3)] * 3 + [(429, 3)]
    assert api == [(200, 2)] * 2 + [(429, 2)]


def test_without_quota_limits_the_codes_numbers_apply(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = named_app(make_app, backend)
    client = app.test_client()

    # "other" (4/minute) is the most constraining: the headers describe it.
    assert answers(client, "acme", 5, "/search") == [(200, 4)] * 4 + [(429, 4)]
    assert answers(client, "acme", 1, "/api/a") == [(200, 100)]


def test_quota_limits_none_removes_that_limit_only(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = named_app(make_app, backend, QUOTA_LIMITS={"other": None, "api": None})
    client = app.test_client()

    search = answers(client, "acme", 101, "/search")
    api = answers(client, "acme", 200, "/api/a")

    assert search == [(200, 100)] * 100 + [(429, 100)]
    assert api == [(200, None)] * 200


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"QUOTA_LIMITS": {"search": "5/fortnight"}}, "QUOTA_LIMITS['search']: invalid limit "),
        ({"QUOTA_LIMITS": {"search": "0/second"}}, "QUOTA_LIMITS['search']: invalid limit "),
        ({"QUOTA_LIMITS": {"search": ""}}, "QUOTA_LIMITS['search']: invalid limit "),
        ({"QUOTA_LIMITS": {"search": 5}}, "QUOTA_LIMITS {'search': 5}"),
        ({"QUOTA_LIMITS": ["search"]}, "QUOTA_LIMITS ['search']"),
        ({"QUOTA_PLANS": {"pro": "10/second;"}}, "QUOTA_PLANS['pro']: invalid limit "),
        ({"QUOTA_PLANS": {"pro": "ten/second"}}, "QUOTA_PLANS['pro']: invalid limit "),
        ({"QUOTA_PLANS": "pro"}, "QUOTA_PLANS 'pro'"),
    ],
    ids=lambda value: "" if isinstance(value, str) else repr(value),
)
def test_a_bad_named_limit_or_plan_fails_at_init_app_naming_the_key(
    make_app: Callable[..., Flask], config: dict[str, Any], named: str
) -> None:
    app = make_app(**config)

    # No view declares the name: the string is checked at start-up, not at its first request.
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        Quota(app)

    assert "quota" not in app.extensions
