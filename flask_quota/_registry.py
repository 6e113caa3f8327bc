"""Declared limits, and their compilation per app and endpoint.

Declarations (decorators, blueprint limits, default and global limits) are recorded once, with
static limit strings parsed on the spot so a bad one fails at start-up. Per app, each endpoint's
declarations compile on first use into a :class:`Plan`: the ordered limits with their rules,
scopes and names resolved, so a request only looks the plan up.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Final

from ._config import FailMode, KeyFunc, Settings
from .algorithms import Algorithm, Rule
from .algorithms._base import scale_rule
from .errors import ConfigurationError
from .keys import limit_part
from .limits import MAX_COUNT, MAX_PERIOD_S, Limit, parse_limits

LimitSource = str | Callable[[], "str | None"]
CostSource = int | Callable[[], int]

#: Marks "no replacement" in a lookup whose values may be ``None`` (unlimited).
_KEEP: Final = object()
#: Above this many distinct strings from one dynamic limit, its cache starts over.
_DYNAMIC_CACHE_SIZE = 256


class Kind(enum.Enum):
    """Where a limit was declared; also the evaluation order."""

    GLOBAL = 0
    BLUEPRINT = 1
    DEFAULT = 2
    VIEW = 3


@lru_cache(maxsize=1024)
def parse_cached(text: str) -> tuple[Limit, ...]:
    """:func:`parse_limits`, cached: dynamic limits repeat the same few strings."""
    return parse_limits(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitSpec:
    """One declared limit, as the user wrote it."""

    kind: Kind
    source: LimitSource
    #: Parsed at declaration when ``source`` is a string.
    static: tuple[Limit, ...] | None
    key: KeyFunc | None = None
    strategy: Algorithm | None = None
    cost: CostSource = 1
    burst: int | None = None
    scope: str | None = None
    methods: frozenset[str] | None = None
    exempt_when: Callable[[], bool] | None = None
    name: str | None = None
    dry_run: bool = False
    fail_mode: FailMode | None = None


def declare(
    kind: Kind,
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
) -> LimitSpec:
    """Validate a declaration now (start-up), so nothing about it can fail per request.

    :raises ConfigurationError: naming the bad argument and value.
    """
    if isinstance(limit, str):
        static: tuple[Limit, ...] | None = parse_limits(limit)
    elif callable(limit):
        static = None
    else:
        raise ConfigurationError(f"invalid limit {limit!r}: expected a string or a callable")
    if key is not None and not callable(key):
        raise ConfigurationError(f"invalid key {key!r}: expected a callable returning a string")
    if not (callable(cost) or _is_int_in(cost, 0, MAX_COUNT)):
        raise ConfigurationError(
            f"invalid cost {cost!r}: expected an int from 0 to {MAX_COUNT} or a callable"
        )
    if burst is not None and not _is_int_in(burst, 1, MAX_COUNT):
        raise ConfigurationError(f"invalid burst {burst!r}: expected an int from 1 to {MAX_COUNT}")
    for label, value in (("scope", scope), ("name", name)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"invalid {label} {value!r}: expected a non-empty string")
    if exempt_when is not None and not callable(exempt_when):
        raise ConfigurationError(f"invalid exempt_when {exempt_when!r}: expected a callable")
    if methods is not None and not _is_method_list(methods):
        raise ConfigurationError(
            f"invalid methods {methods!r}: expected a non-empty list of HTTP methods"
        )
    if not isinstance(dry_run, bool):
        raise ConfigurationError(f"invalid dry_run {dry_run!r}: expected True or False")
    try:
        mode = _fail_mode(fail_mode)
    except ValueError:
        raise ConfigurationError(
            f"invalid fail_mode {fail_mode!r}: expected 'open', 'closed' or 'local'"
        ) from None
    return LimitSpec(
        kind=kind,
        source=limit,
        static=static,
        key=key,
        strategy=Algorithm.parse(strategy) if strategy is not None else None,
        cost=cost,
        burst=burst,
        scope=scope,
        methods=_normalise_methods(methods) if methods is not None else None,
        exempt_when=exempt_when,
        name=name,
        dry_run=dry_run,
        fail_mode=mode,
    )


def _fail_mode(value: str | None) -> FailMode | None:
    """A limit's fail mode, in any case, as ``QUOTA_FAIL_MODE`` takes it."""
    if value is None:
        return None
    return FailMode(value.lower() if isinstance(value, str) else value)


