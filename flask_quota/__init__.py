"""flask-quota: rate limiting and metering for Flask APIs.

One storage round trip per request whatever the number of stacked limits, all-or-nothing
charging, Redis server time, and fail modes for when Redis is down.
"""

from __future__ import annotations

from . import signals as signals
from .errors import ConfigurationError as ConfigurationError
from .errors import QuotaError as QuotaError
from .errors import RateLimitExceeded as RateLimitExceeded
from .errors import StorageError as StorageError
from .extension import Quota as Quota
from .identity import GLOBAL as GLOBAL
from .identity import by_api_key as by_api_key
from .identity import by_endpoint as by_endpoint
from .identity import by_ip as by_ip
from .identity import by_tenant as by_tenant
from .identity import by_user as by_user
from .limits import Limit as Limit
from .limits import parse_limits as parse_limits

__all__ = [
    "GLOBAL",
    "ConfigurationError",
    "Limit",
    "Quota",
    "QuotaError",
    "RateLimitExceeded",
    "StorageError",
    "by_api_key",
    "by_endpoint",
    "by_ip",
    "by_tenant",
    "by_user",
    "parse_limits",
    "signals",
]
