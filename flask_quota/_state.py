"""Where one app's flask-quota state lives: ``app.extensions["quota.state"]``.

``app.extensions["quota"]`` is the :class:`~flask_quota.Quota` itself (API.md); its per-app
state (settings, storage, compiled endpoints) sits beside it, so one ``Quota`` serves many apps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from flask import Flask, current_app

if TYPE_CHECKING:
    from ._config import Settings
    from .extension import AppState

STATE_KEY: Final = "quota.state"


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


def current_settings() -> Settings | None:
    """The current app's settings, or ``None`` if flask-quota is not on it."""
    state = current_app.extensions.get(STATE_KEY)
    return None if state is None else state.settings
