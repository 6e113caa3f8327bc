"""End-to-end cost of a Flask request behind flask-quota, Flask-Limiter or no limiter, in-process.

Usage: ``python benchmarks/bench_e2e.py [--quick] [--profile]`` from the repository root, with
the interpreter of the venv whose ``flask_quota`` is to be measured.

Each contender is an app from ``apps.py`` (same view, same authentication hook; 1 limit per IP,
or 4 stacked: global, blueprint, per user, per IP; fixed window; headers on), plus the same app
with one bare ``EVALSHA`` per request and no limiter (the floor of any limiter that makes one
round trip), each called through its WSGI callable with a prepared environ: no sockets, no test
client, so the only network traffic is the limiter's own, to a private ``redis-server`` on a
free loopback port (``_redis_server.py``).

1. traffic: round trips, commands and bytes per request, counted on the limiter's own connection
   pool (``_wire.CountingConnection`` put in place of its connection class), and commands the
   server executed per request (``INFO commandstats`` deltas, Lua's included);
2. latency: microseconds per request, in blocks of N requests, every contender once per round,
   the order rotating each round; overheads are taken against the no-limiter block of the same
   round, ratios per round, then medians over rounds. Reference rows run in the same
   rotation and take flask-quota's overhead apart without a profiler: a bare ``EVALSHA`` of
   an empty script (the floor of one round trip), flask-quota's storage call alone (one
   request's ``evaluate`` arguments, replayed), and flask-quota's app with that call stubbed
   (its answer returned at once: the extension's own Python);
3. with ``--profile``: where flask-quota's 4-limit request, admitted and refused, spends its
   time, by cProfile.

Limits are far above what one client sends; a refused request aborts the run, except in the
two *refused* scenarios, whose per-IP limit (checked last) is ``1/day`` and where every request
after the first must be a 429.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import apps
import redis
from _redis_server import PrivateRedis
from _wire import CountingConnection, WireCounter
from apps import Contender
from bench_core import command_stats, cpu_model, git, markdown_table, measured_revision
from flask import Flask
from werkzeug.test import EnvironBuilder

import flask_quota

CLIENT_IP: Final = "10.0.0.1"
USER_ID: Final = "1"
#: Requests each app serves before anything is counted or timed: connections, scripts, caches.
WARMUP_REQUESTS: Final = 50
#: Microseconds per request of each runner (an app or a reference row), one per round.
Samples = dict[str, list[float]]
#: A script that does nothing: one ``EVALSHA`` round trip is the floor of any one-call design.
EMPTY_SCRIPT: Final = apps.EMPTY_SCRIPT
#: The app with one bare EVALSHA per request, as labelled in the report.
ONE_ROUND_TRIP_LABEL: Final = f"one round trip (Flask app, EVALSHA {EMPTY_SCRIPT!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    rounds: int
    requests: int
    traffic_requests: int
    profile_requests: int


FULL: Final = Settings(rounds=30, requests=300, traffic_requests=200, profile_requests=3000)
QUICK: Final = Settings(rounds=4, requests=100, traffic_requests=50, profile_requests=500)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One app under test: a contender, its number of limits, and whether it refuses."""

    contender: Contender
    limits: int = 0
    refuse: bool = False

    @property
    def label(self) -> str:
        if self.contender is Contender.NONE:
            return "no limiter"
        if self.contender is Contender.ONE_ROUND_TRIP:
            return ONE_ROUND_TRIP_LABEL
        return f"{self.contender.value} x{self.limits}" + (" refused" if self.refuse else "")

    @property
    def status(self) -> int:
        return 429 if self.refuse else 200

    def build(self, redis_url: str) -> Flask:
        return apps.create_app(self.contender.value, redis_url, max(self.limits, 1), self.refuse)


