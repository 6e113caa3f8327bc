"""What operators do to a running API: inspect, reset, allow-list, block, rank offenders.

Plain functions over an app's state, so the CLI stays a thin shell and tests need no click.
Every identity given here may be raw or already redacted (``key:secret`` and
``key:sha256:<16 hex>`` name the same API key); nothing here prints a secret. An IP address is
taken as ``by_ip`` would count it (an IPv6 one as its network), and a network is refused.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Final

from flask import Flask

from . import _identities, live
from ._catalog import CounterId, CounterLimits, build_catalog, made_by_plan
from ._identities import OperatorIdentity
from ._registry import AppliedLimit
from ._request import apply_live_config
from ._state import AppState, app_state
from .algorithms import Decision
from .errors import ConfigurationError
from .keys import (
    ALLOW,
    BLOCK,
    REFUSALS,
    ParsedKey,
    digest_pattern,
    identity_key,
    identity_pattern,
    is_digest,
    parse_key,
    prefix_pattern,
    redact,
    stored_identity,
)
from .limits import MAX_PERIOD_S
from .responses import ceil_seconds
from .storage import MemoryStorage
from .storage.base import ALLOW_IN_USE, BLOCK_IN_USE, Check

#: Ends the error for an IP network given as an identity.
_NETWORK_HINT: Final = "to allow a network, put it in QUOTA_WHITELIST"
#: Ends the error for an IP network given as a ``list`` pattern.
_GLOB_HINT: Final = "to list several, use a glob ('*', '?', '[...]')"
#: Keys peeked per storage call by :func:`live_counters`.
_PEEK_BATCH = 100
#: The longest block, override or emergency an operator may set: the longest limit period (ten
#: years), longer than any deliberate one. Redis refuses an expiry past 2**63 ms and the
#: script's clock is 64-bit microseconds; without a bound, ``--for 99999999999999999999``
#: reached Redis and failed there.
MAX_DURATION_S: Final = MAX_PERIOD_S


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """One limit on one route, for ``flask quota limits``; or a route's methods with no limit.

    A route (or some of its methods) that no limit covers has a row whose limit fields are
    ``None``; ``exempt`` tells an exemption (``@quota.exempt``, an exempt blueprint, the
    ``static`` route unless ``QUOTA_COUNT_STATIC``) from a route that simply has no limit.
    """

    endpoint: str
    rule: str
    methods: str
    name: str | None
    limit: str | None
    strategy: str | None
    key: str | None
    scope: str | None
    dry_run: bool
    fail_mode: str | None
    exempt: bool = False


@dataclass(frozen=True, slots=True)
class Counter:
    """One identity's live state under one limit, for ``flask quota list``."""

    identity: str
    name: str
    limit: str
    strategy: str
    used: int | None
    remaining: int | None
    #: Seconds until the limit is whole again, as in the 429 body and headers.
    reset: int | None


@dataclass(frozen=True, slots=True)
class Offender:
    identity: str
    refusals: int


def is_per_process(app: Flask) -> bool:
    """Whether the app's storage is ``memory://``, which no other process can see."""
    return isinstance(app_state(app).storage, MemoryStorage)


def resolve_identity(app: Flask, text: str) -> OperatorIdentity:
    """The identity an operator's ``text`` names: API keys redacted, an IPv6 address made the
    network ``by_ip`` counts it in (see :mod:`flask_quota._identities`).

    :raises ConfigurationError: for an empty text or an IP network (lists hold identities).
    """
    return _identity(app_state(app), text)


def resolve_full_identity(app: Flask, text: str) -> OperatorIdentity:
    """:func:`resolve_identity`, for the stored lists and blocks: their keys' hash tag comes
    from the identity in full, so the digest form ``list`` shows for a long identity
    (``#<32 hex>``) cannot name one; it is refused rather than taken as an identity of its own.
    """
    if is_digest(text):
        raise ConfigurationError(
            f"{text!r} is the form list shows for a long identity: give the identity in full"
        )
    return resolve_identity(app, text)


