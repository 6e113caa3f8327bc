"""The shipped key functions, seen through HTTP: who shares a counter, and the identity that
signals (and so the CLI and logs) speak of."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Blueprint, Flask, g, request
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_quota import GLOBAL, Quota, by_api_key, by_endpoint, by_ip, by_tenant, by_user
from flask_quota.signals import rate_limit_exceeded
from tests.flask.conftest import Backend

PROXY = "10.0.0.1"


@contextmanager
def refused_identities(app: Flask) -> Iterator[list[str]]:
    """The ``key`` of every ``rate_limit_exceeded`` the app sends while inside."""
    keys: list[str] = []

    def receiver(sender: Flask, **extra: Any) -> None:
        keys.append(extra["key"])

    with rate_limit_exceeded.connected_to(receiver, app):
        yield keys


def limited_app(app: Flask, backend: Backend, key: Any, limit: str = "1/minute") -> FlaskClient:
    quota = Quota(app, key=key, strategy="fixed_window")

    @app.route("/")
    @quota.limit(limit)
    def index() -> str:
        return "ok"

    backend.attach(app)
    return app.test_client()


def remote(ip: str, **headers: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": ip}, "headers": headers}


# -- by_ip ---------------------------------------------------------------------------------


def test_by_ip_ignores_x_forwarded_for_without_proxy_fix(app: Flask, backend: Backend) -> None:
    client = limited_app(app, backend, by_ip)

    with refused_identities(app) as refused:
        first = client.get("/", **remote(PROXY, **{"X-Forwarded-For": "203.0.113.9"}))
        spoofed = client.get("/", **remote(PROXY, **{"X-Forwarded-For": "198.51.100.7"}))

    assert (first.status_code, spoofed.status_code) == (200, 429)
    assert refused == [PROXY]


def test_by_ip_honours_proxy_fix(app: Flask, backend: Backend) -> None:
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = limited_app(app, backend, by_ip)

    with refused_identities(app) as refused:
        one = [client.get("/", **remote(PROXY, **{"X-Forwarded-For": "203.0.113.9"}))]
        one.append(client.get("/", **remote(PROXY, **{"X-Forwarded-For": "203.0.113.9"})))
        other = client.get("/", **remote(PROXY, **{"X-Forwarded-For": "198.51.100.7"}))

    assert [r.status_code for r in one] == [200, 429]
    assert other.status_code == 200
    assert refused == ["203.0.113.9"]


def test_by_ip_counts_ipv6_per_64_network(app: Flask, backend: Backend) -> None:
    client = limited_app(app, backend, by_ip)

    with refused_identities(app) as refused:
        first = client.get("/", **remote("2001:db8:1:2::1"))
        same_network = client.get("/", **remote("2001:db8:1:2:ffff:ffff:ffff:fffe"))
        next_network = client.get("/", **remote("2001:db8:1:3::1"))

    assert [first.status_code, same_network.status_code, next_network.status_code] == [
        200,
        429,
        200,
    ]
    assert refused == ["2001:db8:1:2::/64"]


def test_quota_ipv6_prefix_sets_the_network_size(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_IPV6_PREFIX"] = 48
    client = limited_app(app, backend, by_ip)

    with refused_identities(app) as refused:
        first = client.get("/", **remote("2001:db8:1:2::1"))
        same_48 = client.get("/", **remote("2001:db8:1:ff::1"))
        next_48 = client.get("/", **remote("2001:db8:2::1"))

    assert [first.status_code, same_48.status_code, next_48.status_code] == [200, 429, 200]
    assert refused == ["2001:db8:1::/48"]


def test_quota_ipv6_prefix_128_counts_each_address(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_IPV6_PREFIX"] = 128
    client = limited_app(app, backend, by_ip)

    first = client.get("/", **remote("2001:db8:1:2::1"))
    neighbour = client.get("/", **remote("2001:db8:1:2::2"))
    again = client.get("/", **remote("2001:db8:1:2::1"))

    assert [first.status_code, neighbour.status_code, again.status_code] == [200, 200, 429]


def test_by_ip_counts_ipv4_mapped_ipv6_as_ipv4(app: Flask, backend: Backend) -> None:
    client = limited_app(app, backend, by_ip)

    with refused_identities(app) as refused:
        first = client.get("/", **remote("203.0.113.9"))
        mapped = client.get("/", **remote("::ffff:203.0.113.9"))

    assert (first.status_code, mapped.status_code) == (200, 429)
    assert refused == ["203.0.113.9"]


# -- by_user, by_api_key, by_tenant ---------------------------------------------------------


def test_by_user_counts_per_g_user_id(app: Flask, backend: Backend) -> None:
    @app.before_request  # before Quota(app); see also the hook registered after it, below
    def load_user() -> None:
        user_id = request.headers.get("X-User")
        if user_id is not None:
            g.user = SimpleNamespace(id=int(user_id))

    client = limited_app(app, backend, by_user)

    with refused_identities(app) as refused:
        alice = [client.get("/", headers={"X-User": "42"}) for _ in range(2)]
        bob = client.get("/", headers={"X-User": "7"})
        anonymous = [client.get("/") for _ in range(3)]

    assert [r.status_code for r in alice] == [200, 429]
    assert bob.status_code == 200
    # No user: by_user returns None, which skips the limit.
    assert [r.status_code for r in anonymous] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in anonymous[0].headers
    assert refused == ["user:42"]


def test_a_hook_registered_after_the_extension_still_runs_before_the_check(
    app: Flask, backend: Backend
) -> None:
    client = limited_app(app, backend, by_user)

    @app.before_request  # after Quota(app): the check still waits for it
    def load_user() -> None:
        user_id = request.headers.get("X-User")
        if user_id is not None:
            g.user = SimpleNamespace(id=int(user_id))

    with refused_identities(app) as refused:
        alice = [client.get("/", headers={"X-User": "42"}) for _ in range(2)]

    assert [r.status_code for r in alice] == [200, 429]
    assert refused == ["user:42"]


def test_a_blueprint_hook_runs_before_the_check(app: Flask, backend: Backend) -> None:
    quota = Quota(app, key=by_tenant, strategy="fixed_window")
    api = Blueprint("api", __name__)

    @api.before_request  # a blueprint's hooks run after the app's
    def load_tenant() -> None:
        g.tenant_id = request.args["org"]

    @api.get("/items")
    @quota.limit("1/minute")
    def items() -> str:
        return "items"

    app.register_blueprint(api)
    backend.attach(app)
    client = app.test_client()

    statuses = [client.get(f"/items?org={org}").status_code for org in ("a", "a", "b")]

    assert statuses == [200, 429, 200]


def test_a_request_a_hook_answers_is_not_counted(app: Flask, backend: Backend) -> None:
    client = limited_app(app, backend, by_ip)

    @app.before_request
    def maintenance() -> tuple[str, int] | None:
        return ("down for maintenance", 503) if request.args.get("down") else None

    answered = [client.get("/?down=1") for _ in range(3)]
    served = [client.get("/") for _ in range(2)]

    assert [r.status_code for r in answered] == [503, 503, 503]
    assert "X-RateLimit-Remaining" not in answered[0].headers
    assert [r.status_code for r in served] == [200, 429]


SECRET = "sk_live_5f3b9c1e7d"
SECRET_DIGEST = "key:sha256:" + hashlib.sha256(SECRET.encode()).hexdigest()[:16]


@pytest.mark.parametrize("header", [None, "Authorization-Token"])
def test_by_api_key_counts_per_key_and_never_stores_it(
    app: Flask, backend: Backend, header: str | None
) -> None:
    if header is not None:
        app.config["QUOTA_API_KEY_HEADER"] = header
    client = limited_app(app, backend, by_api_key)
    name = header or "X-API-Key"

    with refused_identities(app) as refused:
        first = client.get("/", headers={name: SECRET})
        second = client.get("/", headers={name: SECRET})
        other = client.get("/", headers={name: "sk_live_other"})
        none = [client.get("/") for _ in range(2)]

    assert [first.status_code, second.status_code, other.status_code] == [200, 429, 200]
    assert [r.status_code for r in none] == [200, 200]
    assert refused == [SECRET_DIGEST]
    keys = backend.stored_keys(app)
    assert keys
    assert all(SECRET not in key and "sk_live_other" not in key for key in keys)
    assert any(SECRET_DIGEST in key for key in keys)
    if backend.redis_client is not None:
        # Not under this test's prefix, nor anywhere else on the server.
        assert list(backend.redis_client.scan_iter(match=f"*{SECRET}*")) == []


#: What a client would send to pass for SECRET: the digest the CLI and logs show for it.
FORGED = SECRET_DIGEST.removeprefix("key:")


def test_a_key_shaped_like_a_digest_is_hashed_like_any_other(app: Flask, backend: Backend) -> None:
    client = limited_app(app, backend, by_api_key)

    with refused_identities(app) as refused:
        real = client.get("/", headers={"X-API-Key": SECRET})
        forged = [client.get("/", headers={"X-API-Key": FORGED}) for _ in range(2)]

    # Its own counter, not SECRET's (which is spent), and shown as its own digest.
    assert [real.status_code, *(r.status_code for r in forged)] == [200, 200, 429]
    assert refused == ["key:sha256:" + hashlib.sha256(FORGED.encode()).hexdigest()[:16]]


@pytest.mark.parametrize("listed", ["stored", f"config:key:{SECRET}", f"config:{SECRET_DIGEST}"])
def test_a_key_shaped_like_a_digest_is_not_allow_listed_as_that_key(
    app: Flask, backend: Backend, listed: str
) -> None:
    if listed.startswith("config:"):
        app.config["QUOTA_WHITELIST"] = [listed.removeprefix("config:")]
    client = limited_app(app, backend, by_api_key)
    if listed == "stored":
        added = app.test_cli_runner().invoke(args=["quota", "whitelist", "add", f"key:{SECRET}"])
        assert added.exit_code == 0, added.output

    real = [client.get("/", headers={"X-API-Key": SECRET}) for _ in range(2)]
    forged = [client.get("/", headers={"X-API-Key": FORGED}) for _ in range(2)]

    assert [r.status_code for r in real] == [200, 200]  # allow-listed
    assert [r.status_code for r in forged] == [200, 429]  # limited as a key of its own


def test_by_api_key_ignores_the_default_header_when_renamed(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_API_KEY_HEADER"] = "X-Token"
    client = limited_app(app, backend, by_api_key)

    responses = [client.get("/", headers={"X-API-Key": SECRET}) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]


def test_by_tenant_reads_the_header_or_g(app: Flask, backend: Backend) -> None:
    @app.before_request
    def load_tenant() -> None:
        tenant = request.args.get("tenant")
        if tenant is not None:
            g.tenant_id = int(tenant)

    client = limited_app(app, backend, by_tenant)

    with refused_identities(app) as refused:
        acme = [client.get("/", headers={"X-Org-ID": "acme"}) for _ in range(2)]
        initech = client.get("/", headers={"X-Org-ID": "initech"})
        from_g = [client.get("/?tenant=9") for _ in range(2)]
        nobody = [client.get("/") for _ in range(2)]

    assert [r.status_code for r in acme] == [200, 429]
    assert initech.status_code == 200
    assert [r.status_code for r in from_g] == [200, 429]
    assert [r.status_code for r in nobody] == [200, 200]
    assert refused == ["tenant:acme", "tenant:9"]


def test_quota_tenant_header_renames_the_header(app: Flask, backend: Backend) -> None:
    app.config["QUOTA_TENANT_HEADER"] = "X-Tenant"
    client = limited_app(app, backend, by_tenant)

    with refused_identities(app) as refused:
        default_header = [client.get("/", headers={"X-Org-ID": "acme"}) for _ in range(2)]
        renamed = [client.get("/", headers={"X-Tenant": "acme"}) for _ in range(2)]

    assert [r.status_code for r in default_header] == [200, 200]
    assert [r.status_code for r in renamed] == [200, 429]
    assert refused == ["tenant:acme"]


# -- by_endpoint, GLOBAL, custom -----------------------------------------------------------


def test_by_endpoint_is_one_counter_per_view_for_everyone(app: Flask, backend: Backend) -> None:
    quota = Quota(app, key=by_endpoint, strategy="fixed_window")
    app.add_url_rule("/a", "a", quota.limit("1/minute")(lambda: "a"))
    backend.attach(app)
    client = app.test_client()

    with refused_identities(app) as refused:
        first = client.get("/a", **remote("203.0.113.9"))
        other_client = client.get("/a", **remote("198.51.100.7"))

    assert (first.status_code, other_client.status_code) == (200, 429)
    assert refused == ["endpoint:a"]


def test_global_key_is_one_counter_for_everyone(app: Flask, backend: Backend) -> None:
    quota = Quota(app, strategy="fixed_window")
    app.add_url_rule("/a", "a", quota.limit("2/minute", key=GLOBAL, scope="shared")(lambda: "a"))
    app.add_url_rule("/b", "b", quota.limit("2/minute", key=GLOBAL, scope="shared")(lambda: "b"))
    backend.attach(app)
    client = app.test_client()

    with refused_identities(app) as refused:
        responses = [
            client.get("/a", **remote("203.0.113.9")),
            client.get("/b", **remote("198.51.100.7")),
            client.get("/a", **remote("192.0.2.1")),
        ]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert refused == ["global"]


def test_custom_key_may_return_any_string(app: Flask, backend: Backend) -> None:
    hostile = "a:{b}*?%[c] \u00e9\n"
    long = "x" * 300
    client = limited_app(app, backend, lambda: request.args.get("who"))

    with refused_identities(app) as refused:
        responses = [
            client.get("/", query_string={"who": who}) for who in (hostile, long, hostile, long)
        ]
        near_miss = client.get("/", query_string={"who": hostile[:-1]})

    assert [r.status_code for r in responses] == [200, 200, 429, 429]
    assert near_miss.status_code == 200
    assert refused == [hostile, long]
