"""What ``quota.plan(by=...)`` returns: a callable limit read from ``QUOTA_PLANS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._state import current_state
from .errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class PlanLimit:
    """The limit string of the plan ``by()`` names for the current request (``None``:
    unlimited). A class rather than a closure so the CLI can tell a plan's counters, whose
    candidate limits are the ``QUOTA_PLANS`` strings, from any other callable's."""

    by: Callable[[], str | None]

    def __call__(self) -> str | None:
        plan_name = self.by()
        if plan_name is None:
            return None
        plans = current_state().settings.plans
        if plan_name not in plans:
            raise ConfigurationError(
                f"unknown plan {plan_name!r}: QUOTA_PLANS has {sorted(plans)!r}"
            )
        return plans[plan_name]
