"""The exceptions flask-quota raises.

One tree: :class:`QuotaError` for everything the library itself reports, and
:class:`RateLimitExceeded` for the HTTP refusal, which is a werkzeug
:class:`~werkzeug.exceptions.TooManyRequests` so that ``@app.errorhandler(429)`` catches it.
"""

from __future__ import annotations


class QuotaError(Exception):
    """Base class of the errors flask-quota reports about itself."""


class ConfigurationError(QuotaError, ValueError):
    """A limit string, option or decorator argument is invalid.

    Raised at start-up (decoration time or ``init_app``), never while serving a request.
    """


class StorageError(QuotaError):
    """The storage backend could not be reached or did not answer in time.

    Network trouble only: the configured fail mode decides what happens to the request.
    """