def _identity(state: AppState, text: str) -> OperatorIdentity:
    prefix = state.settings.ipv6_prefix
    return _identities.resolve_identity(text, prefix, hint=_NETWORK_HINT)


def route_limits(app: Flask) -> list[RouteLimit]:
    """Every route with its limits, sorted by rule (like ``flask routes --sort rule``).

    Each limit is a row; a route without any (exempt, or nothing declared and no default or
    global limit) is a row too, so no route is missing from the list.
    """
    state = app_state(app)
    rows: list[RouteLimit] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        served = frozenset(rule.methods or ()) - {"HEAD", "OPTIONS"}
        rows += _route_rows(state, rule.endpoint, rule.rule, served)
    return rows


def _route_rows(
    state: AppState, endpoint: str, rule: str, served: frozenset[str]
) -> list[RouteLimit]:
    def unlimited(methods: frozenset[str], *, exempt: bool) -> RouteLimit:
        return RouteLimit(
            endpoint=endpoint,
            rule=rule,
            methods=_methods(methods),
            name=None,
            limit=None,
            strategy=None,
            key=None,
            scope=None,
            dry_run=False,
            fail_mode=None,
            exempt=exempt,
        )

    if endpoint == "static" and not state.settings.count_static:
        return [unlimited(served, exempt=True)]
    plan = state.plans.get(endpoint)
    if plan.exempt:
        return [unlimited(served, exempt=True)]
    counted = served - plan.exempt_methods
    rows: list[RouteLimit] = []
    for compiled in plan.specs:
        spec = compiled.spec
        limits: tuple[AppliedLimit, ...] | None = compiled.fixed
        entries = (
            [(a.name, str(a.limit)) for a in limits]
            if limits is not None
            else [(spec.name or f"{compiled.name_base}:<dynamic>", _dynamic_label(spec.source))]
        )
        for name, text in entries:
            rows.append(
                RouteLimit(
                    endpoint=endpoint,
                    rule=rule,
                    methods=_methods(spec.methods) if spec.methods else _methods(counted),
                    name=name,
                    limit=text,
                    strategy=compiled.strategy.value,
                    key=_function_name(compiled.key),
                    scope=compiled.scope,
                    dry_run=compiled.dry_run,
                    fail_mode=compiled.fail_mode.value,
                )
            )
    for slots in plan.concurrency:
        rows.append(
            RouteLimit(
                endpoint=endpoint,
                rule=rule,
                methods=_methods(slots.methods or counted),
                name=slots.name,
                limit=f"{slots.capacity} in flight",
                strategy="concurrent",
                key=_function_name(slots.key),
                scope=slots.scope,
                dry_run=False,
                fail_mode=slots.fail_mode.value,
            )
        )
    if not rows and counted:
        rows.append(unlimited(counted, exempt=False))
    if served & plan.exempt_methods:
        rows.append(unlimited(served & plan.exempt_methods, exempt=True))
    return rows


def _methods(methods: frozenset[str]) -> str:
    return ",".join(sorted(methods))


def _function_name(function: object) -> str:
    return str(getattr(function, "__name__", repr(function)))


def _dynamic_label(source: object) -> str:
    """A callable limit's string, as ``limits`` shows it: a plan's comes from ``QUOTA_PLANS``."""
    if made_by_plan(source):
        return "<per request: QUOTA_PLANS>"
    return f"<per request: {getattr(source, '__qualname__', repr(source))}>"


