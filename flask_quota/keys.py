"""The only place storage keys are built.

Layout: ``<prefix>:{<tag>}:<scope>:<algorithm code>:<period_s>:<identity>`` for limit states, and
``<prefix>:{<tag>}:%<list>:<identity>`` for an identity's allow-list and block entries and its
refusal counter (``%allow``, ``%block``, ``%refusals``: a scope can never start that way, since
``%`` in a scope is escaped to ``%25``).

- ``<tag>`` is a short digest of the identity: all of one identity's keys share a Redis Cluster
  hash slot, and no byte a client controls can pick that slot (it is always the first ``{...}``).
- ``<scope>`` and ``<identity>`` are percent-escaped: ``{``, ``}``, ``%``, glob characters,
  whitespace, control and non-ASCII bytes never reach a key, so a hostile identity cannot forge
  another key, change the layout or its slot. ``:`` is escaped in the scope; the identity is last,
  so its colons are unambiguous and stay readable (``user:42``).
- An identity whose escaped form is long becomes ``#`` + a digest (``#`` is always escaped
  otherwise, so the two forms cannot meet).
- A secret (``key:<api key>``) is redacted to ``key:sha256:<16 hex>`` before any of this: API
  keys never appear in clear in storage, logs, metrics or the CLI. A request's key is always
  hashed (:func:`redact_client`); an operator may type the digest the CLI shows (:func:`redact`).

The count is not in the key, so a live override of ``100/minute`` to ``200/minute`` keeps the
counters; the algorithm and period are, since their states do not translate.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_to_bytes

from .algorithms import Algorithm

SECRET_PREFIX: Final = "key:"
_REDACTED_RE: Final = re.compile(r"key:sha256:[0-9a-f]{16}")
#: Escaped identities longer than this are stored as a digest.
MAX_IDENTITY_CHARS: Final = 128
_SAFE_IDENTITY: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:@/+=,!$&'()"
)
_SAFE_SCOPE: Final = _SAFE_IDENTITY - frozenset(b":")


def redact(identity: str) -> str:
    """The form of an identity an operator typed (CLI, ``QUOTA_WHITELIST``): API keys become
    a digest.

    ``"key:abc"`` -> ``"key:sha256:<first 16 hex of sha256('abc')>"``; an already redacted
    identity (as the CLI shows them) and any other identity are returned unchanged. For the
    identities of requests, use :func:`redact_client`.
    """
    if not identity.startswith(SECRET_PREFIX) or _REDACTED_RE.fullmatch(identity):
        return identity
    return _digest(identity)


def redact_client(identity: str) -> str:
    """The form of an identity a key function returned for a request: an API key is always
    hashed, even one shaped like a digest. Taken as given, ``X-API-Key: sha256:<16 hex>``
    would be counted, allow-listed and blocked as the key whose digest it copies."""
    if not identity.startswith(SECRET_PREFIX):
        return identity
    return _digest(identity)


def _digest(identity: str) -> str:
    secret = identity[len(SECRET_PREFIX) :].encode("utf-8", "surrogatepass")
    return f"{SECRET_PREFIX}sha256:{hashlib.sha256(secret).hexdigest()[:16]}"


def _escape(text: str, safe: frozenset[int]) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    if all(byte in safe for byte in raw):
        return text
    return "".join(chr(byte) if byte in safe else f"%{byte:02X}" for byte in raw)


@lru_cache(maxsize=8192)
def identity_parts(identity: str) -> tuple[str, str]:
    """``(hash tag, escaped identity)``, cached: a request builds several keys for each of
    its identities, and busy identities recur. Holds redacted identities only."""
    return hash_tag(identity), escape_identity(identity)


def escape_identity(identity: str) -> str:
    """The identity as it appears in a key: escaped, or ``#<digest>`` when long."""
    raw = identity.encode("utf-8", "surrogatepass")
    # Escaping never shortens (a byte becomes 1 or 3 characters): past the limit in bytes, go
    # straight to the digest, so a megabyte identity costs one hash, not a million escapes.
    if len(raw) <= MAX_IDENTITY_CHARS:
        escaped = _escape(identity, _SAFE_IDENTITY)
        if len(escaped) <= MAX_IDENTITY_CHARS:
            return escaped
    return "#" + hashlib.blake2b(raw, digest_size=16).hexdigest()


#: A long identity's stored form, ``#`` and 32 hex digits (see :func:`escape_identity`).
_DIGEST_RE: Final = re.compile(r"#[0-9a-f]{32}")


def stored_identity(identity: str) -> str:
    """The identity as :func:`parse_key` gives it back (and the CLI lists it): itself, or its
    ``#<digest>`` when long. Compare keys' identities with this, never the identity itself."""
    escaped = escape_identity(identity)
    return escaped if escaped.startswith("#") else identity


