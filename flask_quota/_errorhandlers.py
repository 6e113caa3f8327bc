"""Whether Flask would hand an HTTP exception to a user's error handler, or render it as is.

A refusal is a ``RateLimitExceeded`` that renders itself. Raised from ``before_request`` with no
handler for it, Flask returns the exception from ``handle_http_exception`` and ``make_response``
runs it as a WSGI app (``Response.force_type`` -> ``run_wsgi_app``: an environ copy, the response
built twice), which makes a refusal dearer than an admission. When nothing would shape it (no
handler applies and ``TRAP_HTTP_EXCEPTIONS`` is off), the hook returns ``get_response()``
itself: the same bytes, without the detour.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask
from werkzeug.exceptions import HTTPException


def has_handler(app: Flask, error_class: type[HTTPException], blueprints: Sequence[str]) -> bool:
    """Whether an error handler of ``app`` or of ``blueprints`` applies to ``error_class``.

    Flask's own lookup (``_find_error_handler``) is private, so this repeats its search over
    the documented registry, ``app.error_handler_spec``: by code then by ``None``, each in the
    blueprints then the app, each over the exception's MRO. It reads with ``.get`` only: the
    registry is made of defaultdicts, and indexing would add an entry per blueprint and code.
    """
    spec = app.error_handler_spec
    classes = error_class.__mro__
    for code in (error_class.code, None):
        for name in (*blueprints, None):
            scoped = spec.get(name)
            handlers = scoped.get(code) if scoped else None
            if handlers and any(handlers.get(cls) is not None for cls in classes):
                return True
    return False
