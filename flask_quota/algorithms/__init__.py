"""The six algorithms, each a pure ``decide(state, now_us, rule, cost) -> Outcome``.

Each has a Lua twin of the same name in ``lua/``; tests hold the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from . import fixed_window, gcra, leaky_bucket, sliding_log, sliding_window, token_bucket
from ._base import BUCKET_ALGORITHMS, Algorithm, Decision, Outcome, Rule

#: ``decide`` per algorithm. States differ per algorithm, hence ``Any`` here only: each
#: module's own signature is precise, and a storage never looks inside a state.
Decide = Callable[[Any, int, Rule, int], Outcome[Any]]

DECIDERS: Final[dict[Algorithm, Decide]] = {
    Algorithm.FIXED_WINDOW: fixed_window.decide,
    Algorithm.SLIDING_WINDOW: sliding_window.decide,
    Algorithm.SLIDING_LOG: sliding_log.decide,
    Algorithm.TOKEN_BUCKET: token_bucket.decide,
    Algorithm.LEAKY_BUCKET: leaky_bucket.decide,
    Algorithm.GCRA: gcra.decide,
}

__all__ = ["BUCKET_ALGORITHMS", "DECIDERS", "Algorithm", "Decide", "Decision", "Outcome", "Rule"]