NO_LIMITER: Final = Scenario(contender=Contender.NONE)
ONE_ROUND_TRIP: Final = Scenario(contender=Contender.ONE_ROUND_TRIP)
QUOTA_1: Final = Scenario(contender=Contender.QUOTA, limits=1)
LIMITER_1: Final = Scenario(contender=Contender.LIMITER, limits=1)
QUOTA_4: Final = Scenario(contender=Contender.QUOTA, limits=4)
LIMITER_4: Final = Scenario(contender=Contender.LIMITER, limits=4)
QUOTA_4_REFUSED: Final = Scenario(contender=Contender.QUOTA, limits=4, refuse=True)
LIMITER_4_REFUSED: Final = Scenario(contender=Contender.LIMITER, limits=4, refuse=True)
SCENARIOS: Final = (
    NO_LIMITER,
    ONE_ROUND_TRIP,
    QUOTA_1,
    LIMITER_1,
    QUOTA_4,
    LIMITER_4,
    QUOTA_4_REFUSED,
    LIMITER_4_REFUSED,
)
#: The reference row of the latency table: one bare EVALSHA, no Flask.
EMPTY_EVALSHA: Final = "redis-py EVALSHA 'return 0' (no Flask)"


# -- calling an app --------------------------------------------------------------------------


def request_environ() -> dict[str, Any]:
    """``GET /api/item`` from one client IP and one user, as a WSGI server would pass it."""
    builder = EnvironBuilder(
        path=apps.PATH,
        headers=[(apps.USER_HEADER, f"{apps.USER_TOKEN_PREFIX}{USER_ID}")],
        environ_base={"REMOTE_ADDR": CLIENT_IP},
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


class WsgiCaller:
    """Calls an app's WSGI callable with a copy of one prepared environ and drains the body."""

    def __init__(self, app: Flask, expected_status: int) -> None:
        self._app = app
        self._environ = request_environ()
        self._expected = f"{expected_status} "
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        self.status = status
        self.headers = headers
        return _discard

    def request(self, check: bool = True) -> None:
        """One request; with ``check``, anything but the expected status aborts the run."""
        body: Iterable[bytes] = self._app(dict(self._environ), self._start_response)
        try:
            for _chunk in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        if check and not self.status.startswith(self._expected):
            raise SystemExit(f"expected {self._expected.strip()}, got {self.status!r}")


def _discard(_data: bytes) -> object:
    return None


def run_requests(caller: WsgiCaller, count: int) -> None:
    for _ in range(count):
        caller.request()


def warm_up(caller: WsgiCaller, count: int = WARMUP_REQUESTS) -> None:
    """First requests: connections opened, scripts loaded, plans compiled; a refusing app's one
    admitted request spent (its status is not checked)."""
    caller.request(check=False)
    run_requests(caller, count - 1)


# -- phase 1: traffic ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Traffic:
    """Per-request averages for one scenario."""

    round_trips: float
    commands_sent: float
    bytes_sent: float
    commands_executed: float
    #: Server time in EVALSHA calls, which includes the commands their scripts run.
    script_us: float
    executed_by_name: dict[str, float]
    rate_limit_headers: tuple[str, ...]


def count_round_trips(pool: redis.ConnectionPool, counter: WireCounter) -> None:
    """Make ``pool``'s connections count into ``counter``, keeping every other setting."""
    pool.connection_class = CountingConnection
    pool.connection_kwargs = {**pool.connection_kwargs, "counter": counter}
    pool.reset()  # drops any connection made before, which would not count


def measure_traffic(scenario: Scenario, redis_url: str, admin: redis.Redis, count: int) -> Traffic:
    app = scenario.build(redis_url)
    counter = WireCounter()
    pool = apps.redis_pool(app)
    if pool is not None:
        count_round_trips(pool, counter)
    caller = WsgiCaller(app, scenario.status)
    warm_up(caller)
    counter.reset()
    before = command_stats(admin)
    run_requests(caller, count)
    executed = command_stats(admin) - before
    return Traffic(
        round_trips=counter.round_trips / count,
        commands_sent=counter.commands / count,
        bytes_sent=counter.bytes_sent / count,
        commands_executed=executed.calls.total() / count,
        script_us=executed.script_us / count,
        executed_by_name={name: calls / count for name, calls in sorted(executed.calls.items())},
        rate_limit_headers=tuple(name for name, _ in caller.headers if is_rate_limit_header(name)),
    )


def is_rate_limit_header(name: str) -> bool:
    return "ratelimit" in name.lower() or name == "Retry-After"


def run_traffic(redis_url: str, admin: redis.Redis, count: int) -> dict[Scenario, Traffic]:
    return {s: measure_traffic(s, redis_url, admin, count) for s in SCENARIOS}


# -- phase 2: latency ------------------------------------------------------------------------


def time_block(run: Callable[[int], None], count: int) -> float:
    """Microseconds per request over ``count`` requests, after one untimed request (so no
    block pays for having been idle while the others ran)."""
    run(1)
    gc.collect()
    start = time.perf_counter_ns()
    run(count)
    return (time.perf_counter_ns() - start) / count / 1000


def empty_evalsha(redis_url: str) -> Callable[[int], None]:
    """``count`` bare round trips: an EVALSHA of a script that does nothing."""
    script = redis.Redis.from_url(redis_url).register_script(EMPTY_SCRIPT)

    def run(count: int) -> None:
        for _ in range(count):
            script()

    return run


@dataclass(frozen=True, slots=True)
class StorageCall:
    """One real ``evaluate`` call of flask-quota's storage: its arguments and its answer."""

    evaluate: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any


def capture_storage_call(app: Flask, caller: WsgiCaller) -> StorageCall:
    """Record the storage call of one request of ``app``."""
    storage = apps.quota_storage(app)
    evaluate = storage.evaluate
    calls: list[StorageCall] = []

    def capture(*args: Any, **kwargs: Any) -> Any:
        result = evaluate(*args, **kwargs)
        calls.append(StorageCall(evaluate, args, kwargs, result))
        return result

    storage.evaluate = capture
    try:
        caller.request()
    finally:
        del storage.evaluate  # the class's method again
    return calls[0]


def storage_replay(call: StorageCall) -> Callable[[int], None]:
    """flask-quota's storage call alone, replayed with one request's arguments (keys and
    Check objects built once; packing, round trip, Lua and unpacking each time)."""

    def run(count: int) -> None:
        for _ in range(count):
            call.evaluate(*call.args, **call.kwargs)

    return run


def stubbed_storage(scenario: Scenario, redis_url: str, call: StorageCall) -> Callable[[int], None]:
    """A second app of ``scenario`` whose storage call returns ``call``'s answer at once:
    flask-quota's own Python in the request, without packing, network or Lua."""
    app = scenario.build(redis_url)
    apps.quota_storage(app).evaluate = lambda *args, **kwargs: call.result
    caller = WsgiCaller(app, scenario.status)
    warm_up(caller)
    return partial(run_requests, caller)


def replay_label(scenario: Scenario) -> str:
    return f"{scenario.label}: storage.evaluate alone (no Flask)"


def stubbed_label(scenario: Scenario) -> str:
    return f"{scenario.label}: storage call stubbed (no Redis)"


#: The flask-quota apps whose time is taken apart with the two kinds of reference rows.
DECOMPOSED: Final = (QUOTA_1, QUOTA_4)


def build_runners(redis_url: str) -> dict[str, Callable[[int], None]]:
    """Every scenario's app, warmed up, plus the reference rows: a bare round trip, and for
    flask-quota its storage call replayed and its app with the storage call stubbed."""
    runners: dict[str, Callable[[int], None]] = {EMPTY_EVALSHA: empty_evalsha(redis_url)}
    for scenario in SCENARIOS:
        app = scenario.build(redis_url)
        caller = WsgiCaller(app, scenario.status)
        warm_up(caller)
        runners[scenario.label] = partial(run_requests, caller)
        if scenario in DECOMPOSED:
            call = capture_storage_call(app, caller)
            runners[replay_label(scenario)] = storage_replay(call)
            runners[stubbed_label(scenario)] = stubbed_storage(scenario, redis_url, call)
    for run in runners.values():
        run(WARMUP_REQUESTS)
    return runners


def rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def run_latency(redis_url: str, settings: Settings) -> Samples:
    """µs per request of every runner, one sample per round, the order rotating each round."""
    runners = build_runners(redis_url)
    samples: Samples = {label: [] for label in runners}
    for round_no in range(settings.rounds):
        for label in rotated(list(runners), round_no):
            samples[label].append(time_block(runners[label], settings.requests))
    return samples


# -- phase 3: profile ------------------------------------------------------------------------

#: flask-quota's per-request path, outermost first: (file suffix, function, what it is).
STAGES: Final = (
    ("flask/app.py", "wsgi_app", "the whole request, Flask included"),
    ("flask_quota/extension.py", "_before_request", "flask-quota's before_request hook"),
    ("flask_quota/_request.py", "refresh_stale_live_config", ". live-config staleness check"),
    ("flask_quota/_registry.py", "get", ". endpoint plan lookup"),
    ("flask_quota/_request.py", "check_request", ". check_request"),
    ("flask_quota/_request.py", "_collect", ". . identities, keys, Check objects"),
    ("flask_quota/keys.py", "limit_key", ". . . limit keys"),
    ("flask_quota/keys.py", "identity_key", ". . . allow/block/refusal keys"),
    ("flask_quota/_request.py", "_evaluate", ". . the storage call"),
    ("flask_quota/storage/redis.py", "pack_checks", ". . . KEYS/ARGV lists"),
    ("redis/commands/core.py", "__call__", ". . . EVALSHA: redis-py, network, Lua"),
    ("redis/connection.py", "pack", ". . . . command packing (RESP)"),
    ("redis/connection.py", "read_response", ". . . . waiting for and parsing the reply"),
    ("flask_quota/storage/redis.py", "unpack_reply", ". . . Decision objects from the reply"),
    ("flask_quota/_request.py", "_settle", ". . decisions -> g._quota, metrics, 429"),
    ("flask_quota/_request.py", "_refuse", ". . . the 429 exception, raised or rendered"),
    ("flask_quota/_errorhandlers.py", "renders_itself", ". . . . the error-handler lookup"),
    ("benchmarks/apps.py", "item", "the view"),
    ("flask/app.py", "handle_user_exception", "Flask's exception handling"),
    ("flask/app.py", "make_response", "Flask's make_response"),
    ("werkzeug/test.py", "run_wsgi_app", ". the 429 exception run as a WSGI app (force_type)"),
    ("flask_quota/extension.py", "_after_request", "flask-quota's after_request hook (headers)"),
    ("flask_quota/extension.py", "_teardown_request", "flask-quota's teardown hook"),
)

#: Where own time (tottime) is spent, by where the code lives; first match wins. Builtins and
#: the standard library are charged to the area of their callers.
AREAS: Final = (
    ("flask_quota/keys.py", "flask-quota keys.py (escaping, hash tags, key strings)"),
    ("flask_quota/", "flask-quota, everything else"),
    ("redis/_parsers/encoders.py", "redis-py command packing"),
    ("redis/connection.py:pack", "redis-py command packing"),
    ("redis/_parsers/", "redis-py reply parsing"),
    ("redis/", "redis-py client, script, pool, connection"),
    ("_socket.socket", "socket system calls (send, recv: includes waiting for Redis)"),
    ("flask/", "Flask and Werkzeug"),
    ("werkzeug/", "Flask and Werkzeug"),
    ("benchmarks/", "the benchmark's WSGI loop and view"),
)
OTHER_AREA: Final = "other"

#: pstats' key and row of one function: (file, line, name), (calls, primitive, tottime,
#: cumtime, callers), callers mapping each caller's key to its share (..., tottime, cumtime).
StatKey = tuple[str, int, str]
StatRow = tuple[int, int, float, float, dict[StatKey, tuple[int, int, float, float]]]
Stats = dict[StatKey, StatRow]


def profile_stats(redis_url: str, scenario: Scenario, count: int) -> Stats:
    caller = WsgiCaller(scenario.build(redis_url), scenario.status)
    warm_up(caller)
    profiler = cProfile.Profile()
    profiler.runcall(run_requests, caller, count)
    stats: Stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    return stats


def stage_us(stats: Stats, suffix: str, name: str, count: int) -> str:
    """Cumulative µs per request of one function (pstats counts a recursion once)."""
    rows = [
        row
        for (file, _, function), row in stats.items()
        if function == name and file.endswith(suffix)
    ]
    if not rows:
        return "-"
    calls = sum(row[0] for row in rows) / count
    return f"{sum(row[3] for row in rows) / count * 1e6:.0f} ({calls:g})"


def stage_lines(profiles: dict[str, Stats], count: int) -> list[str]:
    rows = [
        [what, f"`{name}`", *(stage_us(stats, suffix, name, count) for stats in profiles.values())]
        for suffix, name, what in STAGES
    ]
    headers = ["stage", "function", *(f"{label}: us (calls)" for label in profiles)]
    return markdown_table(headers, rows)


def named_area(key: StatKey) -> str | None:
    file, _, function = key
    where = f"{file}:{function}" if file.startswith("/") else function
    return next((area for fragment, area in AREAS if fragment in where), None)


def area_seconds(stats: Stats) -> dict[str, float]:
    """Own time by area; a builtin or stdlib function's time goes to its callers' areas."""
    by_area: dict[str, float] = {}
    for key, row in stats.items():
        area = named_area(key)
        if area is not None:
            by_area[area] = by_area.get(area, 0.0) + row[2]
            continue
        for caller, share in row[4].items():
            caller_area = named_area(caller) or OTHER_AREA
            by_area[caller_area] = by_area.get(caller_area, 0.0) + share[2]
    return by_area


def area_lines(profiles: dict[str, Stats], count: int) -> list[str]:
    tables = {label: area_seconds(stats) for label, stats in profiles.items()}
    first = next(iter(tables.values()))
    areas = sorted({a for table in tables.values() for a in table}, key=lambda a: -first.get(a, 0))
    rows = []
    for area in areas:
        cells = []
        for table in tables.values():
            seconds = table.get(area, 0.0)
            cells.append(f"{seconds / count * 1e6:.0f} ({seconds / sum(table.values()):.0%})")
        rows.append([area, *cells])
    return markdown_table(["area", *(f"{label}: own us (share)" for label in tables)], rows)


def profile_lines(redis_url: str, settings: Settings) -> list[str]:
    """cProfile of flask-quota's 4-limit request, admitted and refused. The profiler inflates
    Python time, most of all in code making many small calls: compare shares, not µs."""
    count = settings.profile_requests
    profiles = {s.label: profile_stats(redis_url, s, count) for s in (QUOTA_4, QUOTA_4_REFUSED)}
    return [
        f"cProfile, {count} requests each; all times per request and inflated by the profiler.",
        "",
        *stage_lines(profiles, count),
        "",
        *area_lines(profiles, count),
    ]


# -- report ----------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a / b, each round's pair measured in the same round."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def overheads(samples: Samples, label: str) -> list[float]:
    """Per round: this scenario's µs per request minus the no-limiter app's."""
    base = samples[NO_LIMITER.label]
    return [x - b for x, b in zip(samples[label], base, strict=True)]


def overhead_ratio(samples: Samples, mine: Scenario, theirs: Scenario) -> float:
    """Median over rounds of (mine - no limiter) / (theirs - no limiter)."""
    return paired_ratio(overheads(samples, mine.label), overheads(samples, theirs.label))


def latency_lines(samples: Samples) -> list[str]:
    """Every runner; the overhead column for Flask apps behind a limiter (stubbed included)."""
    no_overhead = {NO_LIMITER.label, EMPTY_EVALSHA, *map(replay_label, DECOMPOSED)}
    rows = []
    for label, values in samples.items():
        extra = "-" if label in no_overhead else spread(overheads(samples, label))
        rows.append([label, spread(values), extra])
    headers = ["app", "us/request", "overhead over no limiter, us"]
    return markdown_table(headers, rows)


def ratio_lines(samples: Samples) -> list[str]:
    rows = [
        [
            f"{mine.label} / {theirs.label}",
            f"{statistics.median(overheads(samples, mine.label)):.1f}",
            f"{statistics.median(overheads(samples, theirs.label)):.1f}",
            f"{overhead_ratio(samples, mine, theirs):.2f}",
            f"{paired_ratio(samples[mine.label], samples[theirs.label]):.2f}",
        ]
        for mine, theirs in (
            (QUOTA_1, LIMITER_1),
            (QUOTA_4, LIMITER_4),
            (QUOTA_4_REFUSED, QUOTA_4),
            (LIMITER_4_REFUSED, LIMITER_4),
        )
    ]
    headers = ["pair", "overhead A, us", "overhead B, us", "overhead ratio A/B", "time ratio A/B"]
    return markdown_table(headers, rows)


def differences(samples: Samples, a: str, *others: str) -> float:
    """Median over rounds of a minus the others, all measured in the same round."""
    rounds = zip(samples[a], *(samples[o] for o in others), strict=True)
    return statistics.median(float(first - sum(rest)) for first, *rest in rounds)


def decomposition_lines(samples: Samples, traffic: dict[Scenario, Traffic]) -> list[str]:
    """flask-quota's overhead taken apart without a profiler, from the reference rows."""
    rows = []
    for scenario in DECOMPOSED:
        label, replay = scenario.label, replay_label(scenario)
        call = statistics.median(samples[replay])
        round_trip = statistics.median(samples[EMPTY_EVALSHA])
        lua = traffic[scenario].script_us
        rows.append(
            [
                label,
                f"{differences(samples, label, NO_LIMITER.label):.0f}",
                f"{differences(samples, stubbed_label(scenario), NO_LIMITER.label):.0f}",
                f"{call:.0f}",
                f"{round_trip:.0f}",
                f"{lua:.0f}",
                f"{call - round_trip - lua:.0f}",
                f"{differences(samples, label, stubbed_label(scenario), replay):.0f}",
            ]
        )
    headers = [
        "app",
        "overhead",
        "A: Python around the storage call (stubbed app - no limiter)",
        "B: storage call alone (replayed)",
        "B1: bare EVALSHA round trip",
        "B2: Lua, server time",
        "B3: rest of B (packing, parsing, payload)",
        "overhead - A - B",
    ]
    return markdown_table(headers, rows)


def breakdown(by_name: dict[str, float]) -> str:
    return ", ".join(f"{name} {calls:g}" for name, calls in by_name.items()) or "-"


def traffic_lines(traffic: dict[Scenario, Traffic]) -> list[str]:
    rows = [
        [
            scenario.label,
            f"{found.round_trips:g}",
            f"{found.commands_sent:g}",
            f"{found.bytes_sent:.0f}",
            f"{found.commands_executed:g}",
            f"{found.script_us:.1f}",
            breakdown(found.executed_by_name),
            ", ".join(found.rate_limit_headers) or "-",
        ]
        for scenario, found in traffic.items()
    ]
    headers = [
        "app",
        "round trips",
        "commands sent",
        "bytes sent",
        "commands executed",
        "EVALSHA server us",
        "executed by the server",
        "rate-limit headers",
    ]
    return markdown_table(headers, rows)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def target_lines(traffic: dict[Scenario, Traffic], samples: Samples) -> list[str]:
    one = overhead_ratio(samples, QUOTA_1, LIMITER_1)
    four = overhead_ratio(samples, QUOTA_4, LIMITER_4)
    trips = (traffic[QUOTA_1].round_trips, traffic[QUOTA_4].round_trips)
    refused = paired_ratio(samples[QUOTA_4_REFUSED.label], samples[QUOTA_4.label])
    return [
        f"- overhead ratio, 4 limits: {four:.2f} (target <= 0.25) -> {verdict(four <= 0.25)}",
        f"- overhead ratio, 1 limit: {one:.2f} (target <= 0.50) -> {verdict(one <= 0.5)}",
        f"- round trips per request: {trips[0]:g} (1 limit), {trips[1]:g} (4 limits)"
        f" (target 1) -> {verdict(trips == (1, 1))}",
        f"- refused / admitted, 4 limits: {refused:.2f} (target <= 1) -> {verdict(refused <= 1)}",
    ]


def revision_line() -> str:
    checkout = Path(flask_quota.__file__).resolve().parent.parent
    commit = git(checkout, "rev-parse", "HEAD")
    return f"- flask_quota from `{checkout}`: commit {commit} ({measured_revision()})"


def setup_lines(admin: redis.Redis, command: str) -> list[str]:
    """Where and what was measured; shared with ``bench_wrk.py``."""
    server = admin.info("server")
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("flask-quota", "Flask", "Werkzeug", "Flask-Limiter", "limits", "redis")
    )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"- command: `{command}`",
        revision_line(),
        f"- Redis {server['redis_version']}, private server on 127.0.0.1 (loopback TCP,"
        " `--save '' --appendonly no`)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); {versions}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average at start: {load}",
    ]


