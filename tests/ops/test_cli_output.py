"""What ``flask quota`` prints: one line on any error (usage errors included), nothing but the
JSON document with ``--json``, and ``memory://``'s per-process note only in text mode, after
success. Most run on the default ``memory://`` storage, where that note exists.

click's runner (8.2+) mixes stderr into ``result.output``, as a terminal does: a note on stderr
would break both an error's one line and a script's ``json.loads(output)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from flask import Flask

from flask_quota import Quota
from flask_quota.cli import PER_PROCESS_NOTE
from flask_quota.storage import RedisStorage
from tests.ops.conftest import OpsApp, get, statuses
from tests.ops.test_cli import ok, one_line_error

ROOT = Path(__file__).resolve().parents[2]
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


# -- identities no terminal should get raw -------------------------------------------------------

#: What a key function may return (API.md: any string), and how text output shows it.
UNUSUAL = {
    "surrogate": ("\ud800", '"\\ud800"'),
    "newline": ("a\nb", '"a\\nb"'),
    "escape": ("\x1b[31m", '"\\x1b[31m"'),
    "bidi": ("\u202eevil", '"\\u202eevil"'),
    "quote": ('"x', '"\\"x"'),
    "plain": ("user:1", "user:1"),
    "backslash": ("DOMAIN\\user", "DOMAIN\\user"),
    "accent": ("é", "é"),
}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def unusual_app(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[Flask]:
    """An app whose one view counts the identity ``UNUSUAL[?who=][0]``, after one request
    of each (on memory:// or the test Redis)."""
    app = Flask(__name__)
    app.config.update(QUOTA_KEY_PREFIX=key_prefix, QUOTA_STRATEGY="fixed_window")
    if request.param == "redis":
        app.config["QUOTA_STORAGE_URI"] = request.getfixturevalue("redis_server").url
    quota = Quota(app)
    view = quota.limit("5/hour", key=lambda: UNUSUAL[flask.request.args["who"]][0])
    app.add_url_rule("/", "index", view(lambda: "ok"))
    client = app.test_client()
    for who in UNUSUAL:
        assert client.get("/", query_string={"who": who}).status_code == 200
    yield app
    storage = app.extensions["quota.state"].storage
    if isinstance(storage, RedisStorage):
        storage.client.close()


def quota_cli(app: Flask, *args: str, charset: str = "utf-8") -> Any:
    return app.test_cli_runner(charset=charset).invoke(args=["quota", *args])


def test_list_shows_each_identity_on_its_own_row(unusual_app: Flask) -> None:
    # The newline used to print a fake row, the escape to colour the terminal, and the
    # surrogate to end the table in a UnicodeEncodeError (exit status 1, no message).
    lines = ok(quota_cli(unusual_app, "list")).splitlines()

    assert len(lines) == 2 + len(UNUSUAL)
    expected = [shown for _, shown in sorted(UNUSUAL.values())]
    assert [line.split("  ")[0] for line in lines[2:]] == expected
    assert all(line.isprintable() for line in lines)


@pytest.mark.parametrize("who", UNUSUAL)
def test_commands_name_an_identity_as_list_shows_it(unusual_app: Flask, who: str) -> None:
    identity, shown = UNUSUAL[who]

    answers = [
        ok(quota_cli(unusual_app, "reset", identity)),
        ok(quota_cli(unusual_app, "block", identity, "--for", "60")),
        ok(quota_cli(unusual_app, "unblock", identity)),
        ok(quota_cli(unusual_app, "whitelist", "add", identity)),
        ok(quota_cli(unusual_app, "whitelist", "list")).splitlines()[2],
        ok(quota_cli(unusual_app, "whitelist", "remove", identity)),
    ]
    missing = quota_cli(unusual_app, "unblock", identity)

    assert answers == [
        f"Cleared 1 counters of {shown}.\n",
        f"Blocked {shown} for 60 s.\n",
        f"Unblocked {shown}.\n",
        f"Whitelisted {shown}.\n",
        f"{shown:{max(len(shown), len('Identity'))}}  storage",
        f"Removed {shown}.\n",
    ]
    assert one_line_error(missing) == f"Error: {shown} is not blocked"


def test_json_gives_each_identity_exactly(unusual_app: Flask) -> None:
    out = ok(quota_cli(unusual_app, "list", "--json"))

    assert out.isascii()  # json.dumps escapes the surrogate: any stream can write it
    assert sorted(row["identity"] for row in json.loads(out)) == sorted(
        identity for identity, _ in UNUSUAL.values()
    )


def test_a_character_the_output_cannot_encode_is_escaped(make_ops_app: Any) -> None:
    ops = make_ops_app("memory")

    latin1 = quota_cli(ops.app, "block", "用户", "--for", "60", charset="latin-1")
    utf8 = quota_cli(ops.app, "block", "用户", "--for", "60")

    assert ok(latin1) == 'Blocked "\\u7528\\u6237" for 60 s.\n'
    assert ok(utf8) == "Blocked 用户 for 60 s.\n"


@pytest.mark.redis
def test_the_flask_command_lists_a_surrogate_identity(
    tmp_path: Path, redis_server: Any, key_prefix: str
) -> None:
    """The real ``flask`` on a pipe: the surrogate used to end in a traceback
    (``UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800'``)."""
    (tmp_path / "surrogate_app.py").write_text(
        textwrap.dedent(
            f"""
            from flask import Flask, request
            from flask_quota import Quota

            app = Flask(__name__)
            app.config.update(QUOTA_STORAGE_URI={redis_server.url!r},
                              QUOTA_KEY_PREFIX={key_prefix!r})
            quota = Quota(app)
            app.add_url_rule(
                "/", "index", quota.limit("5/hour", key=lambda: request.get_json()["id"])(
                    lambda: "ok"
                ),
                methods=["POST"],
            )
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    poster = (
        "from surrogate_app import app\n"
        "c = app.test_client()\n"
        'for body in (\'{"id": "\\\\ud800"}\', \'{"id": "user:1"}\'):\n'
        "    r = c.post('/', data=body, content_type='application/json')\n"
        "    assert r.status_code == 200, r.status_code\n"
    )
    subprocess.run([sys.executable, "-c", poster], env=env, cwd=tmp_path, check=True)

    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "surrogate_app", "quota", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.stderr == ""
    assert done.returncode == 0
    rows = done.stdout.splitlines()[2:]
    assert [row.split("  ")[0] for row in rows] == ["user:1", '"\\ud800"']  # by identity