def resolve_pattern(app: Flask, pattern: str) -> OperatorIdentity:
    """A ``list`` pattern as matched against shown identities.

    One without glob characters is an identity, resolved like any other: ``key:<secret>``
    finds its hashed counters (and is never echoed back in clear), an IPv6 address its
    network's. A glob is left as it is.
    """
    if _is_glob(pattern):
        return OperatorIdentity(pattern)
    prefix = app_state(app).settings.ipv6_prefix
    return _identities.resolve_identity(pattern, prefix, hint=_GLOB_HINT)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def live_counters(app: Flask, pattern: str = "*", limit: int = 1000) -> list[Counter]:
    """Identities with live state whose shown identity matches the glob ``pattern``.

    Used/remaining/reset come from a peek (a check of cost 0: decided, never written) with
    the counter's limit as it is in force now: the app's declarations under the live
    overrides and the emergency factor (see :mod:`flask_quota._catalog`). A plan's
    counter whose plan only a request can tell is peeked under each plan that fits it: the
    limit shows them all (``1000/day|100000/day``), used and reset show when every one gives
    the same, remaining does not. A counter whose limit is unknown here shows only its
    identity and name (``?`` for the limit).
    """
    pattern = resolve_pattern(app, pattern).identity
    if not _is_glob(pattern):  # one identity: a long one is known by its digest
        pattern = stored_identity(pattern)
    state = app_state(app)
    _refresh(state)  # a CLI process has served no request: read the live config first
    factor = state.emergency_factor
    prefix = state.settings.key_prefix
    catalog = build_catalog(app, state)
    found: list[tuple[ParsedKey, str]] = []
    for key in state.storage.scan(prefix_pattern(prefix)):
        parsed = parse_key(key, prefix)
        if parsed is None or parsed.kind.startswith("%"):
            continue
        if fnmatch.fnmatchcase(parsed.identity, pattern):
            found.append((parsed, key))
            if len(found) >= limit:
                break
    counters: list[Counter] = []
    for start in range(0, len(found), _PEEK_BATCH):
        batch = [
            (parsed, key, catalog.lookup(parsed))
            for parsed, key in found[start : start + _PEEK_BATCH]
        ]
        peeks = [
            Check(key=key, rule=applied.rule_for(factor), cost=0, dry_run=True)
            for _, key, limits in batch
            for applied in (limits.candidates if limits else ())
        ]
        decisions = iter(state.storage.evaluate(peeks).decisions if peeks else ())
        for parsed, _, limits in batch:
            candidates = limits.candidates if limits else ()
            counters.append(_counter_row(parsed, limits, [next(decisions) for _ in candidates]))
    counters.sort(key=lambda c: (c.identity, c.name))
    return counters


def _counter_row(
    parsed: ParsedKey, limits: CounterLimits | None, decisions: list[Decision]
) -> Counter:
    """One row of ``list``: the counter under its candidate limits' peeks (one each)."""
    if limits is None or not limits.candidates:
        name = parsed.kind if limits is None else limits.label
        return Counter(parsed.identity, name, "?", parsed.algorithm, None, None, None)
    candidates = limits.candidates
    if len(candidates) == 1:
        (only,), (decision,) = candidates, decisions
        return Counter(
            identity=parsed.identity,
            name=only.name,
            limit=str(only.limit),
            strategy=only.strategy.value,
            used=decision.limit - decision.remaining,
            remaining=decision.remaining,
            reset=ceil_seconds(decision.reset_after_us),
        )
    used = {d.limit - d.remaining for d in decisions}
    reset = {ceil_seconds(d.reset_after_us) for d in decisions}
    names = {c.name for c in candidates}
    return Counter(
        identity=parsed.identity,
        name=names.pop() if len(names) == 1 else limits.label,
        limit="|".join(str(c.limit) for c in candidates),
        strategy=candidates[0].strategy.value,
        used=used.pop() if len(used) == 1 else None,
        remaining=None,
        reset=reset.pop() if len(reset) == 1 else None,
    )


def reset(app: Flask, identity: str, limit_name: str | None = None) -> int:
    """Clear an identity's counters (all its limits, or those named ``limit_name``).

    A long identity may be given in full or as ``list`` shows it, ``#<digest>``; the digest
    does not tell the keys' hash tag, so that form walks every key under the prefix.

    :returns: how many stored states were cleared.
    :raises ConfigurationError: for an empty identity or a name no route declares.
    """
    state = app_state(app)
    shown = _identity(state, identity).identity
    stored = stored_identity(shown)
    prefix = state.settings.key_prefix
    counters: frozenset[CounterId] | None = None
    if limit_name is not None:
        counters = build_catalog(app, state).counters_named(limit_name)
        if not counters:
            raise ConfigurationError(f"no limit named {limit_name!r}: see 'flask quota limits'")
    patterns = [identity_pattern(prefix, shown)]
    if is_digest(shown):  # as list shows a long identity (or, unlikely, an identity itself)
        patterns.append(digest_pattern(prefix, shown))
    doomed: list[str] = []
    for key in dict.fromkeys(key for pattern in patterns for key in state.storage.scan(pattern)):
        parsed = parse_key(key, prefix)
        if parsed is None or parsed.identity != stored or parsed.kind.startswith("%"):
            continue
        if counters is None or any(
            parsed.kind == scope
            and (not algorithm or (parsed.algorithm, parsed.period_s) == (algorithm, period))
            for scope, algorithm, period in counters
        ):
            doomed.append(key)
    state.storage.clear(doomed)
    return len(doomed)


