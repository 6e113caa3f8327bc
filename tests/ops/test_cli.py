"""``flask quota ...`` through ``app.test_cli_runner()``, against the test Redis (and memory://).

Counters are on the manual clock (see ``conftest.py``), so used/remaining/reset are exact.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from flask_quota import ConfigurationError, admin
from flask_quota.keys import BLOCK, REFUSALS, identity_key
from tests.ops.conftest import (
    DEFAULT_LIMIT,
    GLOBAL_LIMIT,
    HASHED_KEY,
    IP1,
    IP2,
    SECRET,
    OpsApp,
    build_app,
    get,
    statuses,
)

pytestmark = pytest.mark.redis

USER = "user:7"
USER_HEADERS = {"X-User": "7"}
KEY_HEADERS = {"X-API-Key": SECRET}


def ok(result: Any) -> str:
    """stdout of a command that must have succeeded."""
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    out: str = result.stdout
    return out


def as_json(result: Any) -> Any:
    return json.loads(ok(result))


def one_line_error(result: Any) -> str:
    """The single ``Error: ...`` line of a failed command (no traceback, no usage text)."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and len(lines[0]) > len("Error: "), result.output
    assert "Traceback" not in result.output
    line: str = lines[0]
    return line


def counters(ops: OpsApp, *args: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """``flask quota list --json``: (identity, name) -> (used, remaining, reset)."""
    rows = as_json(ops.cli("list", "--json", *args))
    return {(r["identity"], r["name"]): (r["used"], r["remaining"], r["reset"]) for r in rows}


@pytest.fixture
def ops(make_ops_app: Any) -> OpsApp:
    ops_app: OpsApp = make_ops_app()
    return ops_app


@pytest.fixture
def busy(ops: OpsApp) -> OpsApp:
    """The API after a burst: IP1 3x ``/``, IP2 3x ``/api``, user:7 2x, the API key 5x (the
    fifth refused, so not charged)."""
    app = ops.app
    assert statuses(app, "/", 3, ip=IP1) == [200] * 3
    assert statuses(app, "/api/a", 2, ip=IP2) + statuses(app, "/api/b", 1, ip=IP2) == [200] * 3
    assert statuses(app, "/user", 2, ip=IP2, headers=USER_HEADERS) == [200] * 2
    assert statuses(app, "/key", 5, ip=IP2, headers=KEY_HEADERS) == [200] * 4 + [429]
    return ops


# -- limits ----------------------------------------------------------------------------------

STATIC_RULE = "/static/<path:filename>"
EXPECTED_ROUTE_LIMITS = [
    # endpoint, rule, name, limit ("exempt": no limits at all), key function, scope
    ("index", "/", "global:1000/minute", GLOBAL_LIMIT, "GLOBAL", "global"),
    ("index", "/", "index:10/minute", DEFAULT_LIMIT, "by_ip", "index"),
    ("api.a", "/api/a", "global:1000/minute", GLOBAL_LIMIT, "GLOBAL", "global"),
    ("api.a", "/api/a", "api", "5/minute", "by_ip", "api"),
    ("api.b", "/api/b", "global:1000/minute", GLOBAL_LIMIT, "GLOBAL", "global"),
    ("api.b", "/api/b", "api", "5/minute", "by_ip", "api"),
    ("health", "/health", None, "exempt", None, None),
    ("key", "/key", "global:1000/minute", GLOBAL_LIMIT, "GLOBAL", "global"),
    ("key", "/key", "per-key", "4/minute", "by_api_key", "key"),
    # Not counted unless QUOTA_COUNT_STATIC, as if exempt.
    ("static", STATIC_RULE, None, "exempt", None, None),
    ("user", "/user", "global:1000/minute", GLOBAL_LIMIT, "GLOBAL", "global"),
    ("user", "/user", "per-user", "3/minute", "by_user", "user"),
]


def test_limits_lists_every_route_with_strategy_key_and_scope(ops: OpsApp) -> None:
    rows = as_json(ops.cli("limits", "--json"))
    text = ok(ops.cli("limits"))

    assert [
        (
            r["endpoint"],
            r["rule"],
            r["name"],
            "exempt" if r["exempt"] else r["limit"],
            r["key"],
            r["scope"],
        )
        for r in rows
    ] == EXPECTED_ROUTE_LIMITS
    limited = [r for r in rows if not r["exempt"]]
    assert {r["strategy"] for r in limited} == {"fixed_window"}
    assert {r["fail_mode"] for r in limited} == {"open"}
    assert {r["methods"] for r in rows} == {"GET"}
    assert {r["dry_run"] for r in rows} == {False}
    for exempt in (r for r in rows if r["exempt"]):
        assert [exempt[f] for f in ("limit", "strategy", "fail_mode")] == [None, None, None]
    lines = text.splitlines()
    assert lines[0].split() == [
        "Endpoint",
        "Methods",
        "Rule",
        "Name",
        "Limit",
        "Strategy",
        "Key",
        "Scope",
    ]
    assert [line.split() for line in lines[2:]] == [
        [endpoint, "GET", rule, name or "-", limit, "fixed_window" if name else "-"]
        + [key or "-", scope or "-"]
        for endpoint, rule, name, limit, key, scope in EXPECTED_ROUTE_LIMITS
    ]


def test_limits_prints_no_per_process_note_on_memory(make_ops_app: Any) -> None:
    ops = make_ops_app("memory")
    result = ops.cli("limits", "--json")
    assert len(as_json(result)) == len(EXPECTED_ROUTE_LIMITS)
    assert result.stderr == ""


# -- list ------------------------------------------------------------------------------------


def test_list_shows_used_remaining_and_reset_of_each_identity(busy: OpsApp) -> None:
    assert counters(busy) == {
        (IP1, "index:10/minute"): (3, 7, 60),
        (IP2, "api"): (3, 2, 60),
        (USER, "per-user"): (2, 1, 60),
        (HASHED_KEY, "per-key"): (4, 0, 60),
        ("global", "global:1000/minute"): (12, 988, 60),
    }


def test_list_as_text_is_a_table_sorted_by_identity(busy: OpsApp) -> None:
    lines = ok(busy.cli("list")).splitlines()

    assert lines[0].split() == [
        "Identity",
        "Name",
        "Limit",
        "Strategy",
        "Used",
        "Remaining",
        "Reset",
        "(s)",
    ]
    assert set(lines[1]) <= {"-", " "}
    assert [line.split() for line in lines[2:]] == [
        [IP2, "api", "5/minute", "fixed_window", "3", "2", "60"],
        [IP1, "index:10/minute", "10/minute", "fixed_window", "3", "7", "60"],
        ["global", "global:1000/minute", "1000/minute", "fixed_window", "12", "988", "60"],
        [HASHED_KEY, "per-key", "4/minute", "fixed_window", "4", "0", "60"],
        [USER, "per-user", "3/minute", "fixed_window", "2", "1", "60"],
    ]


def test_list_follows_time(busy: OpsApp) -> None:
    busy.clock.advance(45)
    assert counters(busy, USER) == {(USER, "per-user"): (2, 1, 15)}
    busy.clock.advance(15)
    # A new window: the state (still in Redis, whose TTLs run on real time) counts nothing.
    # Whole again: nothing used, so nothing to wait for (reset 0).
    assert counters(busy, USER) == {(USER, "per-user"): (0, 3, 0)}
    assert "No live counters match 'user:8'." in ok(busy.cli("list", "user:8"))


@pytest.mark.parametrize(
    ("pattern", "identities"),
    [
        ("user:*", {USER}),
        ("203.0.113.*", {IP1}),
        ("1*", {IP2}),
        ("key:sha256:*", {HASHED_KEY}),
        ("*:*", {USER, HASHED_KEY}),
        ("glob?l", {"global"}),
        ("nobody*", set()),
    ],
)
def test_list_pattern_is_a_glob_on_the_identity(
    busy: OpsApp, pattern: str, identities: set[str]
) -> None:
    assert {identity for identity, _ in counters(busy, pattern)} == identities


def test_list_limit_bounds_the_output(busy: OpsApp) -> None:
    assert len(as_json(busy.cli("list", "--json", "--limit", "2"))) == 2
    assert len(ok(busy.cli("list", "--limit", "1")).splitlines()) == 3  # header, rule, 1 row
    assert len(as_json(busy.cli("list", "--json", "--limit", "1000"))) == 5


def test_list_walks_keys_with_scan_never_keys(busy: OpsApp) -> None:
    assert busy.client is not None
    for command in (("list",), ("top",), ("whitelist", "list"), ("reset", IP1)):
        busy.client.commands.clear()
        ok(busy.cli(*command))
        assert "SCAN" in busy.client.commands, command
        assert "KEYS" not in busy.client.commands, command
    busy.client.commands.clear()
    ok(busy.cli("reset", "--all", "--yes"))
    assert "SCAN" in busy.client.commands and "KEYS" not in busy.client.commands
    assert "FLUSHDB" not in busy.client.commands and "FLUSHALL" not in busy.client.commands


# -- reset -----------------------------------------------------------------------------------


def test_reset_identity_clears_all_of_its_limits_and_only_its_own(busy: OpsApp) -> None:
    assert get(busy.app, "/api/a", ip=IP1).status_code == 200  # IP1: index 3, api 1

    result = as_json(busy.cli("reset", IP1, "--json"))

    assert result == {"cleared": 2, "identity": IP1, "limit": None}
    after = counters(busy)
    assert not [identity for identity, _ in after if identity == IP1]
    assert after[(IP2, "api")] == (3, 2, 60)
    assert after[("global", "global:1000/minute")] == (13, 987, 60)
    assert get(busy.app, "/", ip=IP1).headers["X-RateLimit-Remaining"] == "9"
    assert ok(busy.cli("reset", IP2)) == f"Cleared 1 counters of {IP2}.\n"
    assert get(busy.app, "/api/a", ip=IP2).headers["X-RateLimit-Remaining"] == "4"


def test_reset_with_limit_clears_only_that_limit(busy: OpsApp) -> None:
    assert statuses(busy.app, "/api/a", 5, ip=IP1) == [200] * 5  # IP1: index 3, api 5

    result = as_json(busy.cli("reset", IP1, "--limit", "api", "--json"))

    assert result == {"cleared": 1, "identity": IP1, "limit": "api"}
    after = counters(busy, IP1)
    assert after == {(IP1, "index:10/minute"): (3, 7, 60)}
    assert get(busy.app, "/api/b", ip=IP1).headers["X-RateLimit-Remaining"] == "4"
    # The global counter is a limit of the identity "global", not of IP1: untouched.
    assert counters(busy, "global")[("global", "global:1000/minute")][0] == 18


def test_reset_all_asks_and_aborts_on_no(busy: OpsApp) -> None:
    before = counters(busy)

    result = busy.cli("reset", "--all", input="n\n")

    assert result.exit_code == 1
    assert "Clear every counter of every identity? [y/N]" in result.output
    assert result.output.splitlines()[-1] == "Aborted!"
    assert counters(busy) == before


def test_reset_all_clears_on_yes_and_keeps_lists(busy: OpsApp) -> None:
    ok(busy.cli("whitelist", "add", "user:99"))
    ok(busy.cli("block", "user:66", "--for", "60"))
    assert get(busy.app, "/user", ip=IP2, headers={"X-User": "66"}).status_code == 429

    confirmed = busy.cli("reset", "--all", input="y\n")

    assert confirmed.exit_code == 0, confirmed.output
    # 5 limit counters and the refusal counters of the API key and of user:66.
    assert confirmed.stdout == "Cleared 7 counters.\n"
    assert counters(busy) == {}
    assert as_json(busy.cli("top", "--json")) == []
    assert [e["identity"] for e in as_json(busy.cli("whitelist", "list", "--json"))] == ["user:99"]
    assert get(busy.app, "/user", ip=IP2, headers={"X-User": "66"}).status_code == 429


def test_reset_all_with_yes_does_not_ask(busy: OpsApp) -> None:
    result = busy.cli("reset", "--all", "--yes", "--json")

    assert as_json(result) == {"cleared": 6, "identity": None}
    assert "[y/N]" not in result.output
    assert counters(busy) == {}
    assert get(busy.app, "/key", ip=IP2, headers=KEY_HEADERS).status_code == 200


# -- whitelist -------------------------------------------------------------------------------


def test_whitelist_add_list_remove(make_ops_app: Any) -> None:
    ops = make_ops_app(QUOTA_WHITELIST=["10.0.0.0/8", "user:1"])
    app = ops.app
    assert statuses(app, "/user", 3, headers=USER_HEADERS) == [200] * 3

    added = as_json(ops.cli("whitelist", "add", USER, "--json"))
    listed = as_json(ops.cli("whitelist", "list", "--json"))
    text = ok(ops.cli("whitelist", "list"))

    assert added == {"identity": USER, "whitelisted": True}
    assert listed == [
        {"identity": "user:1", "source": "config"},
        {"identity": "10.0.0.0/8", "source": "config"},
        {"identity": USER, "source": "storage"},
    ]
    assert [line.split() for line in text.splitlines()[2:]] == [
        ["user:1", "config"],
        ["10.0.0.0/8", "config"],
        [USER, "storage"],
    ]
    # Whitelisted: no limit applies, nothing is charged, no rate-limit headers.
    passed = [get(app, "/user", headers=USER_HEADERS) for _ in range(5)]
    assert [r.status_code for r in passed] == [200] * 5
    assert all("X-RateLimit-Remaining" not in r.headers for r in passed)

    removed = as_json(ops.cli("whitelist", "remove", USER, "--json"))

    assert removed == {"identity": USER, "whitelisted": False}
    assert get(app, "/user", headers=USER_HEADERS).status_code == 429
    assert [e["source"] for e in as_json(ops.cli("whitelist", "list", "--json"))] == [
        "config",
        "config",
    ]
    assert ok(ops.cli("whitelist", "add", "user:8")) == "Whitelisted user:8.\n"
    assert ok(ops.cli("whitelist", "remove", "user:8")) == "Removed user:8.\n"


def test_whitelist_list_when_empty(ops: OpsApp) -> None:
    assert ok(ops.cli("whitelist", "list")) == "The whitelist is empty.\n"
    assert as_json(ops.cli("whitelist", "list", "--json")) == []


# -- block, unblock --------------------------------------------------------------------------


def test_block_refuses_the_identity_with_retry_after_of_the_block(ops: OpsApp) -> None:
    app = ops.app
    blocked = as_json(ops.cli("block", IP1, "--for", "120", "--json"))

    refused = get(app, "/", ip=IP1)
    other = get(app, "/", ip=IP2)

    assert blocked == {"identity": IP1, "blocked_for": 120}
    assert refused.status_code == 429
    # The block's remaining time on Redis's clock: at most 120 s, and the test takes less
    # than 5 s.
    assert 115 <= int(refused.headers["Retry-After"]) <= 120
    assert refused.json is not None
    assert refused.json["policy"] == "blocked"
    assert refused.json["retryAfter"] == int(refused.headers["Retry-After"])
    assert other.status_code == 200
    # A blocked identity is refused on every route, whichever limit names it.
    assert get(app, "/api/a", ip=IP1).status_code == 429
    # Nothing was charged while blocked.
    assert (IP1, "index:10/minute") not in counters(ops)


def test_block_lasts_block_duration_by_default(make_ops_app: Any) -> None:
    ops = make_ops_app(QUOTA_BLOCK_DURATION=600)

    assert ok(ops.cli("block", USER)) == f"Blocked {USER} for 600 s.\n"
    refused = get(ops.app, "/user", headers=USER_HEADERS)

    assert refused.status_code == 429
    assert 595 <= int(refused.headers["Retry-After"]) <= 600


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
@pytest.mark.parametrize("seconds", ["99999999999999999999", "315360001", "1.5"])
def test_block_for_longer_than_ten_years_is_a_usage_error(
    ops: OpsApp, seconds: str, json_flag: tuple[str, ...]
) -> None:
    # 99999999999999999999 used to reach Redis (SET ... PX), whose refusal escaped click:
    # exit status 1, nothing printed.
    result = ops.cli("block", IP1, "--for", seconds, *json_flag)

    assert one_line_error(result) == (
        f"Error: Invalid value for '--for': '{seconds}' is not a whole number of seconds "
        "from 1 to 315360000 (10 years)"
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert get(ops.app, "/", ip=IP1).status_code == 200


def test_block_for_ten_years_is_the_longest(ops: OpsApp) -> None:
    blocked = as_json(ops.cli("block", IP1, "--for", "315360000", "--json"))

    refused = get(ops.app, "/", ip=IP1)

    assert blocked == {"identity": IP1, "blocked_for": 315_360_000}
    assert refused.status_code == 429
    assert 315_359_995 <= int(refused.headers["Retry-After"]) <= 315_360_000


@pytest.mark.parametrize("seconds", [0, 315_360_001, 10**30])
def test_admin_block_refuses_a_duration_out_of_range(ops: OpsApp, seconds: int) -> None:
    with pytest.raises(ConfigurationError) as caught:
        admin.block(ops.app, IP1, seconds)

    assert str(caught.value) == (
        f"invalid block duration {seconds}: expected whole seconds from 1 to 315360000 (10 years)"
    )
    assert get(ops.app, "/", ip=IP1).status_code == 200


def test_unblock_restores_service_at_once(ops: OpsApp) -> None:
    ok(ops.cli("block", IP1))
    assert get(ops.app, "/", ip=IP1).status_code == 429

    result = as_json(ops.cli("unblock", IP1, "--json"))

    assert result == {"identity": IP1, "blocked": False}
    response = get(ops.app, "/", ip=IP1)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining"] == "9"
    ok(ops.cli("block", IP1))
    assert ok(ops.cli("unblock", IP1)) == f"Unblocked {IP1}.\n"


# -- top -------------------------------------------------------------------------------------


def test_top_ranks_identities_by_refusals(busy: OpsApp) -> None:
    assert statuses(busy.app, "/api/a", 2, ip=IP2) == [200, 200]
    assert statuses(busy.app, "/api/a", 3, ip=IP2) == [429] * 3
    assert statuses(busy.app, "/user", 3, ip=IP2, headers=USER_HEADERS) == [200, 429, 429]

    ranked = as_json(busy.cli("top", "--json"))
    first = as_json(busy.cli("top", "--json", "--limit", "1"))
    text = ok(busy.cli("top", "--limit", "2"))

    assert ranked == [
        {"identity": IP2, "refusals": 3},
        {"identity": USER, "refusals": 2},
        {"identity": HASHED_KEY, "refusals": 1},
    ]
    assert first == ranked[:1]
    assert [line.split() for line in text.splitlines()] == [
        ["Identity", "Refusals"],
        ["-" * len(IP2), "-" * len("Refusals")],
        [IP2, "3"],
        [USER, "2"],
    ]


def test_top_when_nobody_was_refused(ops: OpsApp) -> None:
    assert ok(ops.cli("top")) == "No refusals in the alert window.\n"


# -- API keys: hashed in every output, accepted in both forms -------------------------------


def test_api_keys_are_shown_hashed_and_accepted_raw_or_hashed(busy: OpsApp) -> None:
    outputs = [
        busy.cli("list"),
        busy.cli("list", "--json"),
        busy.cli("top"),
        busy.cli("top", "--json"),
        busy.cli("block", f"key:{SECRET}", "--for", "60"),
        busy.cli("whitelist", "list"),
    ]
    refused = get(busy.app, "/key", ip=IP2, headers=KEY_HEADERS)
    outputs.append(busy.cli("unblock", HASHED_KEY))
    outputs.append(busy.cli("reset", f"key:{SECRET}", "--limit", "per-key", "--json"))
    admitted = get(busy.app, "/key", ip=IP2, headers=KEY_HEADERS)
    outputs.append(busy.cli("whitelist", "add", f"key:{SECRET}"))
    outputs.append(busy.cli("whitelist", "list", "--json"))
    outputs.append(busy.cli("whitelist", "remove", HASHED_KEY))

    assert refused.status_code == 429
    assert refused.json is not None and refused.json["policy"] == "blocked"
    assert admitted.status_code == 200
    assert admitted.headers["X-RateLimit-Remaining"] == "3"
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
    assert HASHED_KEY in outputs[0].output and HASHED_KEY in outputs[2].output
    assert json.loads(outputs[7].stdout) == {
        "cleared": 1,
        "identity": HASHED_KEY,
        "limit": "per-key",
    }
    assert json.loads(outputs[9].stdout) == [{"identity": HASHED_KEY, "source": "storage"}]


def test_list_accepts_a_raw_api_key_and_never_echoes_it(busy: OpsApp) -> None:
    found = counters(busy, f"key:{SECRET}")
    missing = busy.cli("list", "key:not-a-live-key")

    assert found == {(HASHED_KEY, "per-key"): (4, 0, 60)}
    assert "not-a-live-key" not in missing.output
    assert ok(missing).startswith("No live counters match 'key:sha256:")


def test_configured_whitelist_api_keys_are_listed_hashed(make_ops_app: Any) -> None:
    ops = make_ops_app(QUOTA_WHITELIST=[f"key:{SECRET}"])

    listed = ops.cli("whitelist", "list", "--json")

    assert SECRET not in listed.output
    assert as_json(listed) == [{"identity": HASHED_KEY, "source": "config"}]
    # And the configured key still bypasses its limit.
    assert statuses(ops.app, "/key", 6, headers=KEY_HEADERS) == [200] * 6


# -- errors: one line, non-zero exit, no traceback ------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("reset", ""), "Error: identity must be a non-empty string"),
        (("reset", "  "), "Error: identity must be a non-empty string"),
        (("block", ""), "Error: identity must be a non-empty string"),
        (("unblock", ""), "Error: identity must be a non-empty string"),
        (("whitelist", "add", ""), "Error: identity must be a non-empty string"),
        (("whitelist", "remove", ""), "Error: identity must be a non-empty string"),
        (("reset", IP1, "--limit", "no-such-limit"), "Error: no limit named 'no-such-limit'"),
        (("unblock", "user:never-blocked"), "Error: user:never-blocked is not blocked"),
        (("unblock", f"key:{SECRET}"), f"Error: {HASHED_KEY} is not blocked"),
        (("whitelist", "remove", "user:3"), "Error: user:3 is not on the stored whitelist"),
        (("reset",), "Error: give either IDENTITY or --all"),
        (("reset", IP1, "--all"), "Error: give either IDENTITY or --all"),
        (("reset", "--all", "--limit", "api", "--yes"), "Error: --limit goes with IDENTITY"),
        (("block", IP1, "--for", "0"), "Error: Invalid value for '--for'"),
        (("top", "--limit", "0"), "Error: Invalid value for '--limit'"),
        (("list", "--limit", "x"), "Error: Invalid value for '--limit'"),
        (("list", "--bogus"), "Error: No such option"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(
    ops: OpsApp, args: tuple[str, ...], message: str
) -> None:
    result = ops.cli(*args)
    assert one_line_error(result).startswith(message)
    assert result.stdout == ""


@pytest.fixture(params=["refused", "silent", "missing-db"])
def dead_redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis URL where no command succeeds: a closed port, one that accepts and never replies
    (so the socket timeout, not a refusal, ends the wait), or a database the test server
    lacks (it refuses SELECT 99 while the connection is set up)."""
    if request.param == "missing-db":
        yield request.getfixturevalue("redis_server").url.rsplit("/", 1)[0] + "/99"
        return
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if request.param == "silent":
            listener.listen(16)
            yield f"redis://127.0.0.1:{port}/0"
            return
    yield f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("list", "--json"),
        ("reset", IP1),
        ("reset", IP1, "--limit", "api"),
        ("reset", "--all", "--yes"),
        ("whitelist", "add", IP1),
        ("whitelist", "remove", IP1),
        ("whitelist", "list", "--json"),
        ("block", IP1),
        ("unblock", IP1),
        ("top",),
        ("top", "--json"),
    ],
)
def test_unreachable_storage_is_one_line(
    dead_redis_url: str, key_prefix: str, args: tuple[str, ...]
) -> None:
    app = build_app(
        {
            "QUOTA_STORAGE_URI": dead_redis_url,
            "QUOTA_STORAGE_TIMEOUT": 0.05,
            "QUOTA_KEY_PREFIX": key_prefix,
        }
    )

    result = app.test_cli_runner().invoke(args=["quota", *args])

    assert one_line_error(result).startswith("Error: redis unavailable: ")
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "kind"), [(("unblock", "user:1"), BLOCK), (("top", "--json"), REFUSALS)]
)
def test_a_redis_error_is_one_line(
    ops: OpsApp, redis_client: Any, key_prefix: str, args: tuple[str, ...], kind: str
) -> None:
    # Something else wrote a list where flask-quota keeps a string: GET answers WRONGTYPE, a
    # ResponseError, which used to escape click (exit status 1, nothing printed).
    redis_client.rpush(identity_key(key_prefix, kind, "user:1"), "x")

    result = ops.cli(*args)

    assert one_line_error(result) == (
        "Error: redis error (ResponseError): WRONGTYPE Operation against a key holding the "
        "wrong kind of value"
    )
    assert result.exit_code == 1
    assert result.stdout == ""


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_a_database_the_server_lacks_is_named_in_one_line(
    redis_server: Any, key_prefix: str, json_flag: tuple[str, ...]
) -> None:
    app = build_app(
        {
            "QUOTA_STORAGE_URI": redis_server.url.rsplit("/", 1)[0] + "/99",
            "QUOTA_KEY_PREFIX": key_prefix,
        }
    )

    result = app.test_cli_runner().invoke(args=["quota", "emergency", "status", *json_flag])

    assert one_line_error(result) == (
        "Error: redis unavailable: DB index is out of range (refused while setting up the "
        "connection: check the database number and the credentials in QUOTA_STORAGE_URI)"
    )
    assert result.exit_code == 1


def test_limits_needs_no_storage(dead_redis_url: str) -> None:
    app = build_app({"QUOTA_STORAGE_URI": dead_redis_url, "QUOTA_STORAGE_TIMEOUT": 0.05})
    rows = as_json(app.test_cli_runner().invoke(args=["quota", "limits", "--json"]))
    assert len(rows) == len(EXPECTED_ROUTE_LIMITS)
