"""The Flask apps under test in the end-to-end benchmarks (``bench_e2e.py``, ``bench_wrk.py``).

Every app has the same shape, so the contenders differ only in the limiter:

- an authentication hook, registered first, that sets ``g.user`` from
  ``Authorization: Bearer user-<id>`` (both limiters key their per-user limit on ``g.user.id``);
- a blueprint ``api`` with one view, ``GET /api/item``, returning a small JSON body.

``create_app`` puts flask-quota, Flask-Limiter or nothing in front of it, with 1 limit (per IP,
on the view) or 4 stacked limits (global, blueprint, per user, per IP), fixed window in both,
rate-limit headers on in both. A fourth contender, ``one-round-trip``, is no limiter but its
floor: one bare ``EVALSHA`` per request and nothing else. gunicorn loads an app as
``'apps:create_app("flask-quota", "redis://...")'``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Final

import redis
from flask import Blueprint, Flask, g, request
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter.util import get_remote_address
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_quota import Quota, by_ip, by_user

PATH: Final = "/api/item"
BLUEPRINT: Final = "api"
USER_HEADER: Final = "Authorization"
USER_TOKEN_PREFIX: Final = "Bearer user-"

#: The issue's four limits, 10x larger: one IP and one user make every request, and at up to
#: ~10,000 requests/s over a 10 s run the issue's 100000/minute would refuse. Nothing refuses.
GLOBAL_LIMIT: Final = "10000000/hour"
BLUEPRINT_LIMIT: Final = "1000000/minute"
USER_LIMIT: Final = "1000000/hour"
IP_LIMIT: Final = "1000000/day"
#: The per-IP limit of the refusing variant: the first request is admitted, every later one is
#: refused by the last limit checked, after the three others have been looked at.
REFUSING_IP_LIMIT: Final = "1/day"
#: A script that does nothing: one ``EVALSHA`` of it is the floor of any one-call design.
EMPTY_SCRIPT: Final = "return 0"
#: Where the one-round-trip app keeps its redis-py client, for :func:`redis_pool`.
ROUND_TRIP_EXTENSION: Final = "bench.one_round_trip"
#: flask-quota's socket timeouts (its ``QUOTA_STORAGE_TIMEOUT`` default), in seconds.
REDIS_TIMEOUT_S: Final = 0.1

View = Callable[[], dict[str, Any]]


class Contender(enum.StrEnum):
    NONE = "none"
    QUOTA = "flask-quota"
    LIMITER = "flask-limiter"
    #: Not a limiter: one bare round trip per request (see :func:`_with_one_round_trip`).
    ONE_ROUND_TRIP = "one-round-trip"


def authenticate() -> None:
    """``g.user`` from the bearer token, as an app's own authentication would set it."""
    token = request.headers.get(USER_HEADER, "")
    user_id = token.removeprefix(USER_TOKEN_PREFIX) if token.startswith(USER_TOKEN_PREFIX) else None
    g.user = SimpleNamespace(id=user_id) if user_id else None


def item() -> dict[str, Any]:
    return {"id": 1, "name": "widget", "price": 9.5}


def user_key() -> str:
    """Flask-Limiter's per-user key; flask-quota's ``by_user`` gives the same string."""
    return f"user:{g.user.id}"


def global_key() -> str:
    return "global"


