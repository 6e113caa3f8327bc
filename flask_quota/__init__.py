"""flask-quota: rate limiting and metering for Flask APIs."""

from __future__ import annotations

from .errors import ConfigurationError as ConfigurationError
from .errors import QuotaError as QuotaError
from .errors import StorageError as StorageError
from .limits import Limit as Limit
from .limits import parse_limits as parse_limits

__all__ = ["ConfigurationError", "Limit", "QuotaError", "StorageError", "parse_limits"]
