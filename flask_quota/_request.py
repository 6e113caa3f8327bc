"""The hot path: one request through its plan, in one storage call.

``check_request`` gathers identities, limits, costs and concurrency slots, asks the storage
once, and turns the answer into headers (``g._quota``), signals, metrics, a delay or a 429.
A 429 nothing would reshape is returned as a response rather than raised (see
:mod:`flask_quota._errorhandlers`).
Live-config changes and timed expiries are noticed from that same answer.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from flask import Flask, g, request
from werkzeug.wrappers import Response

from . import live, signals
from . import metrics as m
from ._config import ErrorFormat, FailMode, KeyFunc, Settings
from ._errorhandlers import has_handler
from ._registry import AppliedLimit, CompiledConcurrency, CompiledSpec, Plan
from ._state import AppState
from .algorithms import Decision
from .errors import RateLimitExceeded, StorageError, StorageUnavailable
from .keys import ALLOW, BLOCK, REFUSALS, identity_key, limit_key, redact_client, state_key
from .responses import (
    Reported,
    ceil_seconds,
    refusal_body,
    retry_after_seconds,
)
from .storage.base import BatchResult, Check, Slot, Storage, Subject

log = logging.getLogger("flask_quota")

#: An admitted request leaving less than this share of a limit counts as ``near_limit``.
NEAR_LIMIT_SHARE = 0.2
#: The policy name of a refusal by an operator's block.
BLOCK_POLICY = "blocked"
#: The scope-level "algorithm" in concurrency slot keys.
CONCURRENT = "concurrent"
#: A process whose knowledge of the live config is older than this re-reads it before deciding,
#: so every process obeys a change within a second even if it was idle when it happened.
LIVE_STALENESS_S = 1.0


@dataclass(slots=True)
class _Pending:
    """One check of this request, with what is needed to report on it."""

    applied: AppliedLimit
    #: The identity as stored and shown (API keys hashed), computed once per request.
    shown: str
    compiled: CompiledSpec


@dataclass(slots=True)
class _Batch:
    """Everything this request asks of the storage, and who each part is for."""

    pending: list[_Pending] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    slot_specs: list[tuple[CompiledConcurrency, str]] = field(default_factory=list)
    fail_modes: set[FailMode] = field(default_factory=set)
    #: The storage that answered (the local one under fail mode "local"): slots go back there.
    answered_by: Storage | None = None
    _identities: dict[KeyFunc, str | None] = field(default_factory=dict)
    _subject_index: dict[str, int] = field(default_factory=dict)

    def identity(self, key_func: KeyFunc) -> str | None:
        """The key function's answer, asked once per request."""
        if key_func in self._identities:
            return self._identities[key_func]
        raw = key_func()
        if raw is not None and not isinstance(raw, str):
            raise TypeError(f"key function {key_func!r} returned {raw!r}, not a str or None")
        self._identities[key_func] = raw
        return raw

    def subject(self, prefix: str, shown: str) -> int:
        """The index of the subject for the (redacted) identity ``shown``."""
        index = self._subject_index.get(shown)
        if index is None:
            index = self._subject_index[shown] = len(self.subjects)
            self.subjects.append(_subject(prefix, shown))
        return index


@lru_cache(maxsize=4096)
def _subject(prefix: str, shown: str) -> Subject:
    """An identity's three keys, built once while it is busy (shared, never modified)."""
    return Subject(
        identity=shown,
        allow_key=identity_key(prefix, ALLOW, shown),
        block_key=identity_key(prefix, BLOCK, shown),
        refusals_key=identity_key(prefix, REFUSALS, shown),
    )


