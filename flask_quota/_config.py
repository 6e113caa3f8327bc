"""Every ``QUOTA_*`` option: its default, how it is validated, and the frozen Settings.

Read once per app in ``init_app`` (constructor keywords over ``app.config`` over defaults),
never per request. Values may come from ``app.config.from_prefixed_env()`` (JSON-decoded, so
``FLASK_QUOTA_ENABLED=false`` works) or ``from_file``; a bad value fails at start-up naming the
key and the value.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .algorithms import Algorithm
from .errors import ConfigurationError
from .keys import redact
from .limits import MAX_COUNT, MAX_PERIOD_S, parse_limits

log = logging.getLogger("flask_quota")

KeyFunc = Callable[[], "str | None"]
#: A limit string, or a callable returning one (or ``None``) per request, as in ``limit()``.
LimitSource = str | Callable[[], "str | None"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FailMode(enum.StrEnum):
    """What a request gets while the storage is unreachable."""

    OPEN = "open"
    CLOSED = "closed"
    LOCAL = "local"

    @property
    def strictness(self) -> int:
        """Order for combining a request's limits: closed beats local beats open."""
        return {FailMode.OPEN: 0, FailMode.LOCAL: 1, FailMode.CLOSED: 2}[self]


class HeaderStyle(enum.StrEnum):
    X_RATELIMIT = "x-ratelimit"
    IETF = "ietf"
    BOTH = "both"


class ResetFormat(enum.StrEnum):
    DELTA = "delta"
    EPOCH = "epoch"
    ISO8601 = "iso8601"


class ErrorFormat(enum.StrEnum):
    JSON = "json"
    PROBLEM = "problem"


#: The longest QUOTA_STORAGE_TIMEOUT: far above any useful socket timeout, far below what the
#: socket layer can hold.
MAX_STORAGE_TIMEOUT_S: Final = 3600.0