def create_app(
    contender: str,
    redis_url: str = "",
    limits: int = 4,
    refuse: bool = False,
) -> Flask:
    """The app for ``contender`` (a :class:`Contender` value), with 1 or 4 stacked limits.

    Both limiters keep their default key prefixes. Apps on one Redis may share counters (the
    benchmarks flush the server between phases); with limits this large that changes nothing.
    The one-round-trip app has no limits: ``limits`` and ``refuse`` change nothing in it.

    :param refuse: use :data:`REFUSING_IP_LIMIT` as the per-IP limit.
    """
    if limits not in (1, 4):
        raise ValueError(f"limits must be 1 or 4, not {limits!r}")
    app = Flask(__name__)
    app.before_request(authenticate)  # first: the limiters' hooks read g.user
    blueprint = Blueprint(BLUEPRINT, __name__)
    ip_limit = REFUSING_IP_LIMIT if refuse else IP_LIMIT
    view: View
    match Contender(contender):
        case Contender.NONE:
            view = item
        case Contender.QUOTA:
            view = _with_quota(app, blueprint, redis_url, limits, ip_limit)
        case Contender.LIMITER:
            view = _with_limiter(app, blueprint, redis_url, limits, ip_limit)
        case Contender.ONE_ROUND_TRIP:
            _with_one_round_trip(app, redis_url)
            view = item
    blueprint.add_url_rule("/item", view_func=view, methods=["GET"])
    app.register_blueprint(blueprint, url_prefix="/api")
    return app


def _with_quota(
    app: Flask, blueprint: Blueprint, redis_url: str, limits: int, ip_limit: str
) -> View:
    stacked = limits == 4
    quota = Quota(
        app,
        global_limits=[GLOBAL_LIMIT] if stacked else [],
        key=by_ip,
        strategy="fixed_window",
        storage_uri=redis_url,
        headers_enabled=True,
    )
    view: View = quota.limit(ip_limit, key=by_ip)(item)
    if stacked:
        quota.limit_blueprint(blueprint, BLUEPRINT_LIMIT)
        view = quota.limit(USER_LIMIT, key=by_user)(view)  # reading order: user, then IP
    return view


def _with_limiter(
    app: Flask, blueprint: Blueprint, redis_url: str, limits: int, ip_limit: str
) -> View:
    stacked = limits == 4
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=redis_url,
        strategy="fixed-window",
        headers_enabled=True,
        application_limits=(
            [ApplicationLimit(limit_provider=GLOBAL_LIMIT, key_function=global_key)]
            if stacked
            else None
        ),
    )
    # override_defaults=False keeps the blueprint's limit in force beside the view's own.
    view: View = limiter.limit(ip_limit, override_defaults=False)(item)
    if stacked:
        limiter.shared_limit(BLUEPRINT_LIMIT, scope=BLUEPRINT)(blueprint)
        view = limiter.limit(USER_LIMIT, key_func=user_key, override_defaults=False)(view)
    return view


def _with_one_round_trip(app: Flask, redis_url: str) -> None:
    """The floor of any limiter that makes one round trip per request: a ``before_request``
    hook (after :func:`authenticate`) making one ``EVALSHA`` of :data:`EMPTY_SCRIPT` and
    nothing else: no key, no decision, no headers.

    The client is built as flask-quota builds its own (same timeouts, redis-py's retries off),
    and the script registered once, at app creation.
    """
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    script = client.register_script(EMPTY_SCRIPT)

    def round_trip() -> None:
        script()  # its reply (0) is dropped: a hook returning anything but None is the response

    app.before_request(round_trip)
    app.extensions[ROUND_TRIP_EXTENSION] = client


def quota_storage(app: Flask) -> Any:
    """flask-quota's storage object of ``app`` (private state: only the benchmarks look)."""
    return app.extensions["quota.state"].storage


def redis_pool(app: Flask) -> redis.ConnectionPool | None:
    """The connection pool the app's limiter talks to Redis through (``None``: no limiter).

    Reaches into both extensions' internals; only the benchmarks use it, to count round trips.
    """
    if "quota.state" in app.extensions:
        pool: redis.ConnectionPool = quota_storage(app).client.connection_pool
        return pool
    if ROUND_TRIP_EXTENSION in app.extensions:
        client: redis.Redis = app.extensions[ROUND_TRIP_EXTENSION]
        pool = client.connection_pool
        return pool
    for limiter in app.extensions.get("limiter", ()):
        pool = limiter.storage.storage.connection_pool
        return pool
    return None
