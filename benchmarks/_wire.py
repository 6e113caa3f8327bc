"""Count what a redis-py client puts on the wire: round trips, commands and bytes sent.

:class:`CountingConnection` is passed as a pool's ``connection_class``, so both contenders are
counted by the same code at the same layer, below their own abstractions:

- a *round trip* is one request/response exchange: one or more sends, then the first read of
  the reply. A pipeline (many commands in one send, then many reads) is one round trip;
- a *command* is one command packed by the client (``EVALSHA`` counts one, whatever the script
  runs on the server: see ``INFO commandstats`` for that);
- *bytes sent* are the request bytes written to the socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis


@dataclass(slots=True)
class WireCounter:
    """Totals since the last :meth:`reset`, shared by every connection of one pool."""

    round_trips: int = 0
    commands: int = 0
    bytes_sent: int = 0

    def reset(self) -> None:
        self.round_trips = self.commands = self.bytes_sent = 0


class _CountingPacker:
    """Wraps redis-py's command packer: every command goes through ``pack``, pipelined or not."""

    def __init__(self, inner: Any, counter: WireCounter) -> None:
        self._inner = inner
        self._counter = counter

    def pack(self, *args: Any) -> Any:
        self._counter.commands += 1
        return self._inner.pack(*args)


def _chunk_lengths(command: Any) -> Iterable[int]:
    if isinstance(command, bytes | bytearray | memoryview | str):
        return (len(command),)
    return (len(chunk) for chunk in command)


class CountingConnection(redis.Connection):
    """A redis-py TCP connection that reports to a :class:`WireCounter` (``counter=`` kwarg)."""

    def __init__(self, *, counter: WireCounter, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._counter = counter
        self._command_packer = _CountingPacker(self._command_packer, counter)
        self._awaiting_reply = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self._counter.bytes_sent += sum(_chunk_lengths(command))
        self._awaiting_reply = True
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self._awaiting_reply:
            self._awaiting_reply = False
            self._counter.round_trips += 1
        return super().read_response(*args, **kwargs)