def _is_int_in(value: object, low: int, high: int) -> bool:
    """An int (not a bool) from ``low`` to ``high``: the bounds keep it exact in the Lua
    script's doubles and in its 64-bit wire format."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_method_list(methods: object) -> bool:
    """A non-empty collection of method names; a string is one name misplaced, not a list."""
    return (
        isinstance(methods, list | tuple | set | frozenset)
        and len(methods) > 0
        and all(isinstance(m, str) and m for m in methods)
    )


def _normalise_methods(methods: Sequence[str]) -> frozenset[str]:
    """Upper-cased; ``GET`` brings ``HEAD``, which Flask answers by running the GET view."""
    names = frozenset(m.upper() for m in methods)
    return (names | {"HEAD"}) if "GET" in names else names


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedLimit:
    """A declared limit resolved for one app and endpoint: what headers, signals and the CLI
    name. ``scope`` names the counter; ``name`` labels it (``policy`` in responses)."""

    name: str
    limit: Limit
    strategy: Algorithm
    scope: str
    rule: Rule
    #: Evaluated and reported, never refusing: lets signal receivers tell a dry run's "would
    #: refuse" from a refusal.
    dry_run: bool = False
    #: The part of this limit's keys that is the same for every identity (see keys.py).
    key_part: str = field(init=False, compare=False, repr=False)
    _scaled: dict[float, Rule] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        key_part = limit_part(self.scope, self.strategy, self.limit.period_s)
        object.__setattr__(self, "key_part", key_part)  # frozen: set once, here

    def rule_for(self, factor: float) -> Rule:
        """The rule under an emergency or adaptive ``factor`` (already quantized), cached."""
        if factor >= 1.0:
            return self.rule
        rule = self._scaled.get(factor)
        if rule is None:
            if len(self._scaled) > 128:
                self._scaled.clear()
            rule = self._scaled[factor] = scale_rule(self.rule, factor)
        return rule


@dataclass(slots=True, kw_only=True)
class CompiledSpec:
    """A :class:`LimitSpec` with the app's defaults filled in."""

    spec: LimitSpec
    key: KeyFunc
    strategy: Algorithm
    scope: str
    #: Label when ``spec.name`` is unset: ``<base>:<limit>``.
    name_base: str
    dry_run: bool
    fail_mode: FailMode
    max_delay_us: int
    #: Static limits, resolved once. ``None`` for dynamic ones (see :meth:`applied`).
    fixed: tuple[AppliedLimit, ...] | None
    #: Replacements by limit name when this was compiled: live overrides over ``QUOTA_LIMITS``
    #: (``None``: unlimited).
    overrides: Mapping[str, str | None] = field(default_factory=dict)
    _dynamic: dict[str, tuple[AppliedLimit, ...]] = field(default_factory=dict)

    def resolve(self, limits: tuple[Limit, ...]) -> tuple[AppliedLimit, ...]:
        """Rules and names for ``limits`` under this spec.

        An unnamed spec's limit is named ``<base>:<limit>``; an override or ``QUOTA_LIMITS``
        entry of that name replaces that one limit (``None``: drops it) and keeps its name, so
        ``flask quota unset`` finds it again.
        """
        applied: list[AppliedLimit] = []
        periods: dict[int, int] = {}
        for limit in limits:
            name = self.spec.name or f"{self.name_base}:{limit}"
            replaced = self.overrides.get(name, _KEEP) if self.spec.name is None else _KEEP
            if replaced is None:
                continue
            for actual in (limit,) if replaced is _KEEP else parse_cached(str(replaced)):
                # Two parts of one string with the same period ("2/minute;5/minute") would
                # share a key: the second and later get counters of their own.
                seen = periods[actual.period_s] = periods.get(actual.period_s, 0) + 1
                applied.append(
                    AppliedLimit(
                        name=name,
                        limit=actual,
                        strategy=self.strategy,
                        scope=self.scope if seen == 1 else f"{self.scope}+{seen}",
                        rule=Rule.build(
                            self.strategy,
                            actual,
                            burst=self.spec.burst,
                            max_delay_us=self.max_delay_us,
                        ),
                        dry_run=self.dry_run,
                    )
                )
        return tuple(applied)

    def applied(self) -> tuple[AppliedLimit, ...]:
        """The limits that apply now: static ones, or the dynamic source's current answer.

        A dynamic source returning ``None`` means unlimited (an empty tuple).
        """
        if self.fixed is not None:
            return self.fixed
        assert callable(self.spec.source)
        text = self.spec.source()
        if text is None:
            return ()
        cached = self._dynamic.get(text)
        if cached is None:
            if len(self._dynamic) >= _DYNAMIC_CACHE_SIZE:
                self._dynamic.clear()
            cached = self._dynamic[text] = self.resolve(parse_cached(text))
        return cached

    def cost(self) -> int:
        """This request's cost."""
        cost = self.spec.cost
        if not callable(cost):
            return cost  # checked at declaration
        value = cost()
        if not _is_int_in(value, 0, MAX_COUNT):
            raise ConfigurationError(
                f"cost callable returned {value!r}: expected an int from 0 to {MAX_COUNT}"
            )
        return value


