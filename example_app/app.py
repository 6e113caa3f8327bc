"""A small multi-tenant API limited with flask-quota.

- Organisations (``X-Org-ID``) share one daily bucket per organisation, sized by their plan:
  ``free`` 1,000 calls a day, ``pro`` 100,000 (``QUOTA_PLANS``).
- Each user (``Authorization: Bearer user-<id>``) has a limit of their own on top.
- ``POST /login`` has a strict per-IP limit that refuses (503) rather than admits when the
  storage is down.
- Partners call ``/partner/...`` with an ``X-API-Key``; one bucket per key for the blueprint.
- A global limit counts every request of the app together.
- ``/health`` and ``/metrics`` are exempt.
- Every response carries ``X-Request-ID``; every error is JSON.

Configuration comes from :data:`DEFAULT_CONFIG`, then ``FLASK_*`` environment variables
(``FLASK_QUOTA_STORAGE_URI=redis://localhost:6379/0``), then the ``config`` argument of
:func:`create_app`.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from flask_quota import Quota, RateLimitExceeded, by_api_key, by_ip, by_tenant, by_user

#: Defaults; ``FLASK_QUOTA_*`` environment variables and ``create_app(config)`` override them.
DEFAULT_CONFIG: Final[Mapping[str, Any]] = {
    "QUOTA_PLANS": {"free": "1000/day", "pro": "100000/day"},
    # One counter for the whole app, all clients together.
    "QUOTA_GLOBAL_LIMITS": ["1000/second"],
    # Per client IP, for each view without a limit of its own (here: the index).
    "QUOTA_DEFAULT_LIMITS": ["60/minute"],
}

#: The tenant table: organisation id -> plan name (a key of ``QUOTA_PLANS``).
TENANTS: Final[Mapping[str, str]] = {"acme": "pro", "globex": "free"}

#: Partner API keys -> partner name.
PARTNER_KEYS: Final[Mapping[str, str]] = {
    "demo-partner-key": "Initech",
    "second-partner-key": "Umbrella",
}

#: The password every fake user logs in with.
DEMO_PASSWORD: Final = "letmein"

_BEARER_RE: Final = re.compile(r"Bearer user-([A-Za-z0-9_-]{1,64})")
_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

quota = Quota(key=by_ip)

api = Blueprint("api", __name__, url_prefix="/api")
partner = Blueprint("partner", __name__, url_prefix="/partner")


@dataclass(frozen=True, slots=True)
class User:
    """The authenticated user; ``by_user`` reads ``g.user.id``."""

    id: str


class RequestCounters:
    """The numbers ``/metrics`` shows, for this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: Counter[int] = Counter()
        self._refused_by: Counter[str] = Counter()

    def count_response(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    def count_refusal(self, policy: str) -> None:
        with self._lock:
            self._refused_by[policy] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "responses": sum(self._statuses.values()),
                "by_status": {str(status): n for status, n in sorted(self._statuses.items())},
                "rate_limited": self._statuses[429],
                "rate_limited_by_policy": dict(sorted(self._refused_by.items())),
            }


def counters() -> RequestCounters:
    counter: RequestCounters = current_app.extensions["example_app.counters"]
    return counter


# -- identity --------------------------------------------------------------------------------


def current_plan() -> str | None:
    """The plan of the request's organisation (set by :func:`authenticate`); ``quota.plan``
    maps it to a limit string through ``QUOTA_PLANS``."""
    tenant: str | None = g.get("tenant")
    return None if tenant is None else TENANTS[tenant]


def authenticate() -> None:
    """Identify the caller: ``g.user``, ``g.tenant``, ``g.partner``.

    A ``before_request`` function: flask-quota checks the limits after all of them, so
    ``by_user`` finds ``g.user`` set.

    It also turns away requests without valid credentials, before any limit is counted: a
    stranger who sends ``X-Org-ID: acme`` must not spend Acme's quota.
    """
    g.request_id = _request_id()
    match = _BEARER_RE.fullmatch(request.headers.get("Authorization", ""))
    g.user = User(id=match.group(1)) if match else None
    g.tenant = None
    g.partner = None
    if request.blueprint == "api":
        if g.user is None:
            abort(401, description="Send 'Authorization: Bearer user-<id>' (see POST /login).")
        # A real app would check that g.user belongs to the organisation.
        tenant = request.headers.get(current_app.config.get("QUOTA_TENANT_HEADER", "X-Org-ID"))
        if tenant not in TENANTS:
            abort(403, description=f"Unknown organisation; known: {', '.join(sorted(TENANTS))}.")
        g.tenant = tenant
    elif request.blueprint == "partner":
        key = request.headers.get(current_app.config.get("QUOTA_API_KEY_HEADER", "X-API-Key"))
        if key not in PARTNER_KEYS:
            abort(401, description="Send a valid partner key in 'X-API-Key'.")
        g.partner = PARTNER_KEYS[key]


