"""One app's flask-quota state, kept at ``app.extensions["quota.state"]``.

``app.extensions["quota"]`` is the :class:`~flask_quota.Quota` itself (API.md); its per-app
state (settings, storage, compiled endpoints, live config) sits beside it, so one ``Quota``
serves many apps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from flask import Flask, current_app

from .live import LiveConfig

if TYPE_CHECKING:
    from ._config import Settings
    from ._registry import LimitSpec, PlanCache
    from .metrics import Metrics
    from .storage import MemoryStorage, Storage

STATE_KEY: Final = "quota.state"


class StorageGuard:
    """Stops asking a failed storage for ``retry_interval_s``, then lets one request probe it.

    Times come from ``time.time()`` at each call, so tests that move time with freezegun or
    time-machine move this timer too.
    """

    def __init__(self, retry_interval_s: float) -> None:
        self.retry_interval_s = retry_interval_s
        self.failing = False
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def should_try(self) -> bool:
        """Whether this request may call the storage (always, unless it is failing)."""
        if not self.failing:
            return True
        with self._lock:
            now = time.time()
            if now < self._retry_at:
                return False
            # This request probes; the others keep the fail mode until it has answered.
            self._retry_at = now + self.retry_interval_s
            return True

    def seconds_to_retry(self) -> float:
        return max(0.0, self._retry_at - time.time())

    def failed(self) -> None:
        self.failing = True
        self._retry_at = time.time() + self.retry_interval_s

    def recovered(self) -> None:
        self.failing = False


class InFlight:
    """This process's requests in flight (for load-adaptive limits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def enter(self) -> None:
        with self._lock:
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


@dataclass(eq=False, kw_only=True)
class AppState:
    """Everything flask-quota keeps for one app."""

    settings: Settings
    storage: Storage
    #: Per-process fallback for ``QUOTA_FAIL_MODE = "local"``.
    local_storage: MemoryStorage
    metrics: Metrics
    guard: StorageGuard
    plans: PlanCache
    #: The hash of live overrides and the emergency factor (see :mod:`flask_quota.live`).
    config_key: str
    global_specs: tuple[LimitSpec, ...] = ()
    default_specs: tuple[LimitSpec, ...] = ()
    #: The live config as last read, and what of it is in force.
    live: LiveConfig = field(default_factory=LiveConfig)
    active_overrides: dict[str, str] = field(default_factory=dict)
    emergency_factor: float = 1.0
    #: When a timed override or emergency lapses next (storage clock, µs).
    live_changes_at_us: int = 2**62
    #: When (``time.time()``) this process last learnt the config version, and the storage's
    #: clock then: a process whose knowledge is older than a second re-reads before deciding.
    live_seen_at: float = 0.0
    live_seen_now_us: int = 0
    #: The last adaptive factor, to log and gauge changes only.
    adaptive_factor: float = 1.0
    in_flight: InFlight = field(default_factory=InFlight)
    #: Per endpoint: whether an error handler of the app or of the endpoint's blueprints takes
    #: a refusal (Flask allows no new handler once requests are served, so it is asked once).
    refusal_handled: dict[str | None, bool] = field(default_factory=dict)
    #: Replaceable in tests, so a leaky_bucket delay need not really sleep.
    sleep: Callable[[float], None] = time.sleep


def app_state(app: Flask) -> AppState:
    """The state of ``app``; a setup mistake (no ``init_app``) says what to do."""
    try:
        state: AppState = app.extensions[STATE_KEY]
    except KeyError:
        raise RuntimeError(
            f"flask-quota is not initialised on app {app.name!r}: call Quota(app) or "
            "quota.init_app(app) first"
        ) from None
    return state


def current_state() -> AppState:
    """The current app's state."""
    return app_state(current_app._get_current_object())  # type: ignore[attr-defined]


def current_settings() -> Settings | None:
    """The current app's settings, or ``None`` if flask-quota is not on it."""
    state = current_app.extensions.get(STATE_KEY)
    return None if state is None else state.settings
