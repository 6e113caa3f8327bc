"""Signals flask-quota sends (blinker), for alerting, auditing and custom metrics.

Connect with ``rate_limit_exceeded.connect(receiver, app)``. When nobody listens, sending
costs a check of ``receivers`` and nothing more: arguments are built only for listeners.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A request was refused, or a dry-run limit would have refused it (the request goes on).
#: Sender: the app. ``limit``: the refusing limit (``.name``, ``.limit``, ``.strategy``,
#: ``.scope``, ``.dry_run``), ``None`` when an operator's block refused it; ``key``: the
#: identity (API keys hashed); ``request``: the request.
rate_limit_exceeded = _signals.signal("rate-limit-exceeded")

#: A leaky_bucket request waits its turn. Sender: the app. ``limit``, ``key`` as above;
#: ``delay``: seconds (float) the request sleeps before the view runs.
request_delayed = _signals.signal("request-delayed")

#: The storage could not be reached; the fail mode applies. Sender: the app. ``error``: the
#: :class:`~flask_quota.StorageError`. Sent once per ``QUOTA_RETRY_INTERVAL``, not per request.
storage_error = _signals.signal("storage-error")

#: An identity's refusals reached ``QUOTA_ALERT_THRESHOLD`` within ``QUOTA_ALERT_WINDOW``.
#: Sender: the app. ``key``: the identity; ``count``: refusals; ``window``: seconds.
#: Sent once per identity per window.
repeat_offender = _signals.signal("repeat-offender")
