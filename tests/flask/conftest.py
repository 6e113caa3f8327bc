"""Fixtures for the Flask integration tests: an app, and the storage its ``Quota`` counts in.

A test that takes ``backend`` runs twice, on ``memory://`` and on the real Redis started by
``tests/conftest.py``; both are driven by the manual ``clock``, so windows move only when a
test says so. ``backend.attach(app)`` swaps the storage in after ``init_app``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import redis
from flask import Flask

from flask_quota.extension import AppState
from flask_quota.storage import MemoryStorage, Storage
from tests._support import ClockedRedisStorage, ManualClock


@dataclass
class Backend:
    """The storage of a test's apps, a recorder of leaky-bucket sleeps, and a view of the keys."""

    name: str
    clock: ManualClock
    key_prefix: str
    redis_client: redis.Redis | None = None
    sleeps: list[float] = field(default_factory=list)

    def storage(self) -> Storage:
        if self.redis_client is None:
            return MemoryStorage(self.clock)
        return ClockedRedisStorage(self.redis_client, self.clock)

    def attach(self, app: Flask) -> AppState:
        """Point ``app``'s flask-quota state at this backend and the manual clock."""
        state: AppState = app.extensions["quota.state"]
        state.storage = self.storage()
        state.local_storage = MemoryStorage(self.clock)
        state.sleep = self.sleeps.append
        return state

    def stored_keys(self, app: Flask) -> list[str]:
        """Every key ``app`` holds state under (Redis: ``SCAN`` of this test's prefix)."""
        if self.redis_client is None:
            storage = app.extensions["quota.state"].storage
            assert isinstance(storage, MemoryStorage)
            return sorted(storage.keys())
        return sorted(
            key.decode() for key in self.redis_client.scan_iter(match=f"{self.key_prefix}*")
        )


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, clock: ManualClock, key_prefix: str) -> Backend:
    client = request.getfixturevalue("redis_client") if request.param == "redis" else None
    return Backend(request.param, clock, key_prefix, client)


@pytest.fixture
def app(key_prefix: str) -> Flask:
    """A bare app whose keys no other test shares."""
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_KEY_PREFIX=key_prefix)
    return app
