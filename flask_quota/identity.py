"""Key functions: each returns the identity a limit counts for, or ``None`` to skip the limit.

Identities are the strings operators see in the CLI, lists, signals and logs: ``"203.0.113.9"``,
``"2001:db8:1:2::/64"``, ``"user:42"``, ``"key:<value>"`` (stored and shown hashed),
``"tenant:acme"``, ``"endpoint:search"``, ``"global"``.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from flask import current_app, g, request

from ._config import DEFAULTS
from ._state import current_settings


@lru_cache(maxsize=4096)
def _ip_identity(address: str, ipv6_prefix: int) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


def by_ip() -> str | None:
    """The client address as Flask sees it (``request.remote_addr``).

    IPv6 clients count per network (``QUOTA_IPV6_PREFIX``, default /64: one client holds a whole
    /64). ``X-Forwarded-For`` is never read here: behind a proxy, wrap the app in werkzeug's
    ``ProxyFix`` so ``remote_addr`` is the real client.
    """
    address = request.remote_addr
    if not address:
        return None
    if ":" not in address:  # IPv4 (or not an address): the prefix plays no part
        return _ip_identity(address, 0)
    settings = current_settings()
    prefix = settings.ipv6_prefix if settings else int(DEFAULTS["QUOTA_IPV6_PREFIX"])
    return _ip_identity(address, prefix)


def _user_id() -> Any:
    user = g.get("user")
    if user is not None:
        return getattr(user, "id", None)
    if getattr(current_app, "login_manager", None) is None:
        return None
    try:  # Flask-Login is optional: only an app that set up a LoginManager gets here.
        from flask_login import current_user  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    if current_user and current_user.is_authenticated:
        return current_user.get_id()
    return None


def by_user() -> str | None:
    """``"user:<id>"`` from ``flask.g.user.id``, else Flask-Login's ``current_user``."""
    user_id = _user_id()
    return None if user_id is None else f"user:{user_id}"


def by_api_key() -> str | None:
    """``"key:<value>"`` from the ``QUOTA_API_KEY_HEADER`` header (default ``X-API-Key``).

    The value is a secret: storage keys, logs, metrics and the CLI show it only as
    ``key:sha256:<16 hex digits>``.
    """
    settings = current_settings()
    header = settings.api_key_header if settings else str(DEFAULTS["QUOTA_API_KEY_HEADER"])
    value = request.headers.get(header)
    return f"key:{value}" if value else None


def by_tenant() -> str | None:
    """``"tenant:<id>"`` from the ``QUOTA_TENANT_HEADER`` header (``X-Org-ID``) or ``g.tenant_id``.

    The header wins over ``g.tenant_id``, so set the latter only where no client header is
    trusted.
    """
    settings = current_settings()
    header = settings.tenant_header if settings else str(DEFAULTS["QUOTA_TENANT_HEADER"])
    tenant = request.headers.get(header) or g.get("tenant_id")
    return None if tenant is None or tenant == "" else f"tenant:{tenant}"


def by_endpoint() -> str | None:
    """``"endpoint:<name>"``: one counter per view for all clients together."""
    endpoint = request.endpoint
    return None if endpoint is None else f"endpoint:{endpoint}"


def GLOBAL() -> str:  # noqa: N802 - reads as a constant at the call site: key=GLOBAL
    """``"global"``: one counter shared by every client."""
    return "global"