def _request_id() -> str:
    """The client's ``X-Request-ID`` if it is a sane token, else a new one."""
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex


# -- views -----------------------------------------------------------------------------------

# Every API view, counted together: one daily bucket per organisation, sized by its plan.
quota.limit_blueprint(api, quota.plan(by=current_plan), key=by_tenant)
# And one per user, over all the organisations they act for. Named, so operators can retune
# it with QUOTA_LIMITS = {"api-user": "..."} without editing code.
quota.limit_blueprint(api, "120/minute", key=by_user, name="api-user")
# One bucket per partner key for every partner view (the key is stored hashed, never in clear).
quota.limit_blueprint(partner, "600/minute", key=by_api_key, name="partner")


@api.get("/projects")
def list_projects() -> Response:
    return jsonify(
        organisation=g.tenant,
        plan=TENANTS[g.tenant],
        projects=[{"id": 1, "name": "rocket"}, {"id": 2, "name": "anvil"}],
    )


@api.get("/me")
def whoami() -> Response:
    return jsonify(user=g.user.id, organisation=g.tenant, plan=TENANTS[g.tenant])


@partner.get("/v1/catalogue")
def catalogue() -> Response:
    return jsonify(partner=g.partner, items=[{"sku": "A-1"}, {"sku": "B-2"}])


def index() -> Response:
    return jsonify(
        name="flask-quota example",
        endpoints=["POST /login", "GET /api/projects", "GET /api/me", "GET /partner/v1/catalogue"],
    )


# Strict, per client IP, counting failed attempts too. An exact log (sliding_log) is cheap at
# 5 entries; while Redis is down, refuse (503) rather than let password guessing through.
@quota.limit("5/minute", key=by_ip, strategy="sliding_log", fail_mode="closed", name="login")
def login() -> Response:
    body = request.get_json(silent=True) or {}
    user_id = str(body.get("user", ""))
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", user_id) or body.get("password") != DEMO_PASSWORD:
        abort(401, description="Wrong user or password.")
    return jsonify(token=f"user-{user_id}")


@quota.exempt
def health() -> Response:
    return jsonify(status="ok")


@quota.exempt
def metrics() -> Response:
    return jsonify(counters().snapshot())


# -- errors and response headers -------------------------------------------------------------


def rate_limited(error: RateLimitExceeded) -> Response:
    """Keep flask-quota's 429 (JSON body, ``Retry-After``); only count it."""
    counters().count_refusal(error.policy)
    return error.get_response()


def http_error(error: HTTPException) -> Response:
    """Every other HTTP error (404, 405, 401, 503, 500...) as JSON, keeping its headers."""
    response = error.get_response()
    response.set_data(
        current_app.json.dumps(
            {
                "error": error.name,
                "message": error.description,
                "status": error.code,
                "requestId": g.get("request_id"),
            }
        )
    )
    response.mimetype = "application/json"
    return response


def finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id") or _request_id()
    counters().count_response(response.status_code)
    return response


# -- the factory -----------------------------------------------------------------------------


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``FLASK_*`` environment variables, then ``config``."""
    app = Flask(__name__)
    app.config.from_mapping(DEFAULT_CONFIG)
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["example_app.counters"] = RequestCounters()

    app.before_request(authenticate)  # runs before the limits are checked, in any order
    quota.init_app(app)

    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/login", view_func=login, methods=["POST"])
    app.add_url_rule("/health", view_func=health)
    app.add_url_rule("/metrics", view_func=metrics)
    app.register_blueprint(api)
    app.register_blueprint(partner)
    app.register_error_handler(RateLimitExceeded, rate_limited)
    app.register_error_handler(HTTPException, http_error)
    app.after_request(finish)
    return app
