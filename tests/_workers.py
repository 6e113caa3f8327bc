"""App instances in processes of their own, for tests of what crosses processes.

Each worker runs ``serve(conn, *args)`` in a spawned process: it builds its app, sends
``"ready"``, answers requests sent down the pipe, and stops on ``None``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Connection = multiprocessing.connection.Connection


@contextmanager
def spawned(
    serve: Callable[..., None], args: tuple[Any, ...], count: int, start_timeout_s: float
) -> Iterator[list[tuple[Any, Connection]]]:
    """``count`` workers as ``(process, connection)``; stopped (and, if stuck, terminated)
    on exit."""
    context = multiprocessing.get_context("spawn")
    started: list[tuple[Any, Connection]] = []
    try:
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=serve, args=(child, *args), daemon=True)
            process.start()
            child.close()
            started.append((process, parent))
        for _, conn in started:
            assert conn.poll(start_timeout_s), "worker did not start"
            assert conn.recv() == "ready"
        yield started
    finally:
        for _, conn in started:
            try:
                conn.send(None)
            except OSError:
                pass
        for process, conn in started:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            conn.close()