def compile_spec(
    spec: LimitSpec,
    settings: Settings,
    *,
    default_key: KeyFunc,
    scope: str,
    name_base: str,
    overrides: Mapping[str, str] | None = None,
) -> CompiledSpec | None:
    """``spec`` for an app; ``None`` when ``QUOTA_LIMITS`` names it unlimited.

    Precedence of a named spec's limit: a live override, then ``QUOTA_LIMITS``, then the code,
    so operators retune limits without touching views.
    """
    overrides = overrides or {}
    source = spec.source
    static = spec.static
    if spec.name is not None and spec.name in overrides:
        source = overrides[spec.name]
        static = parse_cached(source)
    elif spec.name is not None and spec.name in settings.named_limits:
        named = settings.named_limits[spec.name]
        if named is None:
            return None
        try:
            static = parse_limits(named)
        except ConfigurationError as err:
            raise ConfigurationError(f"invalid QUOTA_LIMITS[{spec.name!r}]: {err}") from None
        source = named
    strategy = spec.strategy or settings.strategy
    compiled = CompiledSpec(
        spec=spec if source is spec.source else replace(spec, source=source, static=static),
        key=spec.key or default_key,
        strategy=strategy,
        scope=scope,
        name_base=name_base,
        dry_run=spec.dry_run or settings.dry_run,
        fail_mode=spec.fail_mode or settings.fail_mode,
        max_delay_us=int(settings.max_delay_s * 1_000_000),
        fixed=None,
        overrides={**settings.named_limits, **overrides},
    )
    if static is not None:
        compiled.fixed = compiled.resolve(static)
    return compiled


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencySpec:
    """``@quota.concurrent(n)``: at most ``capacity`` requests of one identity in flight."""

    capacity: int
    key: KeyFunc | None = None
    lease_s: float = 60.0
    name: str | None = None
    fail_mode: FailMode | None = None


def declare_concurrency(
    capacity: int,
    *,
    key: KeyFunc | None = None,
    lease: float = 60.0,
    name: str | None = None,
    fail_mode: str | None = None,
) -> ConcurrencySpec:
    """Validate a concurrency limit at declaration."""
    if not _is_int_in(capacity, 1, MAX_COUNT):
        raise ConfigurationError(
            f"invalid concurrency {capacity!r}: expected an int from 1 to {MAX_COUNT}"
        )
    if key is not None and not callable(key):
        raise ConfigurationError(f"invalid key {key!r}: expected a callable returning a string")
    if (
        isinstance(lease, bool)
        or not isinstance(lease, int | float)
        or not 0 < lease <= MAX_PERIOD_S
    ):
        raise ConfigurationError(
            f"invalid lease {lease!r}: expected seconds > 0, at most {MAX_PERIOD_S}"
        )
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(f"invalid name {name!r}: expected a non-empty string")
    try:
        mode = _fail_mode(fail_mode)
    except ValueError:
        raise ConfigurationError(
            f"invalid fail_mode {fail_mode!r}: expected 'open', 'closed' or 'local'"
        ) from None
    return ConcurrencySpec(capacity=capacity, key=key, lease_s=lease, name=name, fail_mode=mode)


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledConcurrency:
    """A :class:`ConcurrencySpec` for one app and endpoint."""

    capacity: int
    key: KeyFunc
    lease_us: int
    name: str
    scope: str
    fail_mode: FailMode
    #: Declared on a class-based view's handler: the methods it serves (else all).
    methods: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one endpoint's requests are checked against, in order."""

    specs: tuple[CompiledSpec, ...]
    exempt: bool = False
    concurrency: tuple[CompiledConcurrency, ...] = ()
    #: Methods exempt by ``@quota.exempt`` on a class-based view's handler.
    exempt_methods: frozenset[str] = frozenset()


class PlanCache:
    """Plans per endpoint, compiled on first use; safe to race (compiling is idempotent)."""

    def __init__(self, build: Callable[[str | None], Plan]) -> None:
        self._build = build
        self._plans: dict[str | None, Plan] = {}
        self._lock = threading.Lock()

    def get(self, endpoint: str | None) -> Plan:
        plan = self._plans.get(endpoint)
        if plan is None:
            with self._lock:
                plan = self._plans.get(endpoint)
                if plan is None:
                    plan = self._plans[endpoint] = self._build(endpoint)
        return plan

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
