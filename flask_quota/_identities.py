"""Identities as operators type them (``flask quota block 2001:db8::1``), made the identities
that key functions give, so that what the CLI stores or looks up is what requests compute.

``by_ip`` counts an IPv6 client by its network (``QUOTA_IPV6_PREFIX``, default /64: one client
holds a whole /64) and an IPv4-mapped IPv6 address as IPv4. An address typed as a client's would
otherwise be stored as is and match no request: it becomes by_ip's identity, and the caller says
so. A network is refused, unless it is one identity (an IPv4 /32, an IPv6 network at the
prefix): stored lists, blocks and counters hold identities, never ranges, so a range would
silently match nothing. ``QUOTA_WHITELIST`` is where networks go. Any other text is an identity
as it stands (``user:42``, ``tenant:acme``), API keys redacted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .errors import ConfigurationError
from .identity import _ip_identity
from .keys import redact


@dataclass(frozen=True, slots=True)
class OperatorIdentity:
    """An identity typed by an operator, resolved."""

    #: As stored and shown: API keys redacted, IP addresses as ``by_ip`` gives them.
    identity: str
    #: The address typed, when it was not ``identity`` itself (an IPv6 address, say); never an
    #: API key, so it may be shown.
    given: str | None = None


def resolve_identity(text: str, ipv6_prefix: int, *, hint: str) -> OperatorIdentity:
    """The identity ``text`` names.

    :param hint: ends the error for a network: what to do instead (``QUOTA_WHITELIST`` for
        allowing one, a glob for listing).
    :raises ConfigurationError: for an empty text, or a network that is more than one identity.
    """
    if not text or not text.strip():
        raise ConfigurationError("identity must be a non-empty string, e.g. 'user:42'")
    if "/" in text:
        identity = _network_identity(text, ipv6_prefix, hint)
    else:
        identity = _address_identity(text, ipv6_prefix)
    if identity is None:
        return OperatorIdentity(redact(text))
    return OperatorIdentity(identity, None if identity == text else text)


def _address_identity(text: str, ipv6_prefix: int) -> str | None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None  # "user:42", "key:..."
    return _ip_identity(text, ipv6_prefix)


def _network_identity(text: str, ipv6_prefix: int, hint: str) -> str | None:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None  # not a network: an identity that holds a slash
    if isinstance(network, ipaddress.IPv4Network) and network.prefixlen == 32:
        return str(network.network_address)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == ipv6_prefix:
        return str(network)
    raise ConfigurationError(
        f"invalid identity {text!r}: an IP network, but stored lists, blocks and counters hold "
        f"identities (an IPv4 address, or an IPv6 /{ipv6_prefix} network as by_ip gives it, "
        f"QUOTA_IPV6_PREFIX); {hint}"
    )
