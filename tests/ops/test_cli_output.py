"""What ``flask quota`` prints: one line on any error (usage errors included), nothing but the
JSON document with ``--json``, and ``memory://``'s per-process note only in text mode, after
success. Most run on the default ``memory://`` storage, where that note exists.

click's runner (8.2+) mixes stderr into ``result.output``, as a terminal does: a note on stderr
would break both an error's one line and a script's ``json.loads(output)``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flask_quota.cli import PER_PROCESS_NOTE
from tests.ops.conftest import OpsApp, get, statuses
from tests.ops.test_cli import ok, one_line_error

USER = "user:7"
USER_HEADERS = {"X-User": "7"}


@pytest.fixture
def memory_ops(make_ops_app: Any) -> OpsApp:
    """The operations API on memory:// (on the manual clock), after two requests of user:7."""
    ops: OpsApp = make_ops_app("memory")
    assert statuses(ops.app, "/user", 2, headers=USER_HEADERS) == [200, 200]
    return ops


def test_commands_work_on_memory_storage(memory_ops: OpsApp) -> None:
    ops = memory_ops
    results = {
        "list": ops.cli("list", "--json", USER),
        "block": ops.cli("block", "user:5", "--for", "30", "--json"),
        "whitelist": ops.cli("whitelist", "add", "user:6", "--json"),
        "top": ops.cli("top", "--json"),
        "reset": ops.cli("reset", USER, "--json"),
    }

    assert json.loads(results["list"].output) == [
        {
            "identity": USER,
            "limit": "3/minute",
            "name": "per-user",
            "remaining": 1,
            "reset": 60,
            "strategy": "fixed_window",
            "used": 2,
        }
    ]
    assert json.loads(results["block"].output) == {"identity": "user:5", "blocked_for": 30}
    assert json.loads(results["whitelist"].output) == {"identity": "user:6", "whitelisted": True}
    assert json.loads(results["top"].output) == []
    assert json.loads(results["reset"].output)["cleared"] == 1
    blocked = get(ops.app, "/user", headers={"X-User": "5"})
    assert blocked.status_code == 429 and blocked.headers["Retry-After"] == "30"
    assert get(ops.app, "/user", headers={"X-User": "6"}).status_code == 200
    assert get(ops.app, "/user", headers=USER_HEADERS).headers["X-RateLimit-Remaining"] == "2"


#: A command with the one that must run before it, for it to succeed.
SUCCEEDING_COMMANDS: list[tuple[tuple[str, ...], tuple[str, ...] | None]] = [
    (("limits",), None),
    (("list",), None),
    (("list", USER), None),
    (("top",), None),
    (("overrides",), None),
    (("whitelist", "list"), None),
    (("whitelist", "add", "user:6"), None),
    (("whitelist", "remove", "user:6"), ("whitelist", "add", "user:6")),
    (("block", "user:5"), None),
    (("unblock", "user:5"), ("block", "user:5")),
    (("reset", USER), None),
    (("reset", "--all", "--yes"), None),
    (("set", "per-user", "9/minute"), None),
    (("unset", "per-user"), ("set", "per-user", "9/minute")),
    (("emergency", "status"), None),
]


@pytest.mark.parametrize(("args", "before"), SUCCEEDING_COMMANDS)
def test_json_is_the_document_alone(
    memory_ops: OpsApp, args: tuple[str, ...], before: tuple[str, ...] | None
) -> None:
    if before is not None:
        ok(memory_ops.cli(*before))

    result = memory_ops.cli(*args, "--json")

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert json.loads(result.output) == json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "search", "bogus"), "Error: invalid limit 'bogus'"),
        (("unset", "nope"), "Error: no override named 'nope'"),
        (("emergency", "on", "--factor", "2"), "Error: invalid factor 2.0"),
        (("unblock", "user:1"), "Error: user:1 is not blocked"),
        (("whitelist", "remove", "user:1"), "Error: user:1 is not on the stored whitelist"),
        (("reset", USER, "--limit", "nope"), "Error: no limit named 'nope'"),
        (("reset",), "Error: give either IDENTITY or --all"),
    ],
)
@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_errors_are_one_line(
    memory_ops: OpsApp, args: tuple[str, ...], message: str, json_flag: tuple[str, ...]
) -> None:
    result = memory_ops.cli(*args, *json_flag)

    assert one_line_error(result).startswith(message)
    assert result.stdout == ""


