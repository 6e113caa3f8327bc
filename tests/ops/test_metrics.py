"""StatsD metrics on the wire: a real UDP socket on 127.0.0.1 receives what a request sends.

No sleeps: after each request the test sends its own end marker to the listener and reads up
to it. On loopback a datagram is queued for the receiver before ``sendto`` returns, so every
packet the request sent is read before the marker.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, request
from statsd import StatsClient

from flask_quota import Quota, admin, metrics
from flask_quota.metrics import (
    ALLOWED,
    BYPASSED,
    CHECK_TIMER,
    DENIED,
    DRY_RUN_DENIED,
    NEAR_LIMIT,
    STORAGE_ERROR,
)
from flask_quota.storage import MemoryStorage
from tests._support import ManualClock
from tests.ops.conftest import IP1, IP2, OpsApp, build_app, get, state_of

PREFIX = "qtest.api"
END = b"__end_of_request__"
TIMER = re.compile(rf"{re.escape(PREFIX)}\.{CHECK_TIMER}:(\d+(?:\.\d+)?)\|ms")


class StatsdListener:
    """A UDP socket standing in for statsd."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.port: int = self.sock.getsockname()[1]

    def packets(self) -> list[list[str]]:
        """The datagrams received since the last call, each as its lines."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
            marker.sendto(END, ("127.0.0.1", self.port))
        packets = []
        while (data := self.sock.recv(65536)) != END:
            packets.append(data.decode("ascii").split("\n"))
        return packets

    def request(self, app: Flask, path: str = "/", **kwargs: Any) -> tuple[int, list[str]]:
        """One request's status and its one packet (an empty list if it sent none)."""
        status = get(app, path, **kwargs).status_code
        packets = self.packets()
        assert len(packets) <= 1, packets
        return status, packets[0] if packets else []


#: The apps' StatsD sockets are closed at the end of each test (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("close_statsd_clients")


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.sock.close()


def config(statsd: StatsdListener, **extra: Any) -> dict[str, Any]:
    return {
        "QUOTA_STATSD_HOST": "127.0.0.1",
        "QUOTA_STATSD_PORT": statsd.port,
        "QUOTA_STATSD_PREFIX": PREFIX,
        **extra,
    }


def counters(lines: list[str]) -> list[str]:
    """The counter names of a packet, prefix dropped (each must be ``:1|c``)."""
    names = []
    for line in lines:
        if TIMER.fullmatch(line):
            continue
        match = re.fullmatch(rf"{re.escape(PREFIX)}\.([A-Za-z0-9_.-]+):1\|c", line)
        assert match, line
        names.append(match.group(1))
    return names


def timed(lines: list[str]) -> bool:
    """Whether the packet ends with the check timer (in ms, a number >= 0)."""
    return bool(lines) and TIMER.fullmatch(lines[-1]) is not None


@pytest.fixture
def ops(make_ops_app: Callable[..., OpsApp], statsd: StatsdListener) -> OpsApp:
    ops_app: OpsApp = make_ops_app("memory", **config(statsd))
    return ops_app


# -- counters and the timer ------------------------------------------------------------------


def test_an_admitted_request_counts_allowed_and_times_the_check(
    ops: OpsApp, statsd: StatsdListener
) -> None:
    status, lines = statsd.request(ops.app, "/")

    assert status == 200
    assert len(lines) == 2
    assert lines[0] == f"{PREFIX}.{ALLOWED}:1|c"
    timer = TIMER.fullmatch(lines[1])
    assert timer is not None and 0 <= float(timer.group(1)) < 10_000


@pytest.mark.redis
def test_metrics_on_redis_storage(
    make_ops_app: Callable[..., OpsApp], statsd: StatsdListener
) -> None:
    ops = make_ops_app("redis", **config(statsd))
    results = [statsd.request(ops.app, "/user", headers={"X-User": "7"}) for _ in range(4)]

    assert [status for status, _ in results] == [200, 200, 200, 429]
    assert [counters(lines) for _, lines in results[:2]] == [[ALLOWED], [ALLOWED]]
    assert DENIED in counters(results[3][1])
    assert all(timed(lines) for _, lines in results)


def test_near_limit_counts_requests_leaving_less_than_a_fifth(
    ops: OpsApp, statsd: StatsdListener
) -> None:
    # /: 10/minute. A fifth is 2: the requests leaving 1 and 0 are near the limit.
    results = [statsd.request(ops.app, "/") for _ in range(10)]

    assert [status for status, _ in results] == [200] * 10
    assert [counters(lines) for _, lines in results] == [[ALLOWED]] * 8 + [
        [NEAR_LIMIT, ALLOWED]
    ] * 2
    assert all(timed(lines) for _, lines in results)


def test_a_refusal_counts_denied_and_denied_by_limit(ops: OpsApp, statsd: StatsdListener) -> None:
    for _ in range(5):
        assert statsd.request(ops.app, "/api/a")[0] == 200

    status, lines = statsd.request(ops.app, "/api/b")

    assert status == 429
    names = counters(lines)
    assert names[-2:] == [DENIED, f"{DENIED}.api"]
    assert ALLOWED not in names
    # A refusal is counted as denied, not as a near miss.
    assert NEAR_LIMIT not in names
    assert timed(lines)


def test_a_block_counts_as_denied_by_blocked(ops: OpsApp, statsd: StatsdListener) -> None:
    admin.block(ops.app, IP2, 60)

    status, lines = statsd.request(ops.app, "/", ip=IP2)

    assert status == 429
    assert counters(lines) == [DENIED, f"{DENIED}.blocked"]
    assert timed(lines)


