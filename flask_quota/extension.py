"""The Flask extension: declarations, per-app setup and the request hooks.

The request pipeline itself lives in :mod:`flask_quota._request`; the per-app state in
:mod:`flask_quota._state`. One ``Quota`` keeps only what was declared on it, so it can serve
several apps.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from flask import Blueprint, Flask, Request, Response, current_app, g, has_app_context, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as WSGIResponse

from . import live
from ._config import KeyFunc, Settings, load_settings
from ._plans import PlanLimit
from ._registry import (
    CompiledConcurrency,
    CompiledSpec,
    ConcurrencySpec,
    CostSource,
    Kind,
    LimitSource,
    LimitSpec,
    Plan,
    PlanCache,
    compile_spec,
    declare,
    declare_concurrency,
)
from ._request import check_request, refresh_stale_live_config, release_slots
from ._state import STATE_KEY, AppState, StorageGuard, app_state
from .errors import ConfigurationError
from .identity import GLOBAL, by_ip
from .metrics import metrics_for
from .responses import Reported, rate_limit_headers
from .storage import MemoryStorage, storage_from_uri

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

__all__ = ["AppState", "Quota"]


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
        default_limits: Sequence[LimitSource] = (),
        global_limits: Sequence[LimitSource] = (),
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
        for label, limits in (("default_limits", default_limits), ("global_limits", global_limits)):
            for text in _as_list(label, limits):
                declare(Kind.DEFAULT, text)
        self._overrides = overrides
        self._key = key
        self._view_specs: dict[Callable[..., Any], list[LimitSpec]] = {}
        self._blueprint_specs: dict[str, list[LimitSpec]] = {}
        self._exempt_views: set[Callable[..., Any]] = set()
        self._exempt_blueprints: set[str] = set()
        self._request_filters: list[Callable[[], bool]] = []
        self._concurrency_specs: dict[Callable[..., Any], list[ConcurrencySpec]] = {}
        #: The states of the apps this serves, weakly: a declaration made after an app has
        #: compiled plans (a view added later, a test declaring per test) clears them.
        self._states: weakref.WeakSet[AppState] = weakref.WeakSet()
        #: The apps this serves, weakly: the one an override call outside an app context is
        #: for, when there is just one.
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    # -- setup -------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read the app's ``QUOTA_*`` config, connect the storage and register the hooks.

        :raises ConfigurationError: for a bad option or limit string, naming it.
        :raises RuntimeError: if flask-quota is already set up on ``app``.
        """
        if STATE_KEY in app.extensions:
            # Hooks registered twice would charge every request twice.
            raise RuntimeError(
                f"flask-quota is already initialised on app {app.name!r}: call Quota(app) or "
                "init_app(app) once per app"
            )
        settings = load_settings(app.config, self._overrides)
        state = AppState(
            settings=settings,
            storage=storage_from_uri(settings.storage_uri, timeout_s=settings.storage_timeout_s),
            local_storage=MemoryStorage(),
            metrics=metrics_for(settings.statsd_host, settings.statsd_port, settings.statsd_prefix),
            guard=StorageGuard(settings.retry_interval_s),
            plans=PlanCache(lambda endpoint: self._build_plan(app, endpoint)),
            config_key=live.config_key(settings.key_prefix),
        )
        state.global_specs = tuple(
            declare(Kind.GLOBAL, text, key=GLOBAL)
            for text in _parse_config_limits("QUOTA_GLOBAL_LIMITS", settings.global_limits)
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
        self._states.add(state)
        self._apps.add(app)
        _check_after_hooks(app, self._check)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)
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
            self._declarations_changed()
            return view

        return decorate

    def concurrent(
        self,
        limit: int,
        *,
        key: KeyFunc | None = None,
        lease: float = 60.0,
        name: str | None = None,
        fail_mode: str | None = None,
    ) -> Callable[[F], F]:
        """At most ``limit`` requests of one identity in flight across all processes.

        The slot is taken in the same storage call as the view's rate limits and given back
        in ``teardown_request``, even when the view raises. A worker that dies holding one
        loses it after ``lease`` seconds, so set ``lease`` above the longest request.

        :raises ConfigurationError: for an invalid argument, naming it.
        """
        spec = declare_concurrency(limit, key=key, lease=lease, name=name, fail_mode=fail_mode)

        def decorate(view: F) -> F:
            self._concurrency_specs.setdefault(view, []).insert(0, spec)
            self._declarations_changed()
            return view

        return decorate

    def limit_blueprint(self, blueprint: Blueprint, limit: LimitSource, **options: Any) -> None:
        """Limit every view of ``blueprint`` together: one counter per identity for all of its
        views (like ``scope=blueprint.name``). Takes the options of :meth:`limit`."""
        declared = self._blueprint_specs.setdefault(blueprint.name, [])
        options.setdefault("scope", _default_scope(blueprint.name, len(declared)))
        declared.append(declare(Kind.BLUEPRINT, limit, **options))
        self._declarations_changed()

    def exempt(self, view: F) -> F:
        """No limits at all on this view (global ones included)."""
        self._exempt_views.add(view)
        self._declarations_changed()
        return view

    def exempt_blueprint(self, blueprint: Blueprint) -> None:
        """No limits at all on any view of ``blueprint``."""
        self._exempt_blueprints.add(blueprint.name)
        self._declarations_changed()

    def request_filter(self, function: Callable[[], bool]) -> Callable[[], bool]:
        """Register ``function``; when it returns ``True`` the request bypasses every limit."""
        if not callable(function):
            raise ConfigurationError(f"invalid request_filter {function!r}: expected a callable")
        self._request_filters.append(function)
        return function

    def plan(self, *, by: Callable[[], str | None]) -> Callable[[], str | None]:
        """A dynamic limit from ``QUOTA_PLANS``: ``by()`` names the request's plan.

        A plan mapped to ``None`` (or ``by()`` returning ``None``) is unlimited; a plan name
        missing from ``QUOTA_PLANS`` is a configuration error.
        """
        if not callable(by):
            raise ConfigurationError(f"invalid plan by={by!r}: expected a callable")
        return PlanLimit(by)

    # -- live configuration ------------------------------------------------------------------

    def set_override(
        self, name: str, limit: str, ttl: float | None = None, *, app: Flask | None = None
    ) -> None:
        """Replace the limit named ``name`` with ``limit`` in every process, for ``ttl``
        seconds or until :meth:`clear_override`. Processes obey from their next request.

        :raises ConfigurationError: for a bad limit string or ttl.
        """
        from . import admin

        admin.set_override(self._app_for(app), name, limit, ttl)

    def clear_override(self, name: str, *, app: Flask | None = None) -> bool:
        """Drop the override of ``name``; ``False`` if there was none."""
        from . import admin

        return admin.clear_override(self._app_for(app), name)

    def overrides(self, *, app: Flask | None = None) -> dict[str, dict[str, Any]]:
        """The overrides in force: name -> ``{"limit": ..., "expires_in": seconds or None}``."""
        from . import admin

        return {
            o.name: {"limit": o.limit, "expires_in": o.expires_in_s}
            for o in admin.list_overrides(self._app_for(app))
        }

    def _app_for(self, app: Flask | None) -> Flask:
        """``app``, else the current app, else the one app this serves (a script or a test
        that set up one app and calls the override methods outside an app context)."""
        if app is not None:
            return app
        if has_app_context():
            return _current_app()
        apps = list(self._apps)
        if len(apps) == 1:
            return apps[0]
        raise RuntimeError(
            f"this Quota serves {len(apps)} apps and no app context is active: pass app= "
            "or call it inside app.app_context()"
        )

    # -- compilation -------------------------------------------------------------------------

    def _declarations_changed(self) -> None:
        for state in list(self._states):
            state.plans.clear()

    def _view_specs_for(self, view: Callable[..., Any] | None) -> list[LimitSpec]:
        specs = list(_declared_on(self._view_specs, view))
        for handler, served in _handlers(view):
            # A limit on a handler (MethodView.post) counts only the methods it serves.
            for spec in _declared_on(self._view_specs, handler):
                only = served if spec.methods is None else spec.methods & served
                specs.append(replace(spec, methods=only))
        return specs

    def _exempt_methods(self, view: Callable[..., Any] | None) -> frozenset[str] | None:
        """``None``: the view is not exempt; else the methods it is exempt for (all: empty)."""
        if any(v in self._exempt_views for v in _unwrapped(view)):
            return frozenset()
        methods = frozenset().union(
            *(
                served
                for handler, served in _handlers(view)
                if any(h in self._exempt_views for h in _unwrapped(handler))
            )
        )
        return methods or None

    def _build_plan(self, app: Flask, endpoint: str | None) -> Plan:
        state = app_state(app)
        settings = state.settings
        overrides = state.active_overrides
        specs: list[CompiledSpec | None] = [
            compile_spec(
                spec,
                settings,
                default_key=GLOBAL,
                scope=_default_scope("global", index),
                name_base="global",
                overrides=overrides,
            )
            for index, spec in enumerate(state.global_specs)
        ]
        if endpoint is None:
            return Plan(tuple(s for s in specs if s is not None))
        view = app.view_functions.get(endpoint)
        blueprints = _blueprint_chain(endpoint)
        declared = {bp: _declared_name(app, bp) for bp in blueprints}
        exempt_methods = self._exempt_methods(view)
        if exempt_methods == frozenset() or any(
            bp in self._exempt_blueprints
            for bp in _blueprint_names(blueprints) | set(declared.values())
        ):
            return Plan((), exempt=True)
        blueprint_specs = [
            (bp, spec)
            for bp in blueprints
            for spec in self._blueprint_specs.get(bp, self._blueprint_specs.get(declared[bp], []))
        ]
        for bp, spec in blueprint_specs:
            specs.append(
                compile_spec(
                    spec,
                    settings,
                    default_key=self._key,
                    scope=spec.scope or bp,
                    name_base=bp,
                    overrides=overrides,
                )
            )
        view_specs = self._view_specs_for(view)
        for index, spec in enumerate(view_specs):
            specs.append(
                compile_spec(
                    spec,
                    settings,
                    default_key=self._key,
                    scope=spec.scope or _default_scope(endpoint, index),
                    name_base=endpoint,
                    overrides=overrides,
                )
            )
        if not view_specs and not blueprint_specs:
            for index, spec in enumerate(state.default_specs):
                specs.append(
                    compile_spec(
                        spec,
                        settings,
                        default_key=self._key,
                        scope=_default_scope(endpoint, index),
                        name_base=endpoint,
                        overrides=overrides,
                    )
                )
        declared_slots: list[tuple[ConcurrencySpec, frozenset[str] | None]] = [
            (c, None) for c in _declared_on(self._concurrency_specs, view)
        ]
        declared_slots += [
            (c, served)
            for handler, served in _handlers(view)
            for c in _declared_on(self._concurrency_specs, handler)
        ]
        concurrency = tuple(
            CompiledConcurrency(
                capacity=c.capacity,
                key=c.key or self._key,
                lease_us=int(c.lease_s * 1_000_000),
                name=c.name or f"{endpoint}:concurrent:{c.capacity}",
                scope=c.name or endpoint,
                fail_mode=c.fail_mode or settings.fail_mode,
                methods=served,
            )
            for c, served in declared_slots
        )
        return Plan(
            tuple(s for s in specs if s is not None),
            concurrency=concurrency,
            exempt_methods=exempt_methods or frozenset(),
        )

    # -- request hooks -----------------------------------------------------------------------

    def _check(self) -> WSGIResponse | None:
        app = _current_app()
        state: AppState = app.extensions[STATE_KEY]
        settings = state.settings
        if not settings.enabled:
            return None
        if settings.adaptive is not None:
            state.in_flight.enter()
            g._quota_in_flight = True
        # The request itself, once: each read through Flask's proxy costs a context lookup.
        current: Request = request._get_current_object()  # type: ignore[attr-defined]
        method = current.method
        if method == "OPTIONS" and not settings.count_options:
            return None
        endpoint = current.endpoint
        if endpoint == "static" and not settings.count_static:
            return None
        first = state.plans.get(endpoint)
        if first.exempt or method in first.exempt_methods:
            return None  # exemption does not depend on live config: no refresh for health checks
        refresh_stale_live_config(app, state)
        plan = state.plans.get(endpoint)  # after the refresh, which may have recompiled it
        if not (plan.specs or plan.concurrency):
            return None
        return check_request(app, state, plan, self._request_filters, method)

    def _after_request(self, response: Response) -> Response:
        # What the check left for the headers, with the settings (no app lookup here).
        reported: tuple[Reported, int, Settings] | None = g.get("_quota")
        if reported is None:
            return response
        report, now_us, settings = reported
        if settings.headers_enabled:
            headers = response.headers
            for header, value in rate_limit_headers(
                report, now_us, settings.headers_style, settings.reset_format
            ):
                headers[header] = value
        return response

    def _teardown_request(self, _error: BaseException | None) -> None:
        context_g = g._get_current_object()
        holds_slots = "_quota_slots" in context_g
        in_flight = context_g.pop("_quota_in_flight", False)
        if not (holds_slots or in_flight):
            return  # the common case: nothing to give back, no app lookup
        state: AppState | None = current_app.extensions.get(STATE_KEY)
        if state is None:
            return
        if holds_slots:
            release_slots(state)
        if in_flight:
            state.in_flight.leave()


