"""Storage backends, chosen by URI scheme."""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..errors import ConfigurationError
from .base import BatchResult, Check, Storage
from .memory import MemoryStorage

# Imported after redis-py under another name: importing the submodule ``.redis`` binds
# ``redis`` in this namespace, which would shadow the client library.
from .redis import RedisStorage, set_up_connection  # noqa: E402

_REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
_SENTINEL_SCHEME: Final = "redis+sentinel"
_EXPECTED: Final = "memory://, redis://, rediss://, unix:// or redis+sentinel://"


def _sentinel_client(uri: str, timeout_s: float) -> redis_py.Redis:
    """The primary named by ``redis+sentinel://[:password@]host:port[,host:port]/service[/db]``,
    through redis-py's :class:`~redis.sentinel.Sentinel` (which follows failovers).

    :raises ConfigurationError: saying what is wrong; the caller names the key and URI.
    """
    parts = urlsplit(uri)
    hosts = parts.netloc.rpartition("@")[2]
    path = [p for p in parts.path.split("/") if p]
    if not hosts or not 1 <= len(path) <= 2:
        raise ConfigurationError(
            "expected redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]"
        )
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ConfigurationError(f"sentinel {host!r} is not host:port")
        sentinels.append((name.strip("[]"), int(port)))
    if len(path) == 2 and not path[1].isdigit():
        raise ConfigurationError("db must be a number")
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    # redis.sentinel has no annotations: the two ignores below are for that alone.
    sentinel = Sentinel(sentinels, sentinel_kwargs=dict(timeouts), **timeouts)  # type: ignore[no-untyped-call]
    client: redis_py.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        password=unquote(parts.password) if parts.password else None,
        retry=Retry(NoBackoff(), 0),
        redis_connect_func=set_up_connection,
        **timeouts,
    )
    return client


def storage_from_uri(uri: str, *, timeout_s: float = 0.1) -> Storage:
    """The storage for ``uri``: ``memory://``, ``redis://``, ``rediss://``, ``unix://``, or
    ``redis+sentinel://host:port[,host:port]/service_name[/db]`` (Sentinel-managed primary).

    :param timeout_s: socket connect and read timeout, so a dead server stalls a request by
        at most this much. redis-py's own retries are turned off (its default retries ten
        times with backoff): the fail mode and ``QUOTA_RETRY_INTERVAL`` decide what happens next.
        A server refusing a connection's set-up (a database it lacks, bad credentials) is an
        outage too (:func:`~flask_quota.storage.redis.set_up_connection`).
    :raises ConfigurationError: for an unknown scheme or a malformed URI.
    """
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme == "memory":
        return MemoryStorage()
    try:
        if scheme in _REDIS_SCHEMES:
            try:
                client = redis_py.Redis.from_url(
                    uri,
                    socket_timeout=timeout_s,
                    socket_connect_timeout=timeout_s,
                    retry=Retry(NoBackoff(), 0),
                    redis_connect_func=set_up_connection,
                )
            except ValueError as err:
                raise ConfigurationError(str(err)) from None
            _check_path(scheme, urlsplit(uri).path)
            return RedisStorage(client)
        if scheme == _SENTINEL_SCHEME:
            return RedisStorage(_sentinel_client(uri, timeout_s))
        raise ConfigurationError(f"expected {_EXPECTED}")
    except ConfigurationError as err:
        raise ConfigurationError(f"invalid QUOTA_STORAGE_URI {_shown(uri)!r}: {err}") from None


def _check_path(scheme: str, path: str) -> None:
    """A ``redis://`` path is a database number (redis-py ignores any other, and would use db
    0 for ``/cache``); a ``unix://`` one is the socket's, and must be there."""
    if scheme == "unix":
        if not path:
            raise ConfigurationError("expected unix:///path/to/redis.sock")
    elif path.strip("/") and not path.strip("/").isdigit():
        raise ConfigurationError(f"the path {path!r} must be a database number, as /0")


def _shown(uri: str) -> str:
    """``uri`` fit for an error message: its password, if any, masked."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return uri
    if not password:
        return uri
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


__all__ = ["BatchResult", "Check", "MemoryStorage", "RedisStorage", "Storage", "storage_from_uri"]
