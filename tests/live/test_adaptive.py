"""Load-adaptive limits: ``QUOTA_ADAPTIVE`` scales every limit by a factor in (0, 1].

A user callable, and the built-in ``flask_quota.adaptive.in_flight(soft, hard, floor)``, driven
through HTTP by requests held open inside the view (threads waiting on an event), so this
process's in-flight count really rises. Changes of the factor are logged and sent as the StatsD
gauge ``<prefix>.adaptive_factor``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request

from flask_quota import ConfigurationError, Quota, by_ip
from flask_quota.adaptive import InFlight, in_flight
from tests.live.conftest import Gate, LiveBackend, StatsdListener, limit_header

IP = "203.0.113.9"


def adaptive_app(
    make_app: Callable[..., Flask], backend: LiveBackend, gate: Gate | None = None, **config: Any
) -> Flask:
    """``/work``: ``100/minute`` per IP (fixed window); ``?hold=1`` waits at ``gate``."""
    app = make_app(QUOTA_STRATEGY="fixed_window", **config)
    quota = Quota(app, key=by_ip)

    @app.get("/work")
    @quota.limit("100/minute")
    def work() -> str:
        if gate is not None and request.args.get("hold"):
            gate.hold()
        return "done"

    backend.attach(app)
    return app


def limit_now(app: Flask) -> int | None:
    return limit_header(app.test_client().get("/work", environ_base={"REMOTE_ADDR": IP}))


def factor_log(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.name == "flask_quota"
        and ("QUOTA_ADAPTIVE" in record.getMessage() or "adaptive limit" in record.getMessage())
    ]


# -- a user callable ---------------------------------------------------------------------------


def test_a_factor_of_one_half_halves_every_limit(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = adaptive_app(make_app, backend, QUOTA_ADAPTIVE=lambda: 0.5)
    client = app.test_client()

    responses = [client.get("/work", environ_base={"REMOTE_ADDR": IP}) for _ in range(51)]

    assert [limit_header(r) for r in responses] == [50] * 51
    assert [r.status_code for r in responses] == [200] * 50 + [429]
    assert responses[-1].get_json()["limit"] == 50


def test_the_adaptive_factor_multiplies_the_emergency_factor(
    make_app: Callable[..., Flask], backend: LiveBackend
) -> None:
    app = adaptive_app(make_app, backend, QUOTA_ADAPTIVE=lambda: 0.5)

    app.test_cli_runner().invoke(args=["quota", "emergency", "on", "--factor", "0.5"])

    assert limit_now(app) == 25


@pytest.mark.parametrize("value", [0, -0.5, 1.5, float("nan"), "0.5", None, True])
def test_a_bad_factor_is_ignored_with_a_warning(
    make_app: Callable[..., Flask],
    backend: LiveBackend,
    caplog: pytest.LogCaptureFixture,
    value: object,
) -> None:
    app = adaptive_app(make_app, backend, QUOTA_ADAPTIVE=lambda: value)

    with caplog.at_level(logging.INFO, logger="flask_quota"):
        limits = [limit_now(app), limit_now(app)]

    assert limits == [100, 100]
    warning = (
        logging.WARNING,
        f"QUOTA_ADAPTIVE returned {value!r}, not a factor in (0, 1]: ignored",
    )
    assert factor_log(caplog) == [warning, warning]


def test_factor_changes_are_logged_and_sent_as_a_gauge(
    make_app: Callable[..., Flask],
    backend: LiveBackend,
    statsd: StatsdListener,
    caplog: pytest.LogCaptureFixture,
) -> None:
    factor = [1.0]
    app = adaptive_app(
        make_app,
        backend,
        QUOTA_ADAPTIVE=lambda: factor[0],
        QUOTA_STATSD_HOST="127.0.0.1",
        QUOTA_STATSD_PORT=statsd.port,
        QUOTA_STATSD_PREFIX="api",
    )

    limits = []
    with caplog.at_level(logging.INFO, logger="flask_quota"):
        for value in (1.0, 0.5, 0.5, 0.257, 1.0):
            factor[0] = value
            limits.append(limit_now(app))
    lines = statsd.wait_for("api.adaptive_factor:1.0|g")

    # Factors go in steps of 0.01, rounded down: 0.257 is 0.25.
    assert limits == [100, 50, 50, 25, 100]
    assert factor_log(caplog) == [
        (logging.INFO, "adaptive limit factor 1.00 -> 0.50"),
        (logging.INFO, "adaptive limit factor 0.50 -> 0.25"),
        (logging.INFO, "adaptive limit factor 0.25 -> 1.00"),
    ]
    assert [line for line in lines if "adaptive_factor" in line] == [
        "api.adaptive_factor:0.5|g",
        "api.adaptive_factor:0.25|g",
        "api.adaptive_factor:1.0|g",
    ]


# -- the built-in in_flight factor ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, 1.0), (1, 1.0), (4, 1.0), (5, 0.775), (6, 0.55), (7, 0.325), (8, 0.1), (1000, 0.1)],
)
def test_in_flight_factor_falls_linearly_from_soft_to_hard(count: int, expected: float) -> None:
    assert in_flight(4, 8).factor_for(count) == pytest.approx(expected)


def test_in_flight_floor_and_zero_soft() -> None:
    gentle = in_flight(0, 2, floor=0.5)

    assert [gentle.factor_for(n) for n in range(4)] == [1.0, 0.75, 0.5, 0.5]
    assert gentle == InFlight(soft=0, hard=2, floor=0.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((4, 4), r"invalid in_flight\(soft=4, hard=4\): need 0 <= soft < hard"),
        ((8, 4), r"invalid in_flight\(soft=8, hard=4\): need 0 <= soft < hard"),
        ((-1, 4), r"invalid in_flight\(soft=-1, hard=4\): need 0 <= soft < hard"),
        ((4, 8, 0), r"invalid in_flight floor 0: expected \(0, 1\]"),
        ((4, 8, 1.5), r"invalid in_flight floor 1.5: expected \(0, 1\]"),
    ],
)
def test_in_flight_refuses_bad_bounds(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        in_flight(*args)


def test_in_flight_requests_shrink_the_limit_and_it_recovers(
    make_app: Callable[..., Flask],
    backend: LiveBackend,
    gate: Gate,
    statsd: StatsdListener,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 1 up to 2 requests in flight, then 0.75 at 3 and the floor 0.5 from 4 on.
    app = adaptive_app(
        make_app,
        backend,
        gate,
        QUOTA_ADAPTIVE=in_flight(soft=2, hard=4, floor=0.5),
        QUOTA_STATSD_HOST="127.0.0.1",
        QUOTA_STATSD_PORT=statsd.port,
    )

    with caplog.at_level(logging.INFO, logger="flask_quota"):
        alone = limit_now(app)  # 1 in flight: this one
        gate.send(app, "/work?hold=1", {}, count=2)
        beside_two = limit_now(app)  # 3 in flight
        gate.send(app, "/work?hold=1", {}, count=1)
        beside_three = limit_now(app)  # 4 in flight
        statuses = gate.open()
        after = limit_now(app)  # 1 in flight again
    lines = statsd.wait_for("quota.adaptive_factor:1.0|g")

    assert [alone, beside_two, beside_three, after] == [100, 75, 50, 100]
    assert statuses == [200, 200, 200]
    assert factor_log(caplog) == [
        (logging.INFO, "adaptive limit factor 1.00 -> 0.75"),
        (logging.INFO, "adaptive limit factor 0.75 -> 0.50"),
        (logging.INFO, "adaptive limit factor 0.50 -> 1.00"),
    ]
    assert [line for line in lines if "adaptive_factor" in line] == [
        "quota.adaptive_factor:0.75|g",
        "quota.adaptive_factor:0.5|g",
        "quota.adaptive_factor:1.0|g",
    ]


def test_in_flight_from_config_counts_this_apps_requests(
    make_app: Callable[..., Flask], backend: LiveBackend, gate: Gate
) -> None:
    app = adaptive_app(make_app, backend, gate, QUOTA_ADAPTIVE="in_flight:0:2:0.2")

    alone = limit_now(app)  # 1 in flight: 1 - 1/2 x 0.8 = 0.6
    gate.send(app, "/work?hold=1", {}, count=1)
    beside_one = limit_now(app)  # 2 in flight: the floor
    gate.open()

    assert (alone, beside_one) == (60, 20)