def reset_all(app: Flask) -> int:
    """Clear every counter and refusal count (allow-list entries and blocks stay)."""
    state = app_state(app)
    prefix = state.settings.key_prefix
    doomed = [
        key
        for key in state.storage.scan(prefix_pattern(prefix))
        if (parsed := parse_key(key, prefix)) is not None and parsed.kind not in (ALLOW, BLOCK)
    ]
    for start in range(0, len(doomed), 1000):
        state.storage.clear(doomed[start : start + 1000])
    return len(doomed)


def allow(app: Flask, identity: str) -> str:
    """Add ``identity`` to the stored allow list (every process, at once). Returns it shown."""
    state = app_state(app)
    shown = _identity(state, identity).identity
    _mark_in_use(state, ALLOW_IN_USE)
    state.storage.put(identity_key(state.settings.key_prefix, ALLOW, shown), "1", None)
    return shown


def _mark_in_use(state: AppState, field: str) -> None:
    """Turn on the lookups of a stored list (before its first entry exists, so no request can
    miss it); the flag is never cleared, so concurrent admins cannot race it off."""
    state.storage.set_config_field(state.config_key, field, "1")


def disallow(app: Flask, identity: str) -> bool:
    """Remove ``identity`` from the stored allow list; ``False`` if it was not there."""
    state = app_state(app)
    key = identity_key(state.settings.key_prefix, ALLOW, _identity(state, identity).identity)
    present = state.storage.get(key) is not None
    state.storage.clear([key])
    return present


def allowed_identities(app: Flask) -> list[tuple[str, str]]:
    """The allow list: ``(identity, source)``, source ``config`` or ``storage``."""
    state = app_state(app)
    settings = state.settings
    # Shown like any identity: an API key from QUOTA_WHITELIST only as its digest.
    configured = sorted({redact(i) for i in settings.whitelist_identities})
    entries = [(i, "config") for i in configured]
    entries += [(str(n), "config") for n in settings.whitelist_networks]
    stored = {
        parsed.identity
        for key in state.storage.scan(f"{prefix_pattern(settings.key_prefix)}:{ALLOW}:*")
        if (parsed := parse_key(key, settings.key_prefix)) is not None and parsed.kind == ALLOW
    }
    entries += [(i, "storage") for i in sorted(stored)]
    return entries


def block(app: Flask, identity: str, seconds: int | None = None) -> tuple[str, int]:
    """Refuse every request of ``identity`` for ``seconds`` (default ``QUOTA_BLOCK_DURATION``)."""
    state = app_state(app)
    duration = state.settings.block_duration_s if seconds is None else seconds
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or not 1 <= duration <= MAX_DURATION_S
    ):
        source = "QUOTA_BLOCK_DURATION" if seconds is None else "block duration"
        raise ConfigurationError(
            f"invalid {source} {duration!r}: expected whole seconds from 1 to "
            f"{MAX_DURATION_S} (10 years)"
        )
    shown = _identity(state, identity).identity
    _mark_in_use(state, BLOCK_IN_USE)
    state.storage.put(identity_key(state.settings.key_prefix, BLOCK, shown), "1", duration * 1000)
    return shown, duration


def unblock(app: Flask, identity: str) -> bool:
    """Lift a block; ``False`` if the identity was not blocked."""
    state = app_state(app)
    key = identity_key(state.settings.key_prefix, BLOCK, _identity(state, identity).identity)
    present = state.storage.get(key) is not None
    state.storage.clear([key])
    return present


