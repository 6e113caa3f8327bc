"""Storage backends, chosen by URI scheme."""

from __future__ import annotations

from typing import Final

import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigurationError
from .base import BatchResult, Check, Storage
from .memory import MemoryStorage

# Imported after redis-py under another name: importing the submodule ``.redis`` binds
# ``redis`` in this namespace, which would shadow the client library.
from .redis import RedisStorage  # noqa: E402

_REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})


def storage_from_uri(uri: str, *, timeout_s: float = 0.1) -> Storage:
    """The storage for ``uri``: ``memory://``, ``redis://``, ``rediss://`` or ``unix://``.

    :param timeout_s: socket connect and read timeout, so a dead server stalls a request by
        at most this much. redis-py's own retries are turned off (its default retries ten
        times with backoff): the fail mode and ``QUOTA_RETRY_INTERVAL`` decide what happens next.
    :raises ConfigurationError: for an unknown scheme or a malformed URI.
    """
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme == "memory":
        return MemoryStorage()
    if scheme in _REDIS_SCHEMES:
        try:
            client = redis_py.Redis.from_url(
                uri,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as err:
            raise ConfigurationError(f"invalid QUOTA_STORAGE_URI {uri!r}: {err}") from None
        return RedisStorage(client)
    raise ConfigurationError(
        f"invalid QUOTA_STORAGE_URI {uri!r}: expected memory://, redis://, rediss:// or unix://"
    )


__all__ = ["BatchResult", "Check", "MemoryStorage", "RedisStorage", "Storage", "storage_from_uri"]
