"""The stored allow list and blocklist cost nothing until first used.

Each is looked up (EXISTS / PTTL per identity, inside the one call) only once the config hash
says it was ever used; admin.allow and admin.block say so before writing their first entry.
"""

from __future__ import annotations

import pytest
import redis
from flask import Flask

from flask_quota import Quota, admin, by_user
from tests.conftest import RedisServer


def executed(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@pytest.fixture
def app(redis_server: RedisServer, key_prefix: str) -> Flask:
    app = Flask(__name__)
    app.config.update(QUOTA_STORAGE_URI=redis_server.url, QUOTA_KEY_PREFIX=key_prefix)
    quota = Quota(app, global_limits=["1000/minute"])

    @app.get("/")
    @quota.limit("100/minute", key=by_user)
    @quota.limit("100/minute")
    def index() -> str:
        return "ok"

    return app


def lookups(app: Flask, client: redis.Redis, requests: int = 3) -> tuple[int, int]:
    test_client = app.test_client()
    test_client.get("/")  # the first request of a process also reads the live config
    before = executed(client)
    for _ in range(requests):
        assert test_client.get("/").status_code in (200, 429)
    after = executed(client)
    return (
        after.get("exists", 0) - before.get("exists", 0),
        after.get("pttl", 0) - before.get("pttl", 0),
    )


@pytest.mark.redis
def test_unused_lists_are_not_looked_up(app: Flask, redis_client: redis.Redis) -> None:
    assert lookups(app, redis_client) == (0, 0)


@pytest.mark.redis
def test_lists_are_looked_up_once_used(app: Flask, redis_client: redis.Redis) -> None:
    admin.block(app, "203.0.113.250", 60)
    assert lookups(app, redis_client) == (0, 6)  # 2 identities (IP, global) x 3 requests
    admin.allow(app, "127.0.0.1")
    assert lookups(app, redis_client) == (6, 0)  # allow-listed: found at once, never blocked
    admin.disallow(app, "127.0.0.1")
    admin.block(app, "127.0.0.1", 60)
    assert app.test_client().get("/").status_code == 429
