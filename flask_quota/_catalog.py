"""Which declared limit a stored counter counts for, outside any request (for the CLI).

A state's key holds the counter's scope, algorithm and period, never the count (an override
keeps the counts, see :mod:`flask_quota.keys`), so showing used and remaining needs the limit
from the app's declarations. A static limit is compiled once, and known. A callable limit is
known only per request, and the CLI has no request to call it in. But one made by
``quota.plan(by=...)`` can only answer a ``QUOTA_PLANS`` string: those strings are its
*candidates*, kept when they give the counter's scope, algorithm and period. Plans that differ
only in count (``1000/day``, ``100000/day``) leave several. The answers of any other callable
are unknowable here: its counters are shown by its name alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from flask import Flask

from ._plans import PlanLimit
from ._registry import AppliedLimit, CompiledSpec, parse_cached
from ._state import AppState
from .keys import ParsedKey

#: ``(scope, algorithm, period_s)``: what a state's key says of its limit.
CounterId = tuple[str, str, int]

#: The ``+2``, ``+3``... that later parts of one limit string with the same period add to the
#: scope (see ``CompiledSpec.resolve``).
_PART_SUFFIX: Final = re.compile(r"\+[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class CounterLimits:
    """The limits a counter may be under: one when known, several when only the request can
    tell (a plan's), none when the callable is opaque here."""

    candidates: tuple[AppliedLimit, ...]
    #: The name shown when the candidates are not one limit: the limit's ``name``, or
    #: ``<base>:<dynamic>`` for an unnamed callable (as ``flask quota limits`` shows it).
    label: str


@dataclass(frozen=True, slots=True)
class Catalog:
    """An app's declared limits, by the counters they count in."""

    counters: Mapping[CounterId, CounterLimits]
    #: Labels of callable limits by scope, for their counters that no candidate explains (an
    #: opaque callable's, or a plan's whose string has since changed period).
    dynamic_scopes: Mapping[str, str]
    #: The counters of each limit name, every declaration sharing a counter included. A scope
    #: with algorithm ``""`` and period 0 stands for every counter of that scope: a callable's,
    #: whose algorithm and periods only a request knows.
    named: Mapping[str, frozenset[CounterId]]

    def lookup(self, parsed: ParsedKey) -> CounterLimits | None:
        """The limits of the counter under ``parsed``; ``None`` if no declaration has it."""
        found = self.counters.get((parsed.kind, parsed.algorithm, parsed.period_s))
        if found is not None:
            return found
        label = self.dynamic_scopes.get(_PART_SUFFIX.sub("", parsed.kind))
        return None if label is None else CounterLimits((), label)

    def counters_named(self, name: str) -> frozenset[CounterId]:
        """The counters of the limits called ``name``, for ``reset --limit``."""
        return self.named.get(name, frozenset())


def compiled_specs(app: Flask, state: AppState) -> Iterator[CompiledSpec]:
    """Every compiled limit of every route, and of requests matching none (global limits).

    Plans compile on first use, so this compiles them.
    """
    for endpoint in (*(rule.endpoint for rule in app.url_map.iter_rules()), None):
        yield from state.plans.get(endpoint).specs


def build_catalog(app: Flask, state: AppState) -> Catalog:
    """The catalog of ``app``'s limits as compiled now (live overrides included)."""
    static: dict[CounterId, AppliedLimit] = {}
    candidates: dict[CounterId, list[AppliedLimit]] = {}
    labels: dict[CounterId, str] = {}
    dynamic_scopes: dict[str, str] = {}
    named: dict[str, set[CounterId]] = {}
    for compiled in compiled_specs(app, state):
        if compiled.fixed is not None:
            for applied in compiled.fixed:
                # Limits sharing a counter (an explicit scope=) show the first one's numbers.
                static.setdefault(_counter_id(applied), applied)
                named.setdefault(applied.name, set()).add(_counter_id(applied))
            continue
        label = compiled.spec.name or f"{compiled.name_base}:<dynamic>"
        dynamic_scopes.setdefault(compiled.scope, label)
        # The label of an unnamed one is what list and limits show: reset takes it too.
        named.setdefault(label, set()).add((compiled.scope, "", 0))
        for applied in _plan_candidates(compiled, state.settings.plans):
            counter = _counter_id(applied)
            known = candidates.setdefault(counter, [])
            if applied not in known:
                known.append(applied)
            labels.setdefault(counter, label)
            named.setdefault(applied.name, set()).add(counter)
    counters = {c: CounterLimits(tuple(found), labels[c]) for c, found in candidates.items()}
    counters.update({c: CounterLimits((applied,), applied.name) for c, applied in static.items()})
    return Catalog(
        counters=counters,
        dynamic_scopes=dynamic_scopes,
        named={name: frozenset(found) for name, found in named.items()},
    )


def _counter_id(applied: AppliedLimit) -> CounterId:
    return applied.scope, applied.strategy.value, applied.limit.period_s


def _plan_candidates(
    compiled: CompiledSpec, plans: Mapping[str, str | None]
) -> Iterator[AppliedLimit]:
    """What ``compiled`` applies under each plan, if it is a plan (else nothing is known)."""
    if not made_by_plan(compiled.spec.source):
        return
    for text in plans.values():
        if text is not None:  # an unlimited plan has no counter
            yield from compiled.resolve(parse_cached(text))


def made_by_plan(source: object) -> bool:
    """Whether ``source`` is a callable limit made by :meth:`Quota.plan`."""
    return isinstance(source, PlanLimit)