def test_text_says_once_after_the_answer_that_memory_is_per_process(memory_ops: OpsApp) -> None:
    result = memory_ops.cli("block", "user:5", "--for", "30")

    assert ok(result) == "Blocked user:5 for 30 s.\n"
    assert result.stderr == PER_PROCESS_NOTE + "\n"
    assert result.output == f"Blocked user:5 for 30 s.\n{PER_PROCESS_NOTE}\n"


def test_limits_reads_no_storage_and_adds_no_note(memory_ops: OpsApp) -> None:
    result = memory_ops.cli("limits")

    assert ok(result).startswith("Endpoint")
    assert result.stderr == ""


@pytest.mark.redis
def test_no_note_on_redis(make_ops_app: Any) -> None:
    ops = make_ops_app("redis")
    result = ops.cli("block", "user:5", "--for", "30")

    assert ok(result) == "Blocked user:5 for 30 s.\n"
    assert result.stderr == ""


# -- usage errors: one line, exit 2 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("frobnicate",), "Error: No such command 'frobnicate'."),
        (("whitelist", "frobnicate"), "Error: No such command 'frobnicate'."),
        (("whitelist", "lst"), "Error: No such command 'lst'. Did you mean 'list'?"),
        (("--bogus",), "Error: No such option '--bogus'."),
        (("whitelist", "--bogus"), "Error: No such option '--bogus'."),
        (("whitelist", "add", "--bogus", "user:1"), "Error: No such option '--bogus'."),
        (("block",), "Error: Missing argument 'IDENTITY'."),
        (("whitelist", "add"), "Error: Missing argument 'IDENTITY'."),
        (("whitelist", "remove"), "Error: Missing argument 'IDENTITY'."),
        (("set", "search"), "Error: Missing argument 'LIMIT'."),
        (("block", "user:1", "--for"), "Error: Option '--for' requires an argument."),
        (("emergency", "maybe"), "Error: Invalid value for '{on|off|status}'"),
        # click writes a Choice's missing-argument message over four lines: joined into one.
        (("emergency",), "Error: Missing argument '{on|off|status}'. Choose from: on, off, status"),
        (("emergency", "--json"), "Error: Missing argument '{on|off|status}'. Choose from: on,"),
        (("top", "--limit", "x"), "Error: Invalid value for '--limit'"),
        (("block", "user:1", "user:2"), "Error: Got unexpected extra argument (user:2)"),
    ],
)
def test_usage_errors_are_one_line_with_exit_status_2(
    memory_ops: OpsApp, args: tuple[str, ...], message: str
) -> None:
    result = memory_ops.cli(*args)

    assert one_line_error(result).startswith(message)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Usage:" not in result.output


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (("--help",), "quota [OPTIONS] COMMAND [ARGS]..."),
        (("whitelist", "--help"), "quota whitelist [OPTIONS] COMMAND [ARGS]..."),
        (("whitelist", "add", "--help"), "quota whitelist add [OPTIONS] IDENTITY"),
        (("list", "--help"), "quota list [OPTIONS] [PATTERN]"),
    ],
)
def test_help_prints_as_usual(memory_ops: OpsApp, args: tuple[str, ...], usage: str) -> None:
    result = memory_ops.cli(*args)

    assert result.exit_code == 0
    lines = ok(result).splitlines()
    assert lines[0].startswith("Usage: ") and lines[0].endswith(usage)
    assert "Options:" in lines
    assert any(line.split()[:1] == ["--help"] for line in lines)


@pytest.mark.parametrize("args", [(), ("whitelist",)])
def test_a_group_without_a_command_prints_its_help(
    memory_ops: OpsApp, args: tuple[str, ...]
) -> None:
    # As click does for any group: the help, not an error line (exit status as click sets it).
    result = memory_ops.cli(*args)

    assert result.output.startswith("Usage: ")
    assert "Commands:" in result.output