def _unwrapped(view: Callable[..., Any] | None) -> Iterator[Callable[..., Any]]:
    """``view`` and what it wraps (``functools.wraps``' ``__wrapped__`` chain): a declaration
    made under another decorator still finds the registered function."""
    while view is not None:
        yield view
        view = getattr(view, "__wrapped__", None)


def _declared_on(
    table: Mapping[Callable[..., Any], list[T]], view: Callable[..., Any] | None
) -> list[T]:
    """What ``table`` records for ``view`` or the first function it wraps that has an entry."""
    for function in _unwrapped(view):
        found = table.get(function)
        if found is not None:
            return found
    return []


def _handlers(
    view: Callable[..., Any] | None,
) -> Iterator[tuple[Callable[..., Any], frozenset[str]]]:
    """A class-based view's handlers (``MethodView.get``) with the methods each serves; Flask
    serves HEAD with ``get()`` unless the class has ``head()``."""
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return
    for method in sorted(getattr(view_class, "methods", None) or ()):
        handler = getattr(view_class, method.lower(), None)
        if handler is None:
            continue
        served = {method}
        if method == "GET" and getattr(view_class, "head", None) is None:
            served.add("HEAD")
        yield handler, frozenset(served)


def _check_after_hooks(app: Flask, check: Callable[[], WSGIResponse | None]) -> None:
    """Make ``check`` the last step of ``app.preprocess_request``: after every
    ``before_request`` function of the app and of the request's blueprints, whatever the
    order they were registered in, so key functions see what those set (``g.user``,
    ``g.tenant_id``), as they would in a view's decorator. A hook that answers the request
    itself (a response, an abort) ends it before the check: that request is not counted.
    """
    preprocess = app.preprocess_request

    def preprocess_then_check() -> ResponseReturnValue | None:
        answer = preprocess()
        return check() if answer is None else answer

    # Flask has no hook after the before_request functions: the app's own method is wrapped,
    # on this app only (a subclass's override is what gets wrapped).
    app.preprocess_request = preprocess_then_check  # type: ignore[method-assign]


