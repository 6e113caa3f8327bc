"""Rate-limit headers and the 429 body, computed from a Decision. No I/O, no Flask globals.

Times are integer microseconds until here, where they are rounded *up* to whole seconds: a
client that waits the advertised seconds is never refused for having come a fraction early.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._config import ErrorFormat, HeaderStyle, ResetFormat
from .algorithms import Decision

US: int = 1_000_000


def ceil_seconds(us: int) -> int:
    """Microseconds as whole seconds, rounded up."""
    return max(0, -(-us // US))


@lru_cache(maxsize=256)
def iso8601(epoch_s: int) -> str:
    """``2026-11-24T10:30:10Z``. Cached: the resets a process reports cluster on a few
    seconds (every client of a window shares its end), and formatting costs ~2 us."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


@dataclass(frozen=True, slots=True)
class Reported:
    """A decision with what headers need beside it: the limit's policy name and window."""

    decision: Decision
    policy: str
    window_s: int


def _sf_string(text: str) -> str:
    """An RFC 8941 sf-string: printable ASCII, ``"`` and ``\\`` escaped."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rate_limit_headers(
    report: Reported, now_us: int, style: HeaderStyle, reset_format: ResetFormat
) -> list[tuple[str, str]]:
    """The headers that describe ``report`` to the client."""
    decision = report.decision
    reset_s = ceil_seconds(decision.reset_after_us)
    headers: list[tuple[str, str]] = []
    if style in (HeaderStyle.X_RATELIMIT, HeaderStyle.BOTH):
        if reset_format is ResetFormat.DELTA:
            reset = str(reset_s)
        else:
            reset_at = ceil_seconds(now_us + decision.reset_after_us)
            reset = str(reset_at) if reset_format is ResetFormat.EPOCH else iso8601(reset_at)
        headers += [
            ("X-RateLimit-Limit", str(decision.limit)),
            ("X-RateLimit-Remaining", str(decision.remaining)),
            ("X-RateLimit-Reset", reset),
        ]
    if style in (HeaderStyle.IETF, HeaderStyle.BOTH):
        name = _sf_string(report.policy)
        headers += [
            ("RateLimit-Policy", f"{name};q={decision.limit};w={report.window_s}"),
            ("RateLimit", f"{name};r={decision.remaining};t={reset_s}"),
        ]
    return headers


def refusal_body(report: Reported, now_us: int, error_format: ErrorFormat) -> dict[str, Any]:
    """The JSON body of a 429: the contract's fields, plus RFC 9457 members for ``problem``."""
    decision = report.decision
    retry_s = max(1, ceil_seconds(decision.retry_after_us))
    reset_s = ceil_seconds(decision.reset_after_us)
    message = f"Rate limit exceeded ({report.policy}): try again in {retry_s} seconds."
    body: dict[str, Any] = {
        "error": "Too Many Requests",
        "message": message,
        "limit": decision.limit,
        "remaining": decision.remaining,
        "reset": reset_s,
        "resetAt": iso8601(ceil_seconds(now_us + decision.reset_after_us)),
        "retryAfter": retry_s,
        "policy": report.policy,
    }
    if error_format is ErrorFormat.PROBLEM:
        body = {
            "type": "about:blank",
            "title": "Too Many Requests",
            "status": 429,
            "detail": message,
            **body,
        }
    return body


def retry_after_seconds(decision: Decision) -> int:
    """``Retry-After``: whole seconds until the refused request would be admitted, at least 1."""
    return max(1, ceil_seconds(decision.retry_after_us))