def check_request(
    app: Flask,
    state: AppState,
    plan: Plan,
    request_filters: Sequence[Callable[[], bool]],
    method: str,
) -> Response | None:
    """Apply ``plan`` to the current request: ``None`` to go on, the 429 response to answer
    with when refused and nothing would reshape it; else raises the 429 (or the 503)."""
    if request_filters and any(request_filter() for request_filter in request_filters):
        state.metrics.send((m.BYPASSED,))
        return None
    settings = state.settings
    factor = _factor(state)
    batch = _collect(plan, settings, method, factor)
    if not batch.checks and not batch.slots:
        return None
    if _whitelisted(settings, batch.pending):
        state.metrics.send((m.BYPASSED,))
        return None
    modes = batch.fail_modes
    fail_mode = next(iter(modes)) if len(modes) == 1 else max(modes, key=lambda f: f.strictness)
    started = time.perf_counter()
    result = _evaluate(app, state, batch, fail_mode)
    check_ms = (time.perf_counter() - started) * 1000
    if result is None:
        return None
    if result.allowed_by_list:
        state.metrics.send((m.BYPASSED,), check_ms)
        return None
    if result.blocked_subject is not None:
        return _refuse_blocked(app, state, batch.subjects[result.blocked_subject], result, check_ms)
    if result.allowed and batch.slots:
        g._quota_slots = (batch.answered_by, batch.slots)
    return _settle(app, state, batch, result, check_ms)


def release_slots(state: AppState) -> None:
    """Give back this request's concurrency slots (``teardown_request``, errors included)."""
    taken: tuple[Storage, list[Slot]] | None = g.pop("_quota_slots", None)
    if taken is None:
        return
    storage, slots = taken
    if storage is state.storage and state.guard.failing:
        return  # the storage went down meanwhile: the leases expire, no request waits on it
    for slot in slots:
        try:
            storage.release(slot)
        except StorageError as error:
            # The lease expires on its own; the next request's call will report the outage.
            log.warning("could not release concurrency slot %s: %s", slot.key, error)


def _factor(state: AppState) -> float:
    """The emergency factor times the adaptive one, quantized."""
    factor = state.emergency_factor
    adaptive = state.settings.adaptive
    if adaptive is not None:
        value = adaptive()
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            log.warning("QUOTA_ADAPTIVE returned %r, not a factor in (0, 1]: ignored", value)
            value = 1.0
        value = live.quantize(float(value)) if value < 1 else 1.0
        if value != state.adaptive_factor:
            log.info("adaptive limit factor %.2f -> %.2f", state.adaptive_factor, value)
            state.adaptive_factor = value
            state.metrics.gauge(m.ADAPTIVE_FACTOR, value)
        factor *= value
    return live.quantize(factor) if factor < 1 else 1.0


def _collect(plan: Plan, settings: Settings, method: str, factor: float) -> _Batch:
    """Identities, limits, costs and slots of this request, for one storage call."""
    batch = _Batch()
    prefix = settings.key_prefix
    for compiled in plan.specs:
        spec = compiled.spec
        if spec.methods is not None and method not in spec.methods:
            continue
        if spec.exempt_when is not None and spec.exempt_when():
            continue
        identity = batch.identity(compiled.key)
        if identity is None:
            continue
        applied = compiled.applied()
        if not applied:
            continue
        cost = compiled.cost()
        shown = redact_client(identity)
        subject = batch.subject(prefix, shown)
        batch.fail_modes.add(compiled.fail_mode)
        for limit in applied:
            batch.checks.append(
                Check(
                    key=state_key(prefix, limit.key_part, shown),
                    rule=limit.rule_for(factor),
                    cost=cost,
                    dry_run=compiled.dry_run,
                    subject=subject,
                )
            )
            batch.pending.append(_Pending(limit, shown, compiled))
    for concurrency in plan.concurrency:
        if concurrency.methods is not None and method not in concurrency.methods:
            continue
        identity = batch.identity(concurrency.key)
        if identity is None:
            continue
        shown = redact_client(identity)
        batch.slots.append(
            Slot(
                key=limit_key(prefix, concurrency.scope, CONCURRENT, 0, shown),
                capacity=max(1, int(concurrency.capacity * factor)),
                lease_us=concurrency.lease_us,
                token=uuid.uuid4().hex,
                subject=batch.subject(prefix, shown),
            )
        )
        batch.slot_specs.append((concurrency, identity))
        batch.fail_modes.add(concurrency.fail_mode)
    return batch


