"""``flask quota ...``: a thin click shell over :mod:`flask_quota.admin`.

Every command takes ``--json``. Errors print one line (``Error: ...``), never a traceback:
exit status 1 for a failure (a bad identity or limit name, an unreachable storage), 2 for a
usage error (an unknown command or option, a missing argument).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any, Final, TypeVar

import click
import redis
from flask import current_app
from flask.cli import AppGroup

from . import _display, admin
from ._identities import OperatorIdentity
from .errors import QuotaError

F = TypeVar("F", bound=Callable[..., Any])


class _UsageLine(click.ClickException):
    """A usage error as one line, ``Error: ...``, exit status 2 (click's for usage errors)."""

    exit_code = 2


#: click >= 8.2 raises this UsageError to print a group's help when the group is called without
#: a command (``flask quota`` alone): that help stays. Older click prints the help and exits.
_NO_ARGS_IS_HELP: Final = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line(err: click.UsageError) -> click.ClickException:
    return err if isinstance(err, _NO_ARGS_IS_HELP) else _usage_line(err.format_message())


def _usage_line(message: str) -> _UsageLine:
    """click's ``message`` on one line: it spreads some over several (a missing ``Choice``
    argument lists its choices one per line, tab-indented), and may quote what was typed."""
    joined = " ".join(part for line in message.splitlines() if (part := line.strip()))
    return _UsageLine(_display.escaped(joined, _encoding(err=True)))


class _OneLineGroup(AppGroup):
    """``flask quota`` and its subgroups: a usage error under it prints one line, no usage text.

    click prints a usage error with the usage and a hint, three lines more than API.md's
    "one-line message". Parsing the group's own options happens in :meth:`make_context`; its
    subcommand is looked up and parsed (and run) within :meth:`invoke`, so those two cover an
    unknown command, a missing argument and a bad option at any depth. ``--help`` is no error
    and prints as usual.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            raise _one_line(err) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise _one_line(err) from None

    def group(  # type: ignore[override]  # as flask's AppGroup.group: one signature, no overloads
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Group]:
        """As :meth:`AppGroup.group`, with subgroups of this class (AppGroup's own default)."""
        kwargs.setdefault("cls", _OneLineGroup)
        return super().group(*args, **kwargs)


quota_cli = _OneLineGroup("quota", help="Inspect and operate flask-quota rate limits.")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class _Seconds(click.IntRange):
    """``--for``: whole seconds from 1 to :data:`admin.MAX_DURATION_S` (10 years), refused as a
    usage error before any storage call (a huge number used to fail inside Redis)."""

    def __init__(self) -> None:
        super().__init__(min=1, max=admin.MAX_DURATION_S)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            seconds: int = super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(
                f"{value!r} is not a whole number of seconds from 1 to "
                f"{admin.MAX_DURATION_S} (10 years)",
                param,
                ctx,
            )
        return seconds


SECONDS: Final = _Seconds()


def _app() -> Any:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def _one_line_errors(command: F) -> F:
    """Turn the library's errors into click's one-line ``Error: ...`` and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except QuotaError as err:
            raise click.ClickException(_display.escaped(str(err), _encoding(err=True))) from None
        except redis.RedisError as err:
            # Outages are StorageErrors by now: this is Redis refusing a command (a key of
            # another type where ours should be, a limit of the server). One line, not a
            # traceback, and the server's own words.
            message = _display.escaped(str(err), _encoding(err=True))
            raise click.ClickException(f"redis error ({type(err).__name__}): {message}") from None
        except click.Abort:  # a RuntimeError too: click prints "Aborted!" for it
            raise
        except RuntimeError as err:  # not initialised on this app
            raise click.ClickException(_display.escaped(str(err), _encoding(err=True))) from None

    return wrapper  # type: ignore[return-value]


#: Said after a command that used ``memory://`` storage, in text mode only.
PER_PROCESS_NOTE: Final = (
    "note: memory:// storage lives inside each process: this command sees and changes only "
    "its own process, not a running server (use Redis to share state)"
)


def _emit(
    as_json: bool,
    payload: Any,
    lines: Callable[[], Sequence[str]],
    *,
    used_storage: bool = True,
    resolved: OperatorIdentity | None = None,
) -> None:
    """Print a command's answer: the JSON document alone with ``--json``, else text lines.

    Called once the command succeeded, so an error stays one line. In text mode a command
    that used ``memory://`` storage adds :data:`PER_PROCESS_NOTE` on stderr: a human may
    think they changed a running server. ``--json`` output is for scripts and is nothing but
    the document.

    :param resolved: the identity the command was given; when the address typed was taken
        as another identity (an IPv6 address as its network), the answer says so: a first
        line in text, a ``given`` field in a JSON object.
    """
    taken = resolved if resolved is not None and resolved.given is not None else None
    if as_json:
        document = _plain(payload)
        if taken is not None and isinstance(document, dict):
            document = {**document, "given": taken.given}
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    if taken is not None:
        given, identity = _shown(str(taken.given)), _shown(taken.identity)
        click.echo(f"{given} is identity {identity}, as by_ip counts it.")
    for line in lines():
        click.echo(line)
    if used_storage and admin.is_per_process(_app()):
        click.echo(PER_PROCESS_NOTE, err=True)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _encoding(*, err: bool = False) -> str:
    """The encoding of the stream click writes to (a runner's, in tests)."""
    return getattr(sys.stderr if err else sys.stdout, "encoding", None) or "utf-8"


def _shown(text: str, *, err: bool = False) -> str:
    """An identity or name in text output (see :mod:`flask_quota._display`)."""
    return _display.shown(text, _encoding(err=err))


def _table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> list[str]:
    cells = [list(headers)] + [["-" if c is None else _shown(str(c)) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


@quota_cli.command("limits")
@json_option
@_one_line_errors
def limits_command(as_json: bool) -> None:
    """Every route with its limits, strategy, key function and scope."""
    rows = admin.route_limits(_app())
    _emit(
        as_json,
        rows,
        lambda: (
            _table(
                [
                    (
                        r.endpoint,
                        r.methods,
                        r.rule,
                        r.name,
                        "exempt" if r.exempt else r.limit,
                        r.strategy,
                        r.key,
                        r.scope,
                    )
                    for r in rows
                ],
                ("Endpoint", "Methods", "Rule", "Name", "Limit", "Strategy", "Key", "Scope"),
            )
            if rows
            else ["No routes."]
        ),
        used_storage=False,
    )


@quota_cli.command("list")
@click.argument("pattern", default="*")
@click.option(
    "--limit",
    "max_rows",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Show at most this many counters.",
)
@json_option
@_one_line_errors
def list_command(pattern: str, max_rows: int, as_json: bool) -> None:
    """Live counters of identities matching the glob PATTERN."""
    resolved = admin.resolve_pattern(_app(), pattern)
    pattern = resolved.identity
    rows = admin.live_counters(_app(), pattern, max_rows)
    _emit(
        as_json,
        rows,
        lambda: (
            _table(
                [
                    (r.identity, r.name, r.limit, r.strategy, r.used, r.remaining, r.reset)
                    for r in rows
                ],
                ("Identity", "Name", "Limit", "Strategy", "Used", "Remaining", "Reset (s)"),
            )
            if rows
            else [f"No live counters match {pattern!r}."]
        ),
        resolved=resolved,
    )


@quota_cli.command("reset")
@click.argument("identity", required=False)
@click.option("--limit", "limit_name", help="Only the limit with this name.")
@click.option("--all", "everything", is_flag=True, help="Every identity's counters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --all).")
@json_option
@_one_line_errors
def reset_command(
    identity: str | None, limit_name: str | None, everything: bool, yes: bool, as_json: bool
) -> None:
    """Clear the counters of IDENTITY (or of everyone with --all)."""
    if everything == (identity is not None):
        raise _UsageLine("give either IDENTITY or --all")
    if everything:
        if limit_name is not None:
            raise _UsageLine("--limit goes with IDENTITY, not with --all")
        if not yes:
            click.confirm("Clear every counter of every identity?", abort=True, err=True)
        cleared = admin.reset_all(_app())
        _emit(
            as_json,
            {"cleared": cleared, "identity": None},
            lambda: [f"Cleared {cleared} counters."],
        )
        return
    assert identity is not None
    resolved = admin.resolve_identity(_app(), identity)
    shown = resolved.identity
    cleared = admin.reset(_app(), shown, limit_name)
    _emit(
        as_json,
        {"cleared": cleared, "identity": shown, "limit": limit_name},
        lambda: [f"Cleared {cleared} counters of {_shown(shown)}."],
        resolved=resolved,
    )


@quota_cli.group("whitelist")
def whitelist_group() -> None:
    """The allow list kept in storage (shared by every process)."""


@whitelist_group.command("add")
@click.argument("identity")
@json_option
@_one_line_errors
def whitelist_add(identity: str, as_json: bool) -> None:
    """Let IDENTITY bypass every limit."""
    resolved = admin.resolve_full_identity(_app(), identity)
    shown = admin.allow(_app(), resolved.identity)
    _emit(
        as_json,
        {"identity": shown, "whitelisted": True},
        lambda: [f"Whitelisted {_shown(shown)}."],
        resolved=resolved,
    )


@whitelist_group.command("remove")
@click.argument("identity")
@json_option
@_one_line_errors
def whitelist_remove(identity: str, as_json: bool) -> None:
    """Take IDENTITY off the stored allow list."""
    resolved = admin.resolve_full_identity(_app(), identity)
    shown = resolved.identity
    if not admin.disallow(_app(), shown):
        raise click.ClickException(f"{_shown(shown, err=True)} is not on the stored whitelist")
    _emit(
        as_json,
        {"identity": shown, "whitelisted": False},
        lambda: [f"Removed {_shown(shown)}."],
        resolved=resolved,
    )


@whitelist_group.command("list")
@json_option
@_one_line_errors
def whitelist_list(as_json: bool) -> None:
    """The allow list: QUOTA_WHITELIST and the stored entries."""
    entries = admin.allowed_identities(_app())
    _emit(
        as_json,
        [{"identity": i, "source": s} for i, s in entries],
        lambda: _table(entries, ("Identity", "Source")) if entries else ["The whitelist is empty."],
    )


@quota_cli.command("block")
@click.argument("identity")
@click.option(
    "--for",
    "seconds",
    type=SECONDS,
    help="Seconds, up to 10 years (default QUOTA_BLOCK_DURATION, 1 hour).",
)
@json_option
@_one_line_errors
def block_command(identity: str, seconds: int | None, as_json: bool) -> None:
    """Refuse every request of IDENTITY until the block expires."""
    resolved = admin.resolve_full_identity(_app(), identity)
    shown, duration = admin.block(_app(), resolved.identity, seconds)
    _emit(
        as_json,
        {"identity": shown, "blocked_for": duration},
        lambda: [f"Blocked {_shown(shown)} for {duration} s."],
        resolved=resolved,
    )


@quota_cli.command("unblock")
@click.argument("identity")
@json_option
@_one_line_errors
def unblock_command(identity: str, as_json: bool) -> None:
    """Lift the block on IDENTITY."""
    resolved = admin.resolve_full_identity(_app(), identity)
    shown = resolved.identity
    if not admin.unblock(_app(), shown):
        raise click.ClickException(f"{_shown(shown, err=True)} is not blocked")
    _emit(
        as_json,
        {"identity": shown, "blocked": False},
        lambda: [f"Unblocked {_shown(shown)}."],
        resolved=resolved,
    )


@quota_cli.command("top")
@click.option(
    "--limit",
    "count",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many identities.",
)
@json_option
@_one_line_errors
def top_command(count: int, as_json: bool) -> None:
    """The identities refused most often within QUOTA_ALERT_WINDOW."""
    rows = admin.top_offenders(_app(), count)
    _emit(
        as_json,
        rows,
        lambda: (
            _table([(r.identity, r.refusals) for r in rows], ("Identity", "Refusals"))
            if rows
            else ["No refusals in the alert window."]
        ),
    )


@quota_cli.command("set")
@click.argument("name")
@click.argument("limit")
@click.option("--for", "seconds", type=SECONDS, help="Lapse after SECONDS (up to 10 years).")
@json_option
@_one_line_errors
def set_command(name: str, limit: str, seconds: int | None, as_json: bool) -> None:
    """Override the limit named NAME with LIMIT in every process (no restart)."""
    admin.set_override(_app(), name, limit, seconds)
    _emit(
        as_json,
        {"name": name, "limit": limit, "expires_in": seconds},
        lambda: [
            f"{_shown(name)} = {_shown(limit)}"
            + (f" for {seconds} s." if seconds else " until unset.")
        ],
    )


@quota_cli.command("unset")
@click.argument("name")
@json_option
@_one_line_errors
def unset_command(name: str, as_json: bool) -> None:
    """Drop the override of NAME: back to its configured limit."""
    if not admin.clear_override(_app(), name):
        raise click.ClickException(f"no override named {name!r}")
    _emit(as_json, {"name": name, "overridden": False}, lambda: [f"Unset {_shown(name)}."])


@quota_cli.command("overrides")
@json_option
@_one_line_errors
def overrides_command(as_json: bool) -> None:
    """The live overrides in force."""
    rows = admin.list_overrides(_app())
    _emit(
        as_json,
        rows,
        lambda: (
            _table(
                [(r.name, r.limit, r.expires_in_s) for r in rows],
                ("Name", "Limit", "Expires in (s)"),
            )
            if rows
            else ["No overrides."]
        ),
    )


@quota_cli.command("emergency")
@click.argument("switch", type=click.Choice(["on", "off", "status"]))
@click.option("--factor", type=float, help="Scale every limit by this, in (0, 1] (with on).")
@click.option("--for", "seconds", type=SECONDS, help="Lapse after SECONDS (up to 10 years).")
@json_option
@_one_line_errors
def emergency_command(
    switch: str, factor: float | None, seconds: int | None, as_json: bool
) -> None:
    """Scale every limit at once (on --factor 0.1), or back to normal (off)."""
    app = _app()
    if switch == "on":
        if factor is None:
            raise _UsageLine("emergency on needs --factor, e.g. --factor 0.1")
        admin.set_emergency(app, factor, seconds)
    elif switch == "off":
        if factor is not None or seconds is not None:
            raise _UsageLine("emergency off takes no --factor or --for")
        admin.clear_emergency(app)
    status = admin.emergency_status(app)
    _emit(
        as_json,
        status,
        lambda: [
            f"Emergency on: every limit x {status.factor:g}"
            + (f" for {status.expires_in_s} s." if status.expires_in_s else ".")
            if status.active
            else "Emergency off: limits as configured."
        ],
    )