#: Every option with its default. ``QUOTA_<NAME>``; the constructor keyword is ``<name>``.
DEFAULTS: Final[Mapping[str, Any]] = {
    "QUOTA_ENABLED": True,
    "QUOTA_STORAGE_URI": "memory://",
    "QUOTA_STORAGE_TIMEOUT": 0.1,
    "QUOTA_RETRY_INTERVAL": 5.0,
    "QUOTA_FAIL_MODE": "open",
    "QUOTA_STRATEGY": "sliding_window",
    "QUOTA_KEY_PREFIX": "quota",
    "QUOTA_DEFAULT_LIMITS": (),
    "QUOTA_GLOBAL_LIMITS": (),
    "QUOTA_DRY_RUN": False,
    "QUOTA_HEADERS_ENABLED": True,
    "QUOTA_HEADERS_STYLE": "x-ratelimit",
    "QUOTA_RESET_FORMAT": "delta",
    "QUOTA_ERROR_FORMAT": "json",
    "QUOTA_MAX_DELAY": 1.0,
    "QUOTA_IPV6_PREFIX": 64,
    "QUOTA_API_KEY_HEADER": "X-API-Key",
    "QUOTA_TENANT_HEADER": "X-Org-ID",
    "QUOTA_WHITELIST": (),
    "QUOTA_BLOCK_DURATION": 3600,
    "QUOTA_COUNT_STATIC": False,
    "QUOTA_COUNT_OPTIONS": False,
    "QUOTA_ALERT_THRESHOLD": 100,
    "QUOTA_ALERT_WINDOW": 300,
    "QUOTA_STATSD_HOST": None,
    "QUOTA_STATSD_PORT": 8125,
    "QUOTA_STATSD_PREFIX": "quota",
    "QUOTA_LIMITS": {},
    "QUOTA_PLANS": {},
    "QUOTA_ADAPTIVE": None,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """One app's options, validated. Limits stay strings here; the registry parses them."""

    enabled: bool
    storage_uri: str
    storage_timeout_s: float
    retry_interval_s: float
    fail_mode: FailMode
    strategy: Algorithm
    key_prefix: str
    default_limits: tuple[LimitSource, ...]
    global_limits: tuple[LimitSource, ...]
    dry_run: bool
    headers_enabled: bool
    headers_style: HeaderStyle
    reset_format: ResetFormat
    error_format: ErrorFormat
    max_delay_s: float
    ipv6_prefix: int
    api_key_header: str
    tenant_header: str
    #: As an operator types them, redacted (:func:`~flask_quota.keys.redact`): ``key:<secret>``
    #: is held as its digest, as a request's key is compared.
    whitelist_identities: frozenset[str]
    whitelist_networks: tuple[IPNetwork, ...]
    block_duration_s: int
    count_static: bool
    count_options: bool
    alert_threshold: int
    alert_window_s: int
    statsd_host: str | None
    statsd_port: int
    statsd_prefix: str
    named_limits: Mapping[str, str | None]
    plans: Mapping[str, str | None]
    adaptive: Callable[[], float] | None


def _bad(key: str, value: object, expected: str) -> ConfigurationError:
    return ConfigurationError(f"invalid {key} {value!r}: expected {expected}")


def _bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # FLASK_QUOTA_ENABLED=0: Flask reads 0
        return bool(value)
    if isinstance(value, str) and value.lower() in {
        "true",
        "1",
        "yes",
        "on",
        "false",
        "0",
        "no",
        "off",
    }:
        return value.lower() in {"true", "1", "yes", "on"}
    raise _bad(key, value, "true or false")


def _number(
    key: str, value: object, *, minimum: float, maximum: float, integer: bool = False
) -> float:
    """A finite number in [minimum, maximum]: every duration ends up in microseconds in the
    Lua script's doubles, a socket timeout or a Redis expiry, where an unbounded one
    overflows at request time."""
    if isinstance(value, bool):
        raise _bad(key, value, "a number")
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except (ValueError, OverflowError):
        number = math.nan
    kind = "a whole number" if integer else "a number"
    if not minimum <= number <= maximum or (integer and not number.is_integer()):
        raise _bad(key, value, f"{kind} from {_plain(minimum)} to {_plain(maximum)}")
    return number


def _plain(number: float) -> str:
    """A bound as an operator writes it: 315360000, not 3.1536e+08."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _text(key: str, value: object, *, optional: bool = False) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # FLASK_QUOTA_KEY_PREFIX=2024: from_prefixed_env reads an int
    if optional and value is None:
        return ""
    raise _bad(key, value, "a non-empty string")


def _choice(key: str, value: object, choices: type[enum.StrEnum]) -> Any:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return choices(value.lower())
    except ValueError:
        names = ", ".join(repr(c.value) for c in choices)
        raise _bad(key, value, f"one of {names}") from None


def _limit_list(key: str, value: object) -> tuple[LimitSource, ...]:
    """A list of limit strings or callables returning one (``quota.plan(by=...)``), or one
    string (``"10/second;1000/day"``)."""
    if isinstance(value, str):
        if not value.strip():  # as in a limit string: "no limits" is an empty list
            raise _bad(key, value, "a limit string, or a list of them ([] for none)")
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) or callable(v) for v in value):
        return tuple(value)
    raise _bad(key, value, "a limit string or callable, or a list of them")


def _mapping(key: str, value: object) -> Mapping[str, str | None]:
    """Names to limit strings (``None``: unlimited), each parsed now so a bad one fails at
    start-up naming ``<key>[<name>]``."""
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    ):
        raise _bad(key, value, "a mapping of names to limit strings (or None)")
    for name, text in value.items():
        if text is not None:
            try:
                parse_limits(text)
            except ConfigurationError as err:
                raise ConfigurationError(f"invalid {key}[{name!r}]: {err}") from None
    return dict(value)


#: What only an IP address or network looks like: digits with dots (IPv4), or hex digits with
#: two colons or more (IPv6), maybe with a prefix. An entry of this shape that does not parse is
#: a mistake ("10.0.0.0/33", "10.0.0.0 /8"), never meant as an identity.
_NETWORK_LIKE: Final = re.compile(
    r"(?:[0-9]+(?:\.[0-9]*)+|[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)(?:\s*/.*)?"
)


def _whitelist(key: str, value: object) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """Identities and networks; one string (from the environment) is split on commas."""
    entries = (
        [e.strip() for e in value.split(",") if e.strip()] if isinstance(value, str) else value
    )
    if not isinstance(entries, list | tuple | set | frozenset):
        raise _bad(key, value, "a list of identities and IP networks")
    identities: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise _bad(key, entry, "an identity or IP network string")
        entry = entry.strip()
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if _NETWORK_LIKE.fullmatch(entry):  # "10.0.0.0/33", "10.0.0.0 /8": a typo, not a name
                raise _bad(key, entry, "a valid IP address or network") from None
            identities.add(redact(entry))  # "key:<secret>" compared, and shown, as its digest
    return frozenset(identities), tuple(networks)


def _callable(key: str, value: object) -> Any:
    if value is None or callable(value):
        return value
    raise _bad(key, value, "a callable or None")


def _adaptive(value: object) -> Any:
    """A callable, ``None``, or the built-in's config spelling ``"in_flight:<soft>:<hard>"``."""
    if isinstance(value, str):
        from .adaptive import parse_adaptive

        return parse_adaptive(value)
    return _callable("QUOTA_ADAPTIVE", value)


def load_settings(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> Settings:
    """Validated settings from an app's config and the constructor's keywords.

    :param overrides: ``{"QUOTA_<NAME>": value}`` from the constructor; they win over config.
    :raises ConfigurationError: naming the key and value of the first bad option.
    """
    for name in config:
        if name.startswith("QUOTA_") and name not in DEFAULTS:
            log.warning("unknown config key %s is ignored (misspelt?)", name)

    def get(key: str) -> Any:
        if key in overrides:
            return overrides[key]
        return config.get(key, DEFAULTS[key])

    identities, networks = _whitelist("QUOTA_WHITELIST", get("QUOTA_WHITELIST"))
    ipv6_prefix = int(
        _number("QUOTA_IPV6_PREFIX", get("QUOTA_IPV6_PREFIX"), minimum=0, maximum=128, integer=True)
    )
    strategy = get("QUOTA_STRATEGY")
    try:
        algorithm = Algorithm.parse(strategy)
    except ConfigurationError:
        names = ", ".join(repr(a.value) for a in Algorithm)
        raise _bad("QUOTA_STRATEGY", strategy, f"one of {names}") from None
    return Settings(
        enabled=_bool("QUOTA_ENABLED", get("QUOTA_ENABLED")),
        storage_uri=_text("QUOTA_STORAGE_URI", get("QUOTA_STORAGE_URI")),
        storage_timeout_s=_number(
            "QUOTA_STORAGE_TIMEOUT",
            get("QUOTA_STORAGE_TIMEOUT"),
            minimum=0.001,
            maximum=MAX_STORAGE_TIMEOUT_S,
        ),
        retry_interval_s=_number(
            "QUOTA_RETRY_INTERVAL", get("QUOTA_RETRY_INTERVAL"), minimum=0, maximum=MAX_PERIOD_S
        ),
        fail_mode=_choice("QUOTA_FAIL_MODE", get("QUOTA_FAIL_MODE"), FailMode),
        strategy=algorithm,
        key_prefix=_text("QUOTA_KEY_PREFIX", get("QUOTA_KEY_PREFIX")),
        default_limits=_limit_list("QUOTA_DEFAULT_LIMITS", get("QUOTA_DEFAULT_LIMITS")),
        global_limits=_limit_list("QUOTA_GLOBAL_LIMITS", get("QUOTA_GLOBAL_LIMITS")),
        dry_run=_bool("QUOTA_DRY_RUN", get("QUOTA_DRY_RUN")),
        headers_enabled=_bool("QUOTA_HEADERS_ENABLED", get("QUOTA_HEADERS_ENABLED")),
        headers_style=_choice("QUOTA_HEADERS_STYLE", get("QUOTA_HEADERS_STYLE"), HeaderStyle),
        reset_format=_choice("QUOTA_RESET_FORMAT", get("QUOTA_RESET_FORMAT"), ResetFormat),
        error_format=_choice("QUOTA_ERROR_FORMAT", get("QUOTA_ERROR_FORMAT"), ErrorFormat),
        max_delay_s=_number(
            "QUOTA_MAX_DELAY", get("QUOTA_MAX_DELAY"), minimum=0, maximum=MAX_PERIOD_S
        ),
        ipv6_prefix=ipv6_prefix,
        api_key_header=_text("QUOTA_API_KEY_HEADER", get("QUOTA_API_KEY_HEADER")),
        tenant_header=_text("QUOTA_TENANT_HEADER", get("QUOTA_TENANT_HEADER")),
        whitelist_identities=identities,
        whitelist_networks=networks,
        block_duration_s=int(
            _number(
                "QUOTA_BLOCK_DURATION",
                get("QUOTA_BLOCK_DURATION"),
                minimum=1,
                maximum=MAX_PERIOD_S,
                integer=True,
            )
        ),
        count_static=_bool("QUOTA_COUNT_STATIC", get("QUOTA_COUNT_STATIC")),
        count_options=_bool("QUOTA_COUNT_OPTIONS", get("QUOTA_COUNT_OPTIONS")),
        alert_threshold=int(
            _number(
                "QUOTA_ALERT_THRESHOLD",
                get("QUOTA_ALERT_THRESHOLD"),
                minimum=1,
                maximum=MAX_COUNT,
                integer=True,
            )
        ),
        alert_window_s=int(
            _number(
                "QUOTA_ALERT_WINDOW",
                get("QUOTA_ALERT_WINDOW"),
                minimum=1,
                maximum=MAX_PERIOD_S,
                integer=True,
            )
        ),
        statsd_host=_text("QUOTA_STATSD_HOST", get("QUOTA_STATSD_HOST"), optional=True) or None,
        statsd_port=int(
            _number(
                "QUOTA_STATSD_PORT",
                get("QUOTA_STATSD_PORT"),
                minimum=1,
                maximum=65535,
                integer=True,
            )
        ),
        statsd_prefix=_text("QUOTA_STATSD_PREFIX", get("QUOTA_STATSD_PREFIX")),
        named_limits=_mapping("QUOTA_LIMITS", get("QUOTA_LIMITS")),
        plans=_mapping("QUOTA_PLANS", get("QUOTA_PLANS")),
        adaptive=_adaptive(get("QUOTA_ADAPTIVE")),
    )