def _whitelisted(settings: Settings, pending: Iterable[_Pending]) -> bool:
    """Whether ``QUOTA_WHITELIST`` names one of this request's identities or its network."""
    if settings.whitelist_identities:
        for item in pending:
            if item.shown in settings.whitelist_identities:
                return True
    if settings.whitelist_networks and request.remote_addr:
        try:
            address = ipaddress.ip_address(request.remote_addr)
        except ValueError:
            return False
        return any(address in network for network in settings.whitelist_networks)
    return False


def _evaluate(
    app: Flask, state: AppState, batch: _Batch, fail_mode: FailMode
) -> BatchResult | None:
    """One storage call, or the fail mode when the storage is down. ``None``: let it pass."""
    guard = state.guard
    alert_window_us = state.settings.alert_window_s * 1_000_000
    if guard.should_try():
        try:
            result = state.storage.evaluate(
                batch.checks,
                batch.subjects,
                alert_window_us,
                slots=batch.slots,
                config_key=state.config_key,
            )
        except StorageError as error:
            _storage_failed(app, state, error, fail_mode)
        else:
            if guard.failing:
                log.warning("rate-limit storage recovered")
                guard.recovered()
            _follow_live_config(state, result)
            batch.answered_by = state.storage
            return result
    if fail_mode is FailMode.CLOSED:
        raise StorageUnavailable(
            retry_after=max(1, ceil_seconds(int(guard.seconds_to_retry() * 1_000_000))),
            problem=state.settings.error_format is ErrorFormat.PROBLEM,
        )
    if fail_mode is FailMode.LOCAL:
        batch.answered_by = state.local_storage
        return state.local_storage.evaluate(
            batch.checks, batch.subjects, alert_window_us, slots=batch.slots
        )
    return None


def refresh_stale_live_config(app: Flask, state: AppState) -> None:
    """Before deciding: re-read the live config if this process has not heard of it for more
    than :data:`LIVE_STALENESS_S`, and lapse timed entries due by the storage's clock.

    A busy process learns every change from the version its previous request's call returned,
    so this costs nothing in the steady state; an idle one pays one round trip on its first
    request, instead of deciding it on a config that may be minutes old.
    """
    age = time.time() - state.live_seen_at
    if age <= LIVE_STALENESS_S:
        estimated_now_us = state.live_seen_now_us + int(age * 1_000_000)
        if estimated_now_us >= state.live_changes_at_us:
            apply_live_config(state, estimated_now_us)
        return
    if state.guard.failing:
        return  # the fail mode applies; the next successful call brings the version
    try:
        fields, now_us = state.storage.snapshot_config(state.config_key)
    except StorageError as error:
        # Counts as the storage call of this retry interval: the request goes straight to
        # its fail mode rather than waiting out a second timeout.
        _storage_failed(app, state, error, state.settings.fail_mode)
        return
    state.live = live.decode(fields)
    _seen(state, now_us)
    apply_live_config(state, now_us)


def _seen(state: AppState, now_us: int) -> None:
    state.live_seen_at = time.time()
    state.live_seen_now_us = now_us


def _storage_failed(app: Flask, state: AppState, error: StorageError, mode: FailMode) -> None:
    """Stop calling the storage for the retry interval; log, count and signal it once."""
    state.guard.failed()
    log.warning(
        "rate-limit storage failed (%s); fail mode %r for %.1f s",
        error,
        mode.value,
        state.guard.retry_interval_s,
    )
    state.metrics.send((m.STORAGE_ERROR,))
    if signals.storage_error.receivers:
        signals.storage_error.send(app, error=error)


