"""``flask quota list`` and ``reset --limit`` for callable limits: plans, and opaque callables.

A stored key names scope, algorithm and period, not the count, and the CLI cannot call a
callable limit outside a request. A plan can only answer a ``QUOTA_PLANS`` string, so the CLI
peeks under each plan that fits the counter; another callable's counters show by name only.
On the manual clock (16:00:00 UTC), on ``memory://`` and on real Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request

from flask_quota import Quota, by_tenant
from tests.live.conftest import LiveBackend
from tests.live.test_plans import PLANS, answers, current_plan

Row = tuple[str, str, str, int | None, int | None, int | None]


def listed(app: Flask, *args: str) -> list[Row]:
    """``flask quota list --json``: (identity, name, limit, used, remaining, reset) rows."""
    result = app.test_cli_runner().invoke(args=["quota", "list", "--json", *args])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return [
        (r["identity"], r["name"], r["limit"], r["used"], r["remaining"], r["reset"]) for r in rows
    ]


def plan_view(
    make_app: Callable[..., Flask],
    backend: LiveBackend,
    plans: dict[str, str | None],
    **limit_options: Any,
) -> Flask:
    """``/items`` limited by the tenant's plan among ``plans``, per tenant (fixed_window)."""
    app = make_app(QUOTA_PLANS=plans, QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)

    @app.get("/items")
    @quota.limit(quota.plan(by=current_plan), key=by_tenant, **limit_options)
    def items() -> str:
        return "items"

    backend.attach(app)
    return app


def test_a_named_plan_is_listed_by_name_with_its_counts(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    # free and pro differ in period: each counter fits one plan only.
    plans: dict[str, str | None] = {"free": "5/minute", "pro": "100/hour", "internal": None}
    app = plan_view(make_app, backend, plans, name="plan")
    client = app.test_client()
    answers(client, "globex", 2)  # free
    answers(client, "acme", 3)  # pro
    answers(client, "hooli", 3)  # internal: unlimited, no counter

    assert listed(app) == [
        ("tenant:acme", "plan", "100/hour", 3, 97, 3600),
        ("tenant:globex", "plan", "5/minute", 2, 3, 60),
    ]


def test_an_unnamed_plan_is_listed_under_its_derived_name(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = plan_view(make_app, backend, {"free": "5/minute", "pro": "100/hour"})
    answers(app.test_client(), "globex", 2)

    assert listed(app) == [("tenant:globex", "items:5/minute", "5/minute", 2, 3, 60)]


def test_plans_a_counter_could_be_under_are_all_shown(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    # free (2/minute) and pro (5/minute) share scope, algorithm and period: only the request
    # knows which applied, so remaining is not shown; used and reset are when every plan
    # gives the same.
    app = plan_view(make_app, backend, PLANS, name="plan")
    client = app.test_client()
    answers(client, "globex", 1)  # free
    answers(client, "acme", 4)  # pro: more than free allows

    assert listed(app) == [
        ("tenant:acme", "plan", "2/minute|5/minute", None, None, 60),
        ("tenant:globex", "plan", "2/minute|5/minute", 1, None, 60),
    ]
    text = app.test_cli_runner().invoke(args=["quota", "list", "tenant:globex"]).stdout
    assert text.splitlines()[2].split() == [
        "tenant:globex",
        "plan",
        "2/minute|5/minute",
        "fixed_window",
        "1",
        "-",
        "60",
    ]


def test_an_opaque_callable_limit_is_listed_by_its_name(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = make_app(QUOTA_STRATEGY="fixed_window")
    quota = Quota(app)

    @app.get("/items")
    @quota.limit(lambda: request.args.get("tier", "3/minute"), key=by_tenant, name="tier")
    def items() -> str:
        return "items"

    @app.get("/other")
    @quota.limit(lambda: "3/minute", key=by_tenant)
    def other() -> str:
        return "other"

    backend.attach(app)
    client = app.test_client()
    answers(client, "acme", 2)
    answers(client, "acme", 1, "/other")

    # What it answers is known only per request: name, no numbers.
    assert listed(app) == [
        ("tenant:acme", "other:<dynamic>", "?", None, None, None),
        ("tenant:acme", "tier", "?", None, None, None),
    ]


def test_reset_clears_a_plan_counter_by_its_name(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = plan_view(make_app, backend, {"free": "5/minute", "pro": "100/hour"})
    client = app.test_client()
    answers(client, "globex", 2)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["quota", "reset", "tenant:globex", "--limit", "items:5/minute"])

    assert result.exit_code == 0, result.output
    assert result.stdout == "Cleared 1 counters of tenant:globex.\n"
    assert listed(app) == []
    assert answers(client, "globex", 1) == [(200, 5)]
    assert listed(app) == [("tenant:globex", "items:5/minute", "5/minute", 1, 4, 60)]


@pytest.mark.parametrize(("name", "shown"), [("plan", "plan"), (None, "items:<dynamic>")])
def test_reset_by_the_name_list_shows_clears_every_counter_of_the_plan(
    make_app: Callable[..., Flask], backend: LiveBackend, name: str | None, shown: str
) -> None:
    app = plan_view(make_app, backend, PLANS, **({"name": name} if name else {}))
    client = app.test_client()
    answers(client, "acme", 2)
    answers(client, "globex", 1)
    assert [row[1] for row in listed(app, "tenant:acme")] == [shown]

    result = app.test_cli_runner().invoke(args=["quota", "reset", "tenant:acme", "--limit", shown])

    assert result.exit_code == 0, result.output
    assert listed(app) == [("tenant:globex", shown, "2/minute|5/minute", 1, None, 60)]


def test_limits_says_where_a_plan_and_a_callable_get_their_string(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = plan_view(make_app, backend, PLANS, name="plan")
    quota: Quota = app.extensions["quota"]

    def tier() -> str:
        return "3/minute"

    @app.get("/other")
    @quota.limit(tier, key=by_tenant)
    def other() -> str:
        return "other"

    result = app.test_cli_runner().invoke(args=["quota", "limits", "--json"])
    rows = [r for r in json.loads(result.output) if r["endpoint"] != "static"]

    assert [(r["endpoint"], r["name"], r["limit"]) for r in rows] == [
        ("items", "plan", "<per request: QUOTA_PLANS>"),
        (
            "other",
            "other:<dynamic>",
            "<per request: test_limits_says_where_a_plan_and_a_callable_get_their_string"
            ".<locals>.tier>",
        ),
    ]