def report(
    setup: list[str],
    traffic: dict[Scenario, Traffic],
    samples: Samples,
    profile: list[str],
) -> str:
    sections = [
        ["## Setup", "", *setup],
        ["## Traffic per request", "", *traffic_lines(traffic)],
        [
            "## Latency: microseconds per request, median [min-max] over rounds",
            "",
            "overhead = the app's us/request minus the no-limiter app's in the same round",
            "",
            *latency_lines(samples),
        ],
        [
            "## Ratios (medians over rounds of per-round ratios)",
            "",
            *ratio_lines(samples),
        ],
        [
            "## flask-quota's overhead taken apart, us per request (medians over rounds)",
            "",
            *decomposition_lines(samples, traffic),
        ],
        ["## Targets", "", *target_lines(traffic, samples)],
    ]
    if profile:
        sections.append(["## Profile", "", *profile])
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def parse_args(argv: Sequence[str]) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds")
    parser.add_argument("--rounds", type=int, help="latency rounds (default 30; quick 4)")
    parser.add_argument("--requests", type=int, help="requests per latency block (default 300)")
    parser.add_argument("--profile", action="store_true", help="add a cProfile breakdown")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    settings = Settings(
        rounds=args.rounds or base.rounds,
        requests=args.requests or base.requests,
        traffic_requests=base.traffic_requests,
        profile_requests=base.profile_requests,
    )
    return settings, args.profile