def is_digest(text: str) -> bool:
    """Whether ``text`` has the form a long identity is stored and listed as."""
    return _DIGEST_RE.fullmatch(text) is not None


@lru_cache(maxsize=1024)
def escape_scope(scope: str) -> str:
    """A scope (limit name) as it appears in a key; colons escaped too."""
    return _escape(scope, _SAFE_SCOPE)


def hash_tag(identity: str) -> str:
    """The cluster hash tag of a (redacted) identity: 4 hex digits, never client-chosen.

    16 bits spread identities over Redis Cluster's 16,384 slots; identities that share a tag
    still have keys of their own (the identity ends every key).
    """
    return hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=2).hexdigest()


#: Algorithms as they appear in keys. A key is stored once per identity and limit, and Redis
#: allocates key names in size classes (48 bytes up to 44 characters): two letters instead of
#: ``sliding_window`` keep common keys in the smaller class.
KEY_CODES: Final[dict[str, str]] = {
    "fixed_window": "fw",
    "sliding_window": "sw",
    "sliding_log": "sl",
    "token_bucket": "tb",
    "leaky_bucket": "lb",
    "gcra": "gc",
    "concurrent": "cc",
}
_CODE_NAMES: Final = {code: name for name, code in KEY_CODES.items()}


def limit_key(
    prefix: str, scope: str, algorithm: Algorithm | str, period_s: int, identity: str
) -> str:
    """The storage key of one identity's state for one limit.

    ``identity`` must already be redacted (see :func:`redact`); ``prefix`` is the operator's
    ``QUOTA_KEY_PREFIX`` and is escaped like a scope.
    """
    return state_key(prefix, limit_part(scope, algorithm, period_s), identity)


def limit_part(scope: str, algorithm: Algorithm | str, period_s: int) -> str:
    """The part of a limit's keys that is the same for every identity: built once per limit,
    it leaves :func:`state_key` only the identity to add per request."""
    return f"{escape_scope(scope)}:{KEY_CODES[str(algorithm)]}:{period_s}"


def state_key(prefix: str, part: str, identity: str) -> str:
    """:func:`limit_key` from the limit's :func:`limit_part`."""
    tag, escaped = identity_parts(identity)
    return f"{escape_scope(prefix)}:{{{tag}}}:{part}:{escaped}"


ALLOW: Final = "%allow"
BLOCK: Final = "%block"
REFUSALS: Final = "%refusals"


def identity_key(prefix: str, kind: str, identity: str) -> str:
    """The key of an identity's allow-list entry, block or refusal counter (``kind``)."""
    tag, escaped = identity_parts(identity)
    return f"{escape_scope(prefix)}:{{{tag}}}:{kind}:{escaped}"


def identity_pattern(prefix: str, identity: str) -> str:
    """A ``SCAN`` glob for every key of ``identity`` (and, rarely, of others sharing its tag:
    filter with :func:`parse_key`). Escaped parts hold no glob characters."""
    return f"{escape_scope(prefix)}:{{{hash_tag(identity)}}}:*"


def digest_pattern(prefix: str, digest: str) -> str:
    """A ``SCAN`` glob for every key of the long identity stored as ``digest``
    (:func:`is_digest`), whose hash tag the digest does not tell: the whole prefix is walked.
    ``#`` is escaped everywhere else in a key, so the glob matches no other identity's key."""
    return f"{escape_scope(prefix)}:{{*}}:*:{digest}"


def prefix_pattern(prefix: str) -> str:
    """A ``SCAN`` glob for every key under ``prefix``."""
    return f"{escape_scope(prefix)}:{{*"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A storage key taken apart (for the CLI)."""

    #: The scope of a limit state, or ``%allow`` / ``%block`` / ``%refusals``.
    kind: str
    #: The identity as shown (escapes undone; ``#<digest>`` for a long one).
    identity: str
    algorithm: str = ""
    period_s: int = 0


def unescape(text: str) -> str:
    """Undo :func:`_escape`."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogatepass")


def parse_key(key: str, prefix: str) -> ParsedKey | None:
    """Take a key built here apart; ``None`` for a key of another layout."""
    head = f"{escape_scope(prefix)}:{{"
    if not key.startswith(head):
        return None
    parts = key[len(head) :].split(":", 1)
    if len(parts) != 2 or not parts[0].endswith("}"):
        return None
    rest = parts[1]
    if rest.startswith((ALLOW + ":", BLOCK + ":", REFUSALS + ":")):
        kind, escaped = rest.split(":", 1)
        return ParsedKey(kind, unescape(escaped))
    fields = rest.split(":", 3)
    if len(fields) != 4 or not fields[2].isdigit():
        return None
    scope, code, period, escaped = fields
    return ParsedKey(unescape(scope), unescape(escaped), _CODE_NAMES.get(code, code), int(period))