def test_dry_run_denials_are_counted_and_admitted(key_prefix: str, statsd: StatsdListener) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_KEY_PREFIX=key_prefix, **config(statsd))
    quota = Quota(app, strategy="fixed_window")

    @app.get("/new")
    @quota.limit("2/minute", dry_run=True, name="new-limit")
    def new() -> str:
        return "new"

    state_of(app).storage = MemoryStorage(ManualClock())
    results = [statsd.request(app, "/new") for _ in range(4)]

    assert [status for status, _ in results] == [200] * 4
    assert [counters(lines) for _, lines in results] == [
        [ALLOWED],
        [NEAR_LIMIT, ALLOWED],
        [DRY_RUN_DENIED, ALLOWED],
        [DRY_RUN_DENIED, ALLOWED],
    ]


def test_bypasses_are_counted(make_ops_app: Callable[..., OpsApp], statsd: StatsdListener) -> None:
    ops = make_ops_app("memory", **config(statsd, QUOTA_WHITELIST=["10.0.0.0/8"]))
    quota: Quota = ops.app.extensions["quota"]
    quota.request_filter(lambda: request.headers.get("X-Internal") == "yes")
    admin.allow(ops.app, "user:9")

    by_filter = statsd.request(ops.app, "/", headers={"X-Internal": "yes"})
    by_config = statsd.request(ops.app, "/", ip="10.9.8.7")
    by_storage = statsd.request(ops.app, "/user", headers={"X-User": "9"})
    exempt = statsd.request(ops.app, "/health")

    # Filter and configured list decide before any storage call: nothing to time.
    assert by_filter == (200, [f"{PREFIX}.{BYPASSED}:1|c"])
    assert by_config == (200, [f"{PREFIX}.{BYPASSED}:1|c"])
    # The stored list is read in the storage call, which is timed.
    assert by_storage[0] == 200
    assert counters(by_storage[1]) == [BYPASSED] and timed(by_storage[1])
    # An exempt view is not rate limited at all: no metric.
    assert exempt == (200, [])


def test_storage_errors_are_counted(key_prefix: str, statsd: StatsdListener) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    app = build_app(
        config(
            statsd,
            QUOTA_KEY_PREFIX=key_prefix,
            QUOTA_STORAGE_URI=f"redis://127.0.0.1:{port}/0",
            QUOTA_STORAGE_TIMEOUT=0.05,
            QUOTA_RETRY_INTERVAL=3600,
        )
    )

    first = statsd.request(app, "/")
    second = statsd.request(app, "/")

    assert first == (200, [f"{PREFIX}.{STORAGE_ERROR}:1|c"])
    # Within the retry interval the fail mode applies at once, without asking the storage.
    assert second == (200, [])


def test_the_prefix_defaults_to_quota(
    make_ops_app: Callable[..., OpsApp], statsd: StatsdListener
) -> None:
    ops = make_ops_app("memory", QUOTA_STATSD_HOST="127.0.0.1", QUOTA_STATSD_PORT=statsd.port)

    get(ops.app, "/")
    (lines,) = statsd.packets()

    assert lines[0] == "quota.allowed:1|c"
    assert re.fullmatch(r"quota\.check:\d+(\.\d+)?\|ms", lines[1])


# -- metric names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("search.v2", "search_v2"),
        ("GET /api/items: per user", "GET_api_items_per_user"),
        ("a::b//c..d  e", "a_b_c_d_e"),
        ("tier-1_free", "tier-1_free"),
        ("ünïcode ✓", "n_code"),
        ("...", "unnamed"),
    ],
)
def test_denied_metric_names_are_sanitised(
    key_prefix: str, statsd: StatsdListener, name: str, segment: str
) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_KEY_PREFIX=key_prefix, **config(statsd))
    quota = Quota(app)

    @app.get("/x")
    @quota.limit("1/minute", name=name)
    def x() -> str:
        return "x"

    state_of(app).storage = MemoryStorage(ManualClock())
    statsd.request(app, "/x")

    status, lines = statsd.request(app, "/x")

    assert status == 429
    denied_by = [line for line in lines if line.startswith(f"{PREFIX}.{DENIED}.")]
    assert denied_by == [f"{PREFIX}.{DENIED}.{segment}:1|c"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", segment)


def test_default_limit_names_are_sanitised(ops: OpsApp, statsd: StatsdListener) -> None:
    for _ in range(10):
        statsd.request(ops.app, "/")

    _, lines = statsd.request(ops.app, "/")

    assert f"{PREFIX}.{DENIED}.index_10_minute:1|c" in lines


# -- StatsD down -----------------------------------------------------------------------------


def test_statsd_on_a_closed_port_never_breaks_a_request(
    make_ops_app: Callable[..., OpsApp],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    ops = make_ops_app("memory", QUOTA_STATSD_HOST="127.0.0.1", QUOTA_STATSD_PORT=port)
    app = ops.app

    # Loopback answers each datagram with ICMP port unreachable; none may surface.
    results = [get(app, "/", ip=IP1).status_code for _ in range(12)]
    admin.block(app, IP2, 60)
    blocked = get(app, "/", ip=IP2)

    assert results == [200] * 10 + [429] * 2
    assert blocked.status_code == 429 and blocked.headers["Retry-After"] == "60"


def test_an_apps_statsd_socket_closes_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "StatsClient", StatsClient)
    sink = metrics.StatsdMetrics("127.0.0.1", 8125, "quota")
    sock = sink._client._sock
    assert sock is not None and sock.fileno() >= 0
    del sink
    assert sock.fileno() == -1