@dataclass(frozen=True, slots=True)
class Timer:
    started: float

    def lines(self, settings: Settings) -> list[str]:
        return [
            f"- {settings.rounds} rounds x {settings.requests} requests per block, every app once"
            f" per round, order rotating; traffic: {settings.traffic_requests} requests",
            f"- wall time: {time.monotonic() - self.started:.0f} s",
        ]


@dataclass(frozen=True, slots=True)
class Phases:
    traffic: dict[Scenario, Traffic]
    samples: Samples
    profile: list[str]


def run_phases(server: PrivateRedis, settings: Settings, profile: bool) -> Phases:
    """The three phases, each on an empty server (apps of one phase share counters, harmlessly)."""
    admin = redis.Redis.from_url(server.url)
    try:
        admin.flushall()
        traffic = run_traffic(server.url, admin, settings.traffic_requests)
        admin.flushall()
        samples = run_latency(server.url, settings)
        admin.flushall()
        return Phases(traffic, samples, profile_lines(server.url, settings) if profile else [])
    finally:
        admin.close()


def main(argv: Sequence[str]) -> int:
    settings, profile = parse_args(argv)
    # The refusing apps trip flask-quota's repeat-offender warning once; keep it off stderr.
    logging.getLogger("flask_quota").addHandler(logging.NullHandler())
    command = " ".join(["python", "benchmarks/bench_e2e.py", *argv])
    timer = Timer(time.monotonic())
    with PrivateRedis() as server:
        admin = redis.Redis.from_url(server.url)
        setup = setup_lines(admin, command)
        admin.close()
        phases = run_phases(server, settings, profile)
    setup += timer.lines(settings)
    sys.stdout.write(report(setup, phases.traffic, phases.samples, phases.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
