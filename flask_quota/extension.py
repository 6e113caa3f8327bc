"""The Flask extension: declarations, per-app state, and the request hooks.

One request, end to end: ``before_request`` looks up the endpoint's compiled :class:`Plan`,
asks the key functions for identities, turns every applicable limit into a :class:`Check` and
sends them all to the storage in one call. A refusal raises :class:`RateLimitExceeded`; an
admission leaves the most constraining decision in ``g._quota`` for ``after_request`` to write
as headers, without another storage call.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, request

from . import metrics as m
from . import signals
from ._config import FailMode, KeyFunc, Settings, load_settings
from ._registry import (
    AppliedLimit,
    CompiledSpec,
    CostSource,
    Kind,
    LimitSource,
    LimitSpec,
    Plan,
    PlanCache,
    compile_spec,
    declare,
)
from ._state import STATE_KEY, app_state
from .algorithms import Decision
from .errors import ConfigurationError, RateLimitExceeded, StorageError, StorageUnavailable
from .identity import GLOBAL, by_ip
from .keys import ALLOW, BLOCK, REFUSALS, identity_key, limit_key, redact
from .metrics import Metrics, metrics_for
from .responses import (
    Reported,
    ceil_seconds,
    most_constraining,
    rate_limit_headers,
    refusal_body,
    retry_after_seconds,
)
from .storage import MemoryStorage, Storage, storage_from_uri
from .storage.base import BatchResult, Check, Subject

log = logging.getLogger("flask_quota")

F = TypeVar("F", bound=Callable[..., Any])

#: A request leaving less than this share of a limit counts as ``near_limit``.
NEAR_LIMIT_SHARE = 0.2
#: The policy name of a refusal by an operator's block.
BLOCK_POLICY = "blocked"


class StorageGuard:
    """Stops asking a failed storage for ``retry_interval_s``, then lets one request probe it.

    Times come from ``time.time()`` at each call, so tests that move time with freezegun or
    time-machine move this timer too.
    """

    def __init__(self, retry_interval_s: float) -> None:
        self.retry_interval_s = retry_interval_s
        self.failing = False
        self._retry_at = 0.0

    def should_try(self) -> bool:
        """Whether this request may call the storage (always, unless it is failing)."""
        if not self.failing:
            return True
        now = time.time()
        if now < self._retry_at:
            return False
        # This request probes; the others keep the fail mode until it has answered.
        self._retry_at = now + self.retry_interval_s
        return True

    def seconds_to_retry(self) -> float:
        return max(0.0, self._retry_at - time.time())

    def failed(self) -> None:
        self.failing = True
        self._retry_at = time.time() + self.retry_interval_s

    def recovered(self) -> None:
        self.failing = False


@dataclass(eq=False, kw_only=True)
class AppState:
    """Everything flask-quota keeps for one app (``app.extensions["quota.state"]``)."""

    settings: Settings
    storage: Storage
    #: Per-process fallback for ``QUOTA_FAIL_MODE = "local"``.
    local_storage: MemoryStorage
    metrics: Metrics
    guard: StorageGuard
    plans: PlanCache
    #: Replaceable in tests, so a leaky_bucket delay need not really sleep.
    sleep: Callable[[float], None] = time.sleep
    global_specs: tuple[CompiledSpec, ...] = ()
    default_specs: tuple[LimitSpec, ...] = field(default_factory=tuple)


@dataclass(slots=True)
class _Pending:
    """One check of this request, with what is needed to report on it."""

    applied: AppliedLimit
    identity: str
    compiled: CompiledSpec


class Quota:
    """Rate limits for one or more Flask apps.

    :param app: the app, or ``None`` to call :meth:`init_app` later (application factories).
    :param default_limits: limits for every view with no limit of its own nor a blueprint
        limit, counted per view and per client ``key``.
    :param global_limits: limits on every request of the app, one counter for all clients.
    :param key: the default key function (identity of the client).
    :param strategy: the default algorithm (``QUOTA_STRATEGY``).
    :param storage_uri: ``QUOTA_STORAGE_URI``.
    :param options: any other option, by the lower-case name of its ``QUOTA_*`` key
        (``fail_mode="closed"`` for ``QUOTA_FAIL_MODE``); keywords win over app config.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        default_limits: Sequence[str] = (),
        global_limits: Sequence[str] = (),
        key: KeyFunc = by_ip,
        strategy: str | None = None,
        storage_uri: str | None = None,
        **options: Any,
    ) -> None:
        from ._config import DEFAULTS

        overrides: dict[str, Any] = {}
        for name, value in options.items():
            config_key = f"QUOTA_{name.upper()}"
            if config_key not in DEFAULTS:
                raise ConfigurationError(f"unknown option {name!r}: no config key {config_key}")
            overrides[config_key] = value
        if default_limits:
            overrides["QUOTA_DEFAULT_LIMITS"] = default_limits
        if global_limits:
            overrides["QUOTA_GLOBAL_LIMITS"] = global_limits
        if strategy is not None:
            overrides["QUOTA_STRATEGY"] = strategy
        if storage_uri is not None:
            overrides["QUOTA_STORAGE_URI"] = storage_uri
        if not callable(key):
            raise ConfigurationError(f"invalid key {key!r}: expected a callable")
        # Validate what can be validated without an app, so mistakes surface at import.
        for text in (*_as_list(default_limits), *_as_list(global_limits)):
            declare(Kind.DEFAULT, text)
        self._overrides = overrides
        self._key = key
        self._view_specs: dict[Callable[..., Any], list[LimitSpec]] = {}
        self._blueprint_specs: dict[str, list[LimitSpec]] = {}
        self._exempt_views: set[Callable[..., Any]] = set()
        self._exempt_blueprints: set[str] = set()
        self._request_filters: list[Callable[[], bool]] = []
        if app is not None:
            self.init_app(app)

    # -- setup -------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read the app's ``QUOTA_*`` config, connect the storage and register the hooks.

        :raises ConfigurationError: for a bad option or limit string, naming it.
        """
        settings = load_settings(app.config, self._overrides)
        state = AppState(
            settings=settings,
            storage=storage_from_uri(settings.storage_uri, timeout_s=settings.storage_timeout_s),
            local_storage=MemoryStorage(),
            metrics=metrics_for(settings.statsd_host, settings.statsd_port, settings.statsd_prefix),
            guard=StorageGuard(settings.retry_interval_s),
            plans=PlanCache(lambda endpoint: self._build_plan(app, endpoint)),
        )
        state.global_specs = tuple(
            c
            for c in (
                compile_spec(
                    declare(Kind.GLOBAL, text, key=GLOBAL),
                    settings,
                    default_key=GLOBAL,
                    scope="global",
                    name_base="global",
                )
                for text in _parse_config_limits("QUOTA_GLOBAL_LIMITS", settings.global_limits)
            )
            if c is not None
        )
        state.default_specs = tuple(
            declare(Kind.DEFAULT, text)
            for text in _parse_config_limits("QUOTA_DEFAULT_LIMITS", settings.default_limits)
        )
        for plan_name, plan_limit in settings.plans.items():
            if plan_limit is not None:
                _parse_config_limits(f"QUOTA_PLANS[{plan_name!r}]", (plan_limit,))
        app.extensions["quota"] = self
        app.extensions[STATE_KEY] = state
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        from .cli import quota_cli  # the CLI imports this module: import it only now

        app.cli.add_command(quota_cli)

    def limit(
        self,
        limit: LimitSource,
        *,
        key: KeyFunc | None = None,
        strategy: str | None = None,
        cost: CostSource = 1,
        burst: int | None = None,
        scope: str | None = None,
        methods: Sequence[str] | None = None,
        exempt_when: Callable[[], bool] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        fail_mode: str | None = None,
    ) -> Callable[[F], F]:
        """Limit a view. Stackable; the string is parsed now, so a bad one fails at import.

        :param limit: ``"10/second"``, ``"10/second;1000/day"``, or a callable returning such
            a string (or ``None``: unlimited) per request.
        :param key: the identity function (default: the ``Quota``'s ``key``); ``None`` from it
            skips this limit for the request.
        :param scope: a counter shared by every view that names it (default: per view).
        :param name: the label in headers, metrics and CLI, and the ``QUOTA_LIMITS`` lookup.
        :param dry_run: evaluate and report, never refuse.
        :param fail_mode: overrides ``QUOTA_FAIL_MODE`` for requests this limit covers.
        :raises ConfigurationError: for an invalid argument, naming it.
        """
        spec = declare(
            Kind.VIEW,
            limit,
            key=key,
            strategy=strategy,
            cost=cost,
            burst=burst,
            scope=scope,
            methods=methods,
            exempt_when=exempt_when,
            name=name,
            dry_run=dry_run,
            fail_mode=fail_mode,
        )

        def decorate(view: F) -> F:
            # Decorators apply bottom-up; insert first so evaluation follows reading order.
            self._view_specs.setdefault(view, []).insert(0, spec)
            return view

        return decorate

    def limit_blueprint(self, blueprint: Blueprint, limit: LimitSource, **options: Any) -> None:
        """Limit every view of ``blueprint`` together: one counter per identity for all of its
        views (like ``scope=blueprint.name``). Takes the options of :meth:`limit`."""
        options.setdefault("scope", blueprint.name)
        self._blueprint_specs.setdefault(blueprint.name, []).append(
            declare(Kind.BLUEPRINT, limit, **options)
        )

    def exempt(self, view: F) -> F:
        """No limits at all on this view (global ones included)."""
        self._exempt_views.add(view)
        return view

    def exempt_blueprint(self, blueprint: Blueprint) -> None:
        """No limits at all on any view of ``blueprint``."""
        self._exempt_blueprints.add(blueprint.name)

    def request_filter(self, function: Callable[[], bool]) -> Callable[[], bool]:
        """Register ``function``; when it returns ``True`` the request bypasses every limit."""
        self._request_filters.append(function)
        return function

    def plan(self, *, by: Callable[[], str | None]) -> Callable[[], str | None]:
        """A dynamic limit from ``QUOTA_PLANS``: ``by()`` names the request's plan.

        A plan mapped to ``None`` (or ``by()`` returning ``None``) is unlimited; a plan name
        missing from ``QUOTA_PLANS`` is a configuration error.
        """

        def plan_limit() -> str | None:
            plan_name = by()
            if plan_name is None:
                return None
            plans = app_state(current_app._get_current_object()).settings.plans  # type: ignore[attr-defined]
            if plan_name not in plans:
                raise ConfigurationError(
                    f"unknown plan {plan_name!r}: QUOTA_PLANS has {sorted(plans)!r}"
                )
            return plans[plan_name]

        return plan_limit

    # -- compilation -------------------------------------------------------------------------

    def _view_specs_for(self, view: Callable[..., Any] | None) -> list[LimitSpec]:
        while view is not None:
            specs = self._view_specs.get(view)
            if specs is not None:
                return specs
            view = getattr(view, "__wrapped__", None)
        return []

    def _is_exempt_view(self, view: Callable[..., Any] | None) -> bool:
        while view is not None:
            if view in self._exempt_views:
                return True
            view = getattr(view, "__wrapped__", None)
        return False

    def _build_plan(self, app: Flask, endpoint: str | None) -> Plan:
        state = app_state(app)
        settings = state.settings
        if endpoint is None:
            return Plan(state.global_specs)
        view = app.view_functions.get(endpoint)
        blueprints = _blueprint_chain(endpoint)
        if self._is_exempt_view(view) or any(
            bp in self._exempt_blueprints for bp in _blueprint_names(blueprints)
        ):
            return Plan((), exempt=True)
        specs: list[CompiledSpec | None] = list(state.global_specs)
        blueprint_specs = [
            (bp, spec)
            for bp in blueprints
            for spec in self._blueprint_specs.get(bp, self._blueprint_specs.get(_short(bp), []))
        ]
        for bp, spec in blueprint_specs:
            specs.append(
                compile_spec(
                    spec, settings, default_key=self._key, scope=spec.scope or bp, name_base=bp
                )
            )
        view_specs = self._view_specs_for(view)
        for spec in view_specs:
            specs.append(
                compile_spec(
                    spec,
                    settings,
                    default_key=self._key,
                    scope=spec.scope or endpoint,
                    name_base=endpoint,
                )
            )
        if not view_specs and not blueprint_specs:
            for spec in state.default_specs:
                specs.append(
                    compile_spec(
                        spec, settings, default_key=self._key, scope=endpoint, name_base=endpoint
                    )
                )
        return Plan(tuple(s for s in specs if s is not None))

    # -- request hooks -----------------------------------------------------------------------

    def _before_request(self) -> None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        state: AppState = app.extensions[STATE_KEY]
        settings = state.settings
        if not settings.enabled:
            return
        endpoint = request.endpoint
        if request.method == "OPTIONS" and not settings.count_options:
            return
        if endpoint == "static" and not settings.count_static:
            return
        plan = state.plans.get(endpoint)
        if plan.exempt or not plan.specs:
            return
        if any(request_filter() for request_filter in self._request_filters):
            state.metrics.send((m.BYPASSED,))
            return
        pending, checks, subjects = _collect_checks(plan, settings, request.method)
        if not checks:
            return
        if _whitelisted(settings, pending):
            state.metrics.send((m.BYPASSED,))
            return
        fail_mode = max((p.compiled.fail_mode for p in pending), key=lambda f: f.strictness)
        started = time.perf_counter()
        result = _evaluate(app, state, checks, subjects, fail_mode)
        check_ms = (time.perf_counter() - started) * 1000
        if result is None:
            return
        if result.allowed_by_list:
            state.metrics.send((m.BYPASSED,), check_ms)
            return
        if result.blocked_subject is not None:
            _refuse_blocked(app, state, subjects[result.blocked_subject], result, check_ms)
        _settle(app, state, pending, result, check_ms)

    def _after_request(self, response: Response) -> Response:
        reported: tuple[Reported, int] | None = g.get("_quota")
        if reported is None:
            return response
        state: AppState = current_app.extensions[STATE_KEY]
        if state.settings.headers_enabled:
            report, now_us = reported
            for header, value in rate_limit_headers(
                report, now_us, state.settings.headers_style, state.settings.reset_format
            ):
                response.headers[header] = value
        return response


# -- the hot path, as plain functions ------------------------------------------------------


def _collect_checks(
    plan: Plan, settings: Settings, method: str
) -> tuple[list[_Pending], list[Check], list[Subject]]:
    """Identities, limits and costs of this request, as checks for one storage call, and the
    identities as subjects whose allow-list entries, blocks and refusals the same call sees."""
    identities: dict[KeyFunc, str | None] = {}
    subject_index: dict[str, int] = {}
    subjects: list[Subject] = []
    pending: list[_Pending] = []
    checks: list[Check] = []
    for compiled in plan.specs:
        spec = compiled.spec
        if spec.methods is not None and method not in spec.methods:
            continue
        if spec.exempt_when is not None and spec.exempt_when():
            continue
        key_func = compiled.key
        if key_func in identities:
            identity = identities[key_func]
        else:
            raw = key_func()
            if raw is not None and not isinstance(raw, str):
                raise TypeError(f"key function {key_func!r} returned {raw!r}, not a str or None")
            identity = identities[key_func] = raw
        if identity is None:
            continue
        applied = compiled.applied()
        if not applied:
            continue
        cost = compiled.cost()
        shown = redact(identity)
        subject = subject_index.get(shown)
        if subject is None:
            subject = subject_index[shown] = len(subjects)
            prefix = settings.key_prefix
            subjects.append(
                Subject(
                    identity=shown,
                    allow_key=identity_key(prefix, ALLOW, shown),
                    block_key=identity_key(prefix, BLOCK, shown),
                    refusals_key=identity_key(prefix, REFUSALS, shown),
                )
            )
        for limit in applied:
            checks.append(
                Check(
                    key=limit_key(
                        settings.key_prefix,
                        limit.scope,
                        limit.strategy,
                        limit.limit.period_s,
                        shown,
                    ),
                    rule=limit.rule,
                    cost=cost,
                    dry_run=compiled.dry_run,
                    subject=subject,
                )
            )
            pending.append(_Pending(limit, identity, compiled))
    return pending, checks, subjects


def _whitelisted(settings: Settings, pending: Iterable[_Pending]) -> bool:
    """Whether ``QUOTA_WHITELIST`` names one of this request's identities or its network."""
    if settings.whitelist_identities:
        for item in pending:
            if (
                item.identity in settings.whitelist_identities
                or redact(item.identity) in settings.whitelist_identities
            ):
                return True
    if settings.whitelist_networks and request.remote_addr:
        try:
            address = ipaddress.ip_address(request.remote_addr)
        except ValueError:
            return False
        return any(address in network for network in settings.whitelist_networks)
    return False


def _evaluate(
    app: Flask,
    state: AppState,
    checks: Sequence[Check],
    subjects: Sequence[Subject],
    fail_mode: FailMode,
) -> BatchResult | None:
    """One storage call, or the fail mode when the storage is down. ``None``: let it pass."""
    guard = state.guard
    alert_window_us = state.settings.alert_window_s * 1_000_000
    if guard.should_try():
        try:
            result = state.storage.evaluate(checks, subjects, alert_window_us)
        except StorageError as error:
            guard.failed()
            log.warning(
                "rate-limit storage failed (%s); fail mode %r for %.1f s",
                error,
                fail_mode.value,
                guard.retry_interval_s,
            )
            state.metrics.send((m.STORAGE_ERROR,))
            if signals.storage_error.receivers:
                signals.storage_error.send(app, error=error)
        else:
            if guard.failing:
                log.warning("rate-limit storage recovered")
                guard.recovered()
            return result
    if fail_mode is FailMode.CLOSED:
        raise StorageUnavailable(
            retry_after=max(1, ceil_seconds(int(guard.seconds_to_retry() * 1_000_000))),
            problem=state.settings.error_format.value == "problem",
        )
    if fail_mode is FailMode.LOCAL:
        return state.local_storage.evaluate(checks, subjects, alert_window_us)
    return None


def _refuse_blocked(
    app: Flask, state: AppState, subject: Subject, result: BatchResult, check_ms: float
) -> NoReturn:
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
    g._quota = (report, result.now_us)
    state.metrics.send((m.DENIED, m.denied_metric(BLOCK_POLICY)), check_ms)
    log.info(
        "blocked identity %s refused on %s (request id %s)",
        subject.identity,
        request.endpoint,
        request.headers.get("X-Request-ID", "-"),
    )
    _notify_refusal(app, state, None, subject.identity, result.refusals)
    raise RateLimitExceeded(
        refusal_body(report, result.now_us, settings.error_format),
        retry_after=retry_after_seconds(block),
        policy=BLOCK_POLICY,
        identity=subject.identity,
        problem=settings.error_format.value == "problem",
    )


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


def _settle(
    app: Flask,
    state: AppState,
    pending: Sequence[_Pending],
    result: BatchResult,
    check_ms: float,
) -> None:
    """Turn the storage's answer into headers, signals, metrics, a delay or a 429."""
    counters: list[str] = []
    reports: list[Reported] = []
    delay_us = 0
    for item, decision in zip(pending, result.decisions, strict=False):
        applied = item.applied
        reports.append(Reported(decision, applied.name, applied.limit.period_s))
        if not decision.allowed and item.compiled.dry_run:
            counters.append(m.DRY_RUN_DENIED)
            log.info(
                "dry-run limit %s would refuse %s on %s",
                applied.name,
                redact(item.identity),
                request.endpoint,
            )
        elif decision.remaining < decision.limit * NEAR_LIMIT_SHARE:
            counters.append(m.NEAR_LIMIT)
        delay_us = max(delay_us, decision.delay_us)
    if result.refused_index is not None:
        refused = pending[result.refused_index]
        report = reports[result.refused_index]
        g._quota = (report, result.now_us)
        counters += [m.DENIED, m.denied_metric(refused.applied.name)]
        state.metrics.send(counters, check_ms)
        shown = redact(refused.identity)
        log.info(
            "rate limit %s refused %s on %s (request id %s)",
            refused.applied.name,
            shown,
            request.endpoint,
            request.headers.get("X-Request-ID", "-"),
        )
        _notify_refusal(app, state, refused.applied, shown, result.refusals)
        settings = state.settings
        raise RateLimitExceeded(
            refusal_body(report, result.now_us, settings.error_format),
            retry_after=retry_after_seconds(report.decision),
            policy=refused.applied.name,
            identity=shown,
            problem=settings.error_format.value == "problem",
        )
    counters.append(m.ALLOWED)
    state.metrics.send(counters, check_ms)
    if reports:
        g._quota = (most_constraining(reports), result.now_us)
    if delay_us > 0:
        delay_s = delay_us / 1_000_000
        if signals.request_delayed.receivers:
            delayed = max(
                (p for p, d in zip(pending, result.decisions, strict=False) if d.delay_us),
                key=lambda p: p.applied.rule.emission_us,
            )
            signals.request_delayed.send(
                app, limit=delayed.applied, key=redact(delayed.identity), delay=delay_s
            )
        state.sleep(delay_s)


# -- small helpers -------------------------------------------------------------------------


def _as_list(value: Sequence[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _parse_config_limits(config_key: str, texts: Iterable[str]) -> tuple[str, ...]:
    """Validate limit strings from config now, naming the key that holds a bad one."""
    texts = tuple(texts)
    for text in texts:
        try:
            declare(Kind.DEFAULT, text)
        except ConfigurationError as err:
            raise ConfigurationError(f"invalid {config_key}: {err}") from None
    return texts


def _blueprint_chain(endpoint: str) -> list[str]:
    """Blueprint names of an endpoint, innermost last (``"api.v1.items"`` -> ``api``,
    ``api.v1``), the way ``request.blueprints`` names them, outermost first."""
    parts = endpoint.split(".")[:-1]
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _blueprint_names(chain: Iterable[str]) -> set[str]:
    names = set(chain)
    names.update(_short(name) for name in chain)
    return names


def _short(blueprint_name: str) -> str:
    return blueprint_name.rsplit(".", 1)[-1]
