"""Live overrides and the emergency factor: set from outside, obeyed everywhere, no restart.

Two spawned worker processes build the app on the test Redis and serve requests through their
test clients on command over a pipe; an operator's third app instance in this process runs the
CLI. A process learns of a change from the config version its next request's storage call
returns, so that request may still be decided on the old number: the contract is that the
change is obeyed within one second, i.e. by each process's second request at the latest.

The other tests run on ``memory://`` and Redis with the manual clock, so timed overrides lapse
when the test moves the clock.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import Result
from flask import Flask, request

from flask_quota import ConfigurationError, Quota
from flask_quota.storage import RedisStorage
from tests._workers import spawned
from tests.conftest import RedisServer
from tests.live.conftest import LiveBackend, WireLog, limit_header, state_of

#: A spawned interpreter imports Flask and flask-quota first: generous, never waited out.
START_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 10.0
#: API.md: "obeyed by every process within 1 second".
PROPAGATION_S = 1.0


def by_user() -> str:
    return request.headers.get("X-User", "anonymous")


def make_app(strategy: str = "gcra", **config: Any) -> tuple[Flask, Quota]:
    """``/search``: ``100/hour`` named ``search``; ``/items``: an unnamed ``50/hour``, and a
    callable ``40/hour``; all per ``X-User``, GCRA by default (no window boundary can fall
    into a test that runs on real time)."""
    app = Flask(__name__)
    app.config.update(TESTING=True, QUOTA_STORAGE_TIMEOUT=2.0, **config)
    quota = Quota(app, key=by_user, strategy=strategy)

    @app.get("/search")
    @quota.limit("100/hour", name="search")
    def search() -> str:
        return "search"

    @app.get("/items")
    @quota.limit("50/hour")
    @quota.limit(lambda: "40/hour", scope="items-dynamic")
    def items() -> str:
        return "items"

    return app, quota


def cli(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["quota", *args])


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    out: str = result.stdout
    return out


# -- two processes --------------------------------------------------------------------------


def serve(conn: multiprocessing.connection.Connection, url: str, key_prefix: str) -> None:
    """A worker: build the app, then answer a user name with ``(status, X-RateLimit-Limit,
    commands sent to Redis)`` for one ``GET /search``, until told ``None``."""
    app, _ = make_app(QUOTA_STORAGE_URI=url, QUOTA_KEY_PREFIX=key_prefix)
    storage = state_of(app).storage
    assert isinstance(storage, RedisStorage)
    wire = WireLog()
    wire.attach(storage.client)
    client = app.test_client()
    conn.send("ready")
    while (user := conn.recv()) is not None:
        wire.take()
        response = client.get("/search", headers={"X-User": user})
        conn.send((response.status_code, limit_header(response), wire.take()))
    storage.client.close()
    conn.close()


Answer = tuple[int, int | None, list[str]]


@dataclass
class Worker:
    process: Any
    conn: multiprocessing.connection.Connection

    def get(self, user: str) -> Answer:
        self.conn.send(user)
        assert self.conn.poll(REPLY_TIMEOUT_S), "worker did not answer"
        status, limit, sent = self.conn.recv()
        return status, limit, sent


@pytest.fixture
def workers(redis_server: RedisServer, key_prefix: str) -> Iterator[tuple[Worker, Worker]]:
    with spawned(serve, (redis_server.url, key_prefix), 2, START_TIMEOUT_S) as started:
        first, second = (Worker(process, conn) for process, conn in started)
        yield first, second


def obeyed(worker: Worker, user: str, limit: int, since: float) -> tuple[list[Answer], float]:
    """The worker's first two answers after a change, and the wall time from ``since`` to
    the first answer that shows ``limit``."""
    answers = [worker.get(user)]
    if answers[0][1] != limit:
        answers.append(worker.get(user))
    elapsed = time.monotonic() - since
    if len(answers) == 1:
        answers.append(worker.get(user))
    return answers, elapsed


@pytest.mark.redis
def test_cli_overrides_reach_two_processes_within_a_second_at_one_extra_read(
    workers: tuple[Worker, Worker], redis_server: RedisServer, key_prefix: str
) -> None:
    a, b = workers
    operator, _ = make_app(QUOTA_STORAGE_URI=redis_server.url, QUOTA_KEY_PREFIX=key_prefix)
    assert a.process.pid != b.process.pid
    for worker in (a, b):  # connect, load the script, read the config once
        assert worker.get("warm-up")[:2] == (200, 100)

    # Steady state: one round trip per request, the EVALSHA that also returns the version.
    steady = [worker.get("alice") for worker in (a, b, a, b)]
    assert steady == [(200, 100, ["EVALSHA"])] * 4

    changed_at = time.monotonic()
    assert ok(cli(operator, "set", "search", "3/hour")) == "search = 3/hour until unset.\n"
    seen_a, elapsed_a = obeyed(a, "bob", 3, changed_at)
    seen_b, elapsed_b = obeyed(b, "bob", 3, changed_at)

    for seen in (seen_a, seen_b):
        # The call that brings the new version is decided on the number it was sent with;
        # then exactly one extra read (the config hash), once per process.
        assert seen[0][0] == 200 and seen[0][1] in (100, 3)
        assert seen[0][2] == ["EVALSHA", "HGETALL"]
        assert seen[1][1:] == (3, ["EVALSHA"])
    assert elapsed_a < PROPAGATION_S and elapsed_b < PROPAGATION_S
    # Both enforce it, on the counter they share: 3 an hour in all.
    carol = [a.get("carol"), b.get("carol"), a.get("carol"), b.get("carol")]
    assert [(status, limit) for status, limit, _ in carol] == [(200, 3)] * 3 + [(429, 3)]
    assert [sent for _, _, sent in carol] == [["EVALSHA"]] * 4

    changed_at = time.monotonic()
    assert ok(cli(operator, "unset", "search")) == "Unset search.\n"
    back_a, elapsed_a = obeyed(a, "erin", 100, changed_at)
    back_b, elapsed_b = obeyed(b, "erin", 100, changed_at)

    for seen in (back_a, back_b):
        assert seen[0][2] == ["EVALSHA", "HGETALL"]
        assert seen[1] == (200, 100, ["EVALSHA"])
    assert elapsed_a < PROPAGATION_S and elapsed_b < PROPAGATION_S

    changed_at = time.monotonic()
    ok(cli(operator, "emergency", "on", "--factor", "0.1"))
    scaled_a, elapsed_a = obeyed(a, "dave", 10, changed_at)
    scaled_b, elapsed_b = obeyed(b, "dave", 10, changed_at)
    ok(cli(operator, "emergency", "off"))
    restored = [obeyed(worker, "dave", 100, time.monotonic())[0] for worker in (a, b)]

    for seen in (scaled_a, scaled_b):
        assert seen[0][2] == ["EVALSHA", "HGETALL"]
        assert seen[1] == (200, 10, ["EVALSHA"])
    assert elapsed_a < PROPAGATION_S and elapsed_b < PROPAGATION_S
    for seen in restored:
        assert seen[0][2] == ["EVALSHA", "HGETALL"]
        assert seen[1] == (200, 100, ["EVALSHA"])


# -- one process: the CLI and the Python API -------------------------------------------------


@pytest.fixture
def live_app(backend: LiveBackend, key_prefix: str) -> tuple[Flask, Quota]:
    app, quota = make_app(QUOTA_KEY_PREFIX=key_prefix)
    backend.attach(app)
    return app, quota


def limits_seen(app: Flask, path: str, *users: str) -> list[int | None]:
    client = app.test_client()
    return [limit_header(client.get(path, headers={"X-User": user})) for user in users]


def test_flask_quota_set_and_unset_change_a_named_limit(
    backend: LiveBackend, key_prefix: str
) -> None:
    # A window counts requests, so the count carries over a change exactly (a GCRA or leaky
    # bucket state is a time, spent at the old rate).
    app, _ = make_app("fixed_window", QUOTA_KEY_PREFIX=key_prefix)
    backend.attach(app)
    client = app.test_client()

    set_out = ok(cli(app, "set", "search", "2/hour"))
    # This process obeys at once (the CLI refreshes it); the others at their next requests.
    refused = [client.get("/search", headers={"X-User": "u"}) for _ in range(3)]
    listed = ok(cli(app, "overrides"))
    listed_json = ok(cli(app, "overrides", "--json"))
    unset_out = ok(cli(app, "unset", "search"))
    after = client.get("/search", headers={"X-User": "u"})
    again = cli(app, "unset", "search")

    assert set_out == "search = 2/hour until unset.\n"
    assert [(r.status_code, limit_header(r)) for r in refused] == [(200, 2), (200, 2), (429, 2)]
    assert [line.split() for line in listed.splitlines()] == [
        ["Name", "Limit", "Expires", "in", "(s)"],
        ["------", "------", "--------------"],
        ["search", "2/hour", "-"],
    ]
    assert listed_json.split() == (
        '[ { "expires_in_s": null, "limit": "2/hour", "name": "search" } ]'.split()
    )
    assert unset_out == "Unset search.\n"
    # Back to 100/hour; the counter carried over (2 used, then this one).
    assert (after.status_code, limit_header(after)) == (200, 100)
    assert after.headers["X-RateLimit-Remaining"] == "97"
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr.splitlines()[-1] == "Error: no override named 'search'"
    assert ok(cli(app, "overrides")) == "No overrides.\n"


def test_an_override_may_name_a_derived_name(live_app: tuple[Flask, Quota]) -> None:
    app, _ = live_app
    names = ok(cli(app, "limits", "--json"))
    assert '"name": "items:50/hour"' in names

    ok(cli(app, "set", "items:50/hour", "1/hour"))
    first, second = (app.test_client().get("/items", headers={"X-User": "u"}) for _ in range(2))

    assert (first.status_code, limit_header(first)) == (200, 1)
    assert second.status_code == 429
    assert second.get_json()["policy"] == "items:50/hour"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "search", "5/fortnight"], "Error: invalid limit '5/fortnight': unit must be"),
        (["set", "search", ""], "Error: invalid limit '': "),
        (["set", "search", "2/hour", "--for", "0"], "Error: Invalid value for '--for': '0' "),
        (
            ["set", "search", "2/hour", "--for", "315360001"],
            "Error: Invalid value for '--for': '315360001' is not a whole number of seconds "
            "from 1 to 315360000 (10 years)",
        ),
        (
            ["set", "search", "2/hour", "--for", "99999999999999999999"],
            "Error: Invalid value for '--for': '99999999999999999999' is not a whole number",
        ),
        (["set", "search"], "Error: Missing argument 'LIMIT'."),
    ],
)
def test_flask_quota_set_refuses_bad_input_in_one_line(
    live_app: tuple[Flask, Quota], backend: LiveBackend, args: list[str], message: str
) -> None:
    app, quota = live_app

    result = cli(app, *args)

    assert result.exit_code != 0
    assert result.stdout == ""
    # One line on every storage: memory://'s per-process note comes only after a success.
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message)
    assert quota.overrides(app=app) == {}


def test_a_timed_override_lapses_by_the_storage_clock(
    live_app: tuple[Flask, Quota], backend: LiveBackend
) -> None:
    app, quota = live_app

    ok(cli(app, "set", "search", "2/hour", "--for", "30"))
    during = limits_seen(app, "/search", "u1")
    listed = quota.overrides(app=app)
    backend.clock.advance(29.999)
    late = limits_seen(app, "/search", "u2")
    listed_late = quota.overrides(app=app)
    backend.clock.advance(0.001)
    listed_lapsed = quota.overrides(app=app)
    after = limits_seen(app, "/search", "u3", "u4")

    assert during == [2] and late == [2]
    assert listed == {"search": {"limit": "2/hour", "expires_in": 30}}
    assert listed_late == {"search": {"limit": "2/hour", "expires_in": 1}}
    assert listed_lapsed == {}
    assert ok(cli(app, "overrides")) == "No overrides.\n"
    # The lapse is seen from the clock that call returns: by the second request at the latest.
    assert after[0] in (2, 100) and after[1] == 100


def test_the_python_api_sets_lists_and_clears_overrides(live_app: tuple[Flask, Quota]) -> None:
    app, quota = live_app

    with app.app_context():  # no app=: the current app
        quota.set_override("search", "3/hour")
        listed = quota.overrides()
    quota.set_override("items:50/hour", "7/hour", ttl=90, app=app)
    both = quota.overrides(app=app)
    seen = limits_seen(app, "/search", "u1") + limits_seen(app, "/items", "u1")
    cleared = quota.clear_override("search", app=app)
    cleared_again = quota.clear_override("search", app=app)
    remaining = quota.overrides(app=app)

    assert listed == {"search": {"limit": "3/hour", "expires_in": None}}
    assert both == {
        "items:50/hour": {"limit": "7/hour", "expires_in": 90},
        "search": {"limit": "3/hour", "expires_in": None},
    }
    assert seen == [3, 7]
    assert (cleared, cleared_again) == (True, False)
    assert remaining == {"items:50/hour": {"limit": "7/hour", "expires_in": 90}}
    assert limits_seen(app, "/search", "u2") == [100]


def test_outside_an_app_context_the_one_app_served_is_meant(
    live_app: tuple[Flask, Quota],
) -> None:
    app, quota = live_app

    quota.set_override("search", "4/hour")
    listed = quota.overrides()

    assert listed == {"search": {"limit": "4/hour", "expires_in": None}}
    assert limits_seen(app, "/search", "u1") == [4]
    assert quota.clear_override("search") is True


def test_outside_an_app_context_several_apps_need_app() -> None:
    quota = Quota()
    apps = [Flask("one"), Flask("two")]
    for each in apps:
        quota.init_app(each)

    with pytest.raises(RuntimeError, match="serves 2 apps .* pass app="):
        quota.set_override("search", "4/hour")
    with apps[1].app_context():
        quota.set_override("search", "4/hour")
    assert quota.overrides(app=apps[1]) == {"search": {"limit": "4/hour", "expires_in": None}}
    assert quota.overrides(app=apps[0]) == {}


@pytest.mark.parametrize(
    ("limit", "ttl", "message"),
    [
        ("5/fortnight", None, "invalid limit '5/fortnight'"),
        ("2/hour", 0, "invalid duration 0: expected seconds > 0"),
        ("2/hour", -5, "invalid duration -5: expected seconds > 0"),
        ("2/hour", True, "invalid duration True: expected seconds > 0"),
        ("2/hour", 315_360_001, r"invalid duration 315360001: .* at most 315360000 \(10 years\)"),
        ("2/hour", 1e300, r"invalid duration 1e\+300: expected seconds > 0, at most 315360000"),
        ("2/hour", float("inf"), "invalid duration inf: expected seconds > 0, at most"),
        ("2/hour", float("nan"), "invalid duration nan: expected seconds > 0, at most"),
    ],
)
def test_the_python_api_refuses_a_bad_limit_or_ttl(
    live_app: tuple[Flask, Quota], limit: str, ttl: Any, message: str
) -> None:
    app, quota = live_app

    with pytest.raises(ConfigurationError, match=message):
        quota.set_override("search", limit, ttl=ttl, app=app)

    assert quota.overrides(app=app) == {}


def test_an_override_wins_over_quota_limits_which_wins_over_the_code(
    backend: LiveBackend, key_prefix: str
) -> None:
    app, quota = make_app(QUOTA_KEY_PREFIX=key_prefix, QUOTA_LIMITS={"search": "20/hour"})
    backend.attach(app)

    configured = limits_seen(app, "/search", "u1")
    quota.set_override("search", "5/hour", app=app)
    overridden = limits_seen(app, "/search", "u2")
    quota.clear_override("search", app=app)
    cleared = limits_seen(app, "/search", "u3")

    assert (configured, overridden, cleared) == ([20], [5], [20])


# -- the emergency switch ----------------------------------------------------------------------


def test_the_emergency_factor_scales_every_limit_until_switched_off(
    live_app: tuple[Flask, Quota],
) -> None:
    app, _ = live_app

    on = ok(cli(app, "emergency", "on", "--factor", "0.1"))
    status = ok(cli(app, "emergency", "status", "--json"))
    scaled = limits_seen(app, "/search", "u1") + limits_seen(app, "/items", "u1")
    refused = [app.test_client().get("/search", headers={"X-User": "u2"}) for _ in range(11)]
    off = ok(cli(app, "emergency", "off"))
    restored = limits_seen(app, "/search", "u3") + limits_seen(app, "/items", "u3")

    assert on == "Emergency on: every limit x 0.1.\n"
    assert status.split() == '{ "active": true, "expires_in_s": null, "factor": 0.1 }'.split()
    # 100/hour -> 10; on /items the most constraining of 50 -> 5 and the callable 40 -> 4.
    assert scaled == [10, 4]
    assert [r.status_code for r in refused] == [200] * 10 + [429]
    assert refused[-1].get_json()["limit"] == 10
    assert off == "Emergency off: limits as configured.\n"
    assert restored == [100, 40]


def test_a_timed_emergency_lapses_by_the_storage_clock(
    live_app: tuple[Flask, Quota], backend: LiveBackend
) -> None:
    app, _ = live_app

    ok(cli(app, "emergency", "on", "--factor", "0.5", "--for", "60"))
    status = ok(cli(app, "emergency", "status"))
    during = limits_seen(app, "/search", "u1")
    backend.clock.advance(60)
    lapsed = ok(cli(app, "emergency", "status"))
    after = limits_seen(app, "/search", "u2", "u3")

    assert status == "Emergency on: every limit x 0.5 for 60 s.\n"
    assert during == [50]
    assert lapsed == "Emergency off: limits as configured.\n"
    assert after[0] in (50, 100) and after[1] == 100


@pytest.mark.redis
@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["on", "--factor", "0"], 1, "Error: invalid factor 0.0: expected a number in (0, 1]"),
        (["on", "--factor", "1.5"], 1, "Error: invalid factor 1.5: expected a number in (0, 1]"),
        (["on", "--factor", "-0.1"], 1, "Error: invalid factor -0.1: expected a number in (0, 1]"),
        (["on", "--factor", "nan"], 1, "Error: invalid factor nan: expected a number in (0, 1]"),
        (["on", "--factor", "lots"], 2, "Error: Invalid value for '--factor': 'lots' is not a"),
        (["on"], 2, "Error: emergency on needs --factor, e.g. --factor 0.1"),
        (
            ["on", "--factor", "0.5", "--for", "99999999999999999999"],
            2,
            "Error: Invalid value for '--for': '99999999999999999999' is not a whole number of "
            "seconds from 1 to 315360000 (10 years)",
        ),
        (["off", "--factor", "0.5"], 2, "Error: emergency off takes no --factor or --for"),
        (["sideways"], 2, "Error: Invalid value for '{on|off|status}': 'sideways' is not one of"),
    ],
)
def test_an_invalid_emergency_command_exits_non_zero_with_one_line(
    redis_server: RedisServer, key_prefix: str, args: list[str], status: int, message: str
) -> None:
    app, _ = make_app(QUOTA_STORAGE_URI=redis_server.url, QUOTA_KEY_PREFIX=key_prefix)
    storage = state_of(app).storage
    assert isinstance(storage, RedisStorage)

    result = cli(app, "emergency", *args)
    after = ok(cli(app, "emergency", "status"))
    storage.client.close()

    assert result.exit_code == status
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(message)
    assert after == "Emergency off: limits as configured.\n"


# -- round trips in one process --------------------------------------------------------------


@pytest.mark.redis
def test_a_change_costs_each_process_one_read_then_one_round_trip_again(
    redis_server: RedisServer, key_prefix: str
) -> None:
    config = {"QUOTA_STORAGE_URI": redis_server.url, "QUOTA_KEY_PREFIX": key_prefix}
    app, _ = make_app(**config)
    operator, operator_quota = make_app(**config)
    storage = state_of(app).storage
    assert isinstance(storage, RedisStorage)
    wire = WireLog()
    wire.attach(storage.client)
    client = app.test_client()
    client.get("/search", headers={"X-User": "warm-up"})

    def sent(user: str) -> list[str]:
        wire.take()
        client.get("/search", headers={"X-User": user})
        return wire.take()

    steady = [sent("u1") for _ in range(3)]
    operator_quota.set_override("search", "9/hour", app=operator)
    after_change = [sent("u2") for _ in range(3)]
    untouched = [sent("u3") for _ in range(2)]
    for client_of in (storage, state_of(operator).storage):
        assert isinstance(client_of, RedisStorage)
        client_of.client.close()

    assert steady == [["EVALSHA"]] * 3
    assert after_change == [["EVALSHA", "HGETALL"], ["EVALSHA"], ["EVALSHA"]]
    assert untouched == [["EVALSHA"]] * 2


@pytest.mark.redis
def test_list_in_a_fresh_process_shows_the_limits_in_force(
    redis_server: RedisServer, key_prefix: str
) -> None:
    config = {"QUOTA_STORAGE_URI": redis_server.url, "QUOTA_KEY_PREFIX": key_prefix}
    app, quota = make_app(strategy="fixed_window", **config)
    client = app.test_client()
    for _ in range(3):
        client.get("/search", headers={"X-User": "u1"})
    quota.set_override("search", "10/hour", app=app)
    ok(cli(app, "emergency", "on", "--factor", "0.5"))
    fresh, _ = make_app(strategy="fixed_window", **config)  # as `flask quota list` would be

    rows = json.loads(ok(cli(fresh, "list", "--json")))
    for each in (app, fresh):
        storage = state_of(each).storage
        assert isinstance(storage, RedisStorage)
        storage.client.close()

    # The override's 10/hour, scaled to 5 by the emergency factor, 3 of them used.
    assert [(r["name"], r["limit"], r["used"], r["remaining"]) for r in rows] == [
        ("search", "10/hour", 3, 2)
    ]