def _follow_live_config(state: AppState, result: BatchResult) -> None:
    """Reload the live config if its version moved; apply timed expiries as they come.

    The storage call already returned the version and its clock, so in the steady state
    this costs two integer comparisons.
    """
    _seen(state, result.now_us)
    if result.config_version == state.live.version and result.now_us < state.live_changes_at_us:
        return
    if result.config_version != state.live.version:
        try:
            state.live = live.decode(state.storage.read_config(state.config_key))
        except StorageError as error:
            log.warning("could not read live config: %s", error)
            return
    apply_live_config(state, result.now_us)


def apply_live_config(state: AppState, now_us: int) -> None:
    """Put the overrides and emergency factor in force at ``now_us`` into effect."""
    overrides = state.live.active_overrides(now_us)
    factor = state.live.factor(now_us)
    state.live_changes_at_us = state.live.next_change_us(now_us)
    if factor != state.emergency_factor:
        log.info("emergency limit factor %.2f -> %.2f", state.emergency_factor, factor)
        state.emergency_factor = factor
        state.metrics.gauge(m.EMERGENCY_FACTOR, factor)
    if overrides != state.active_overrides:
        log.info("live limit overrides now %r", overrides)
        state.active_overrides = overrides
        state.plans.clear()


def _refuse_blocked(
    app: Flask, state: AppState, subject: Subject, result: BatchResult, check_ms: float
) -> Response:
    """429 for an identity an operator blocked: ``Retry-After`` is the block's time left."""
    settings = state.settings
    remaining_us = result.block_remaining_us
    if remaining_us < 0:  # a block without expiry: advertise the default block length
        remaining_us = settings.block_duration_s * 1_000_000
    block = Decision(
        allowed=False,
        limit=0,
        remaining=0,
        reset_after_us=remaining_us,
        retry_after_us=remaining_us,
    )
    report = Reported(block, BLOCK_POLICY, ceil_seconds(remaining_us))
    g._quota = (report, result.now_us, settings)
    state.metrics.send((m.DENIED, m.denied_metric(BLOCK_POLICY)), check_ms)
    if log.isEnabledFor(logging.INFO):  # the request's attributes cost lookups: only if read
        log.info(
            "blocked identity %s refused on %s (request id %s)",
            subject.identity,
            request.endpoint,
            request.headers.get("X-Request-ID", "-"),
        )
    _notify_refusal(app, state, None, subject.identity, result.refusals)
    return _refuse(app, state, report, result.now_us, subject.identity)


def _notify_refusal(
    app: Flask, state: AppState, limit: AppliedLimit | None, identity: str, refusals: int
) -> None:
    """``rate_limit_exceeded``, and ``repeat_offender`` when the identity's refusals reach the
    threshold (exactly once per identity per alert window: the count passes it once)."""
    if signals.rate_limit_exceeded.receivers:
        signals.rate_limit_exceeded.send(
            app,
            limit=limit,
            key=identity,
            request=request._get_current_object(),  # type: ignore[attr-defined]
        )
    settings = state.settings
    if refusals == settings.alert_threshold:
        log.warning(
            "repeat offender %s: %d refusals within %d s",
            identity,
            refusals,
            settings.alert_window_s,
        )
        if signals.repeat_offender.receivers:
            signals.repeat_offender.send(
                app, key=identity, count=refusals, window=settings.alert_window_s
            )


def _refuse(app: Flask, state: AppState, report: Reported, now_us: int, identity: str) -> Response:
    """The 429, raised for the app's error handlers (or a trap), else returned as rendered."""
    settings = state.settings
    error = RateLimitExceeded(
        refusal_body(report, now_us, settings.error_format),
        retry_after=retry_after_seconds(report.decision),
        policy=report.policy,
        identity=identity,
        problem=settings.error_format is ErrorFormat.PROBLEM,
    )
    current = request._get_current_object()  # type: ignore[attr-defined]
    handled = state.refusal_handled.get(current.endpoint)
    if handled is None:
        handled = state.refusal_handled[current.endpoint] = has_handler(
            app, RateLimitExceeded, current.blueprints
        )
    if handled or app.trap_http_exception(error):
        raise error  # for the app's error handler, or trapped (TRAP_HTTP_EXCEPTIONS)
    return error.render(app.response_class)