def _current_app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


# -- small helpers -------------------------------------------------------------------------


def _as_list(label: str, value: object) -> tuple[LimitSource, ...]:
    """One limit string, or a list of limit strings and callables."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    raise ConfigurationError(
        f"invalid {label} {value!r}: expected a limit string or a list of limit strings"
    )


def _parse_config_limits(config_key: str, texts: Iterable[LimitSource]) -> tuple[LimitSource, ...]:
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


def _declared_name(app: Flask, registered: str) -> str:
    """The name ``Blueprint(name, ...)`` was given, which declarations are filed under, for the
    name it is registered under (nested: ``"api.v1"``; renamed: ``register_blueprint(bp,
    name="api_v2")``)."""
    blueprint = app.blueprints.get(registered)
    return blueprint.name if blueprint is not None else _short(registered)


def _short(blueprint_name: str) -> str:
    return blueprint_name.rsplit(".", 1)[-1]


def _default_scope(base: str, index: int) -> str:
    """The counter of the ``index``-th limit declared on ``base`` with no ``scope``.

    Stacked limits never share a counter unless told to: with one period and algorithm they
    would share a key, and a state written under one rule (rate, cost, methods, dry run) would
    be read under another. The first keeps ``base``, so a lone limit's key never moves.
    """
    return base if index == 0 else f"{base}~{index + 1}"
