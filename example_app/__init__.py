"""A small multi-tenant API limited with flask-quota: ``flask --app example_app run``."""

from __future__ import annotations

from .app import create_app as create_app
from .app import quota as quota

__all__ = ["create_app", "quota"]