def top_offenders(app: Flask, count: int = 10) -> list[Offender]:
    """Identities refused most often in the current alert window, most first."""
    if count < 1:
        raise ConfigurationError(f"invalid --limit {count!r}: expected a number >= 1")
    state = app_state(app)
    prefix = state.settings.key_prefix
    offenders = []
    for key in state.storage.scan(f"{prefix_pattern(prefix)}:{REFUSALS}:*"):
        parsed = parse_key(key, prefix)
        value = state.storage.get(key)
        if parsed is not None and parsed.kind == REFUSALS and value is not None:
            offenders.append(Offender(parsed.identity, int(value)))
    offenders.sort(key=lambda o: (-o.refusals, o.identity))
    return offenders[:count]


@dataclass(frozen=True, slots=True)
class OverrideInfo:
    """A live override as operators see it."""

    name: str
    limit: str
    expires_in_s: int | None


@dataclass(frozen=True, slots=True)
class EmergencyInfo:
    active: bool
    factor: float
    expires_in_s: int | None


def _expiry(state: AppState, seconds: float | None) -> int | None:
    if seconds is None:
        return None
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds <= MAX_DURATION_S
    ):
        raise ConfigurationError(
            f"invalid duration {seconds!r}: expected seconds > 0, at most {MAX_DURATION_S} "
            "(10 years)"
        )
    return state.storage.now_us() + int(seconds * 1_000_000)


def _refresh(state: AppState) -> None:
    """Make this process obey at once (the others learn from their next request)."""
    fields, now_us = state.storage.snapshot_config(state.config_key)
    state.live = live.decode(fields)
    apply_live_config(state, now_us)


def set_override(app: Flask, name: str, limit: str, seconds: float | None = None) -> None:
    """Replace the limit named ``name`` by ``limit`` everywhere, for ``seconds`` if given."""
    state = app_state(app)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"invalid limit name {name!r}: expected a non-empty string")
    value = live.encode_override(limit, _expiry(state, seconds))
    state.storage.update_config(state.config_key, live.LIMIT_FIELD + name, value)
    _refresh(state)


def clear_override(app: Flask, name: str) -> bool:
    """Drop the override of ``name``; ``False`` if there was none."""
    state = app_state(app)
    field_name = live.LIMIT_FIELD + name
    present = field_name in state.storage.read_config(state.config_key)
    if present:
        state.storage.update_config(state.config_key, field_name, None)
        _refresh(state)
    return present


def list_overrides(app: Flask) -> list[OverrideInfo]:
    """The overrides in force now, by name."""
    state = app_state(app)
    config = live.decode(state.storage.read_config(state.config_key))
    now = state.storage.now_us()
    infos = []
    for name, text in sorted(config.active_overrides(now).items()):
        expires = config.overrides[name].expires_at_us
        infos.append(
            OverrideInfo(name, text, None if expires is None else ceil_seconds(expires - now))
        )
    return infos


def set_emergency(app: Flask, factor: float, seconds: float | None = None) -> None:
    """Scale every limit by ``factor`` in (0, 1] everywhere, for ``seconds`` if given."""
    state = app_state(app)
    value = live.encode_emergency(factor, _expiry(state, seconds))
    state.storage.update_config(state.config_key, live.EMERGENCY_FIELD, value)
    _refresh(state)


def clear_emergency(app: Flask) -> None:
    """Limits back to their configured numbers."""
    state = app_state(app)
    state.storage.update_config(state.config_key, live.EMERGENCY_FIELD, None)
    _refresh(state)


def emergency_status(app: Flask) -> EmergencyInfo:
    """Whether an emergency factor is in force, which, and for how long."""
    state = app_state(app)
    config = live.decode(state.storage.read_config(state.config_key))
    now = state.storage.now_us()
    factor = config.factor(now)
    expires = config.emergency_expires_at_us
    return EmergencyInfo(
        active=factor < 1.0,
        factor=factor,
        expires_in_s=None if expires is None or factor == 1.0 else ceil_seconds(expires - now),
    )