def _reported(item: _Pending, decision: Decision) -> Reported:
    return Reported(decision, item.applied.name, item.applied.limit.period_s)


def _settle(
    app: Flask, state: AppState, batch: _Batch, result: BatchResult, check_ms: float
) -> Response | None:
    """Turn the storage's answer into headers, signals, metrics, a delay or a 429."""
    counters: list[str] = []
    delay_us = 0
    near_limit = False
    # The most constraining decision (least remaining; on a tie, the longest reset), found
    # in the loop: only its report is built.
    constraining_index, constraining_rank = -1, (0, 0)
    for index, (item, decision) in enumerate(zip(batch.pending, result.decisions, strict=False)):
        rank = (decision.remaining, -decision.reset_after_us)
        if constraining_index < 0 or rank < constraining_rank:
            constraining_index, constraining_rank = index, rank
        applied = item.applied
        if not decision.allowed and item.compiled.dry_run:
            counters.append(m.DRY_RUN_DENIED)
            shown = item.shown
            log.info(
                "dry-run limit %s would refuse %s on %s", applied.name, shown, request.endpoint
            )
            # Reported like a refusal (API.md: headers, metrics, signals, logs), never raised.
            if signals.rate_limit_exceeded.receivers:
                signals.rate_limit_exceeded.send(
                    app,
                    limit=applied,
                    key=shown,
                    request=request._get_current_object(),  # type: ignore[attr-defined]
                )
        elif decision.allowed and decision.remaining < decision.limit * NEAR_LIMIT_SHARE:
            near_limit = True
        delay_us = max(delay_us, decision.delay_us)
    refused_index = result.refused_index
    if refused_index is not None:
        if refused_index < len(batch.pending):
            refused = batch.pending[refused_index]
            name, limit, shown = refused.applied.name, refused.applied, refused.shown
            report = _reported(refused, result.decisions[refused_index])
        else:  # a concurrency slot: its decision comes after the checks'
            concurrency, identity = batch.slot_specs[refused_index - len(batch.pending)]
            name, limit, shown = concurrency.name, None, redact_client(identity)
            report = Reported(result.decisions[-1], name, ceil_seconds(concurrency.lease_us))
        g._quota = (report, result.now_us, state.settings)
        counters += [m.DENIED, m.denied_metric(name)]
        state.metrics.send(counters, check_ms)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rate limit %s refused %s on %s (request id %s)",
                name,
                shown,
                request.endpoint,
                request.headers.get("X-Request-ID", "-"),
            )
        _notify_refusal(app, state, limit, shown, result.refusals)
        return _refuse(app, state, report, result.now_us, shown)
    # Once per admitted request that left less than a fifth of any of its limits.
    counters += [m.NEAR_LIMIT, m.ALLOWED] if near_limit else [m.ALLOWED]
    state.metrics.send(counters, check_ms)
    if constraining_index >= 0:
        constraining = batch.pending[constraining_index]
        report = _reported(constraining, result.decisions[constraining_index])
        g._quota = (report, result.now_us, state.settings)
    if delay_us > 0:
        delay_s = delay_us / 1_000_000
        if signals.request_delayed.receivers:
            delayed = next(
                p
                for p, d in zip(batch.pending, result.decisions, strict=False)
                if d.delay_us == delay_us
            )
            signals.request_delayed.send(
                app, limit=delayed.applied, key=delayed.shown, delay=delay_s
            )
        state.sleep(delay_s)
    return None
