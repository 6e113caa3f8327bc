"""``flask quota limits`` lists every route, like ``flask routes``: those with no limit and the
exempt ones too, so an operator never mistakes a missing route for an unlimited one.

The storage is never read (``limits`` works with Redis down, see ``test_cli.py``), so these
apps keep the default ``memory://``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask
from flask.views import MethodView

from flask_quota import GLOBAL, Quota, by_user
from tests.ops.test_cli import ok

STATIC_RULE = "/static/<path:filename>"


def limits(app: Flask) -> list[dict[str, Any]]:
    """``flask quota limits --json``."""
    result = app.test_cli_runner().invoke(args=["quota", "limits", "--json"])
    rows: list[dict[str, Any]] = json.loads(ok(result))
    return rows


def summary(rows: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str | None]]:
    """(endpoint, methods, name, limit or "exempt") per row."""
    return [
        (r["endpoint"], r["methods"], r["name"], "exempt" if r["exempt"] else r["limit"])
        for r in rows
    ]


def test_routes_without_limits_are_listed_with_dashes() -> None:
    app = Flask(__name__)
    quota = Quota(app, strategy="fixed_window")

    @app.route("/items", methods=["GET", "POST"])
    def items() -> str:
        return "items"

    @app.get("/search")
    @quota.limit("5/minute", name="search")
    def search() -> str:
        return "search"

    rows = limits(app)
    text = ok(app.test_cli_runner().invoke(args=["quota", "limits"]))

    assert summary(rows) == [
        ("items", "GET,POST", None, None),
        ("search", "GET", "search", "5/minute"),
        ("static", "GET", None, "exempt"),
    ]
    unlimited = rows[0]
    assert unlimited == {
        "endpoint": "items",
        "rule": "/items",
        "methods": "GET,POST",
        "name": None,
        "limit": None,
        "strategy": None,
        "key": None,
        "scope": None,
        "dry_run": False,
        "fail_mode": None,
        "exempt": False,
    }
    assert [line.split() for line in text.splitlines()[2:]] == [
        ["items", "GET,POST", "/items", "-", "-", "-", "-", "-"],
        ["search", "GET", "/search", "search", "5/minute", "fixed_window", "by_ip", "search"],
        ["static", "GET", STATIC_RULE, "-", "exempt", "-", "-", "-"],
    ]


def test_exempt_views_and_blueprints_are_marked_exempt() -> None:
    app = Flask(__name__)
    quota = Quota(app, global_limits=["100/second"])
    internal = Blueprint("internal", __name__, url_prefix="/internal")

    @internal.get("/stats")
    def stats() -> str:
        return "stats"

    @app.get("/health")
    @quota.exempt
    def health() -> str:
        return "ok"

    quota.exempt_blueprint(internal)
    app.register_blueprint(internal)

    assert summary(limits(app)) == [
        ("health", "GET", None, "exempt"),
        ("internal.stats", "GET", None, "exempt"),
        ("static", "GET", None, "exempt"),
    ]


def test_the_static_route_shows_its_limits_when_counted() -> None:
    app = Flask(__name__)
    app.config["QUOTA_COUNT_STATIC"] = True
    Quota(app, global_limits=["100/second"])

    assert summary(limits(app)) == [("static", "GET", "global:100/second", "100/second")]


def test_a_handler_exempt_on_a_class_based_view_gets_its_own_row() -> None:
    app = Flask(__name__)
    quota = Quota(app, default_limits=["10/minute"])

    class Items(MethodView):
        def get(self) -> str:
            return "list"

        @quota.exempt
        def post(self) -> str:
            return "created"

    app.add_url_rule("/items", view_func=Items.as_view("items"))

    assert summary(limits(app)) == [
        ("items", "GET", "items:10/minute", "10/minute"),
        ("items", "POST", None, "exempt"),
        ("static", "GET", None, "exempt"),
    ]


def test_concurrency_limits_are_listed() -> None:
    app = Flask(__name__)
    quota = Quota(app)

    @app.post("/export")
    @quota.concurrent(2, key=by_user)
    def export() -> str:
        return "export"

    @app.post("/import")
    @quota.limit("1/minute", key=GLOBAL, name="imports")
    @quota.concurrent(1, name="importer")
    def import_() -> str:
        return "import"

    rows = [r for r in limits(app) if r["endpoint"] != "static"]

    assert [
        (r["endpoint"], r["name"], r["limit"], r["strategy"], r["key"], r["scope"]) for r in rows
    ] == [
        ("export", "export:concurrent:2", "2 in flight", "concurrent", "by_user", "export"),
        ("import_", "imports", "1/minute", "sliding_window", "GLOBAL", "import_"),
        ("import_", "importer", "1 in flight", "concurrent", "by_ip", "importer"),
    ]
