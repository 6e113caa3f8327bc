"""Addresses and networks given to ``flask quota``: taken as the identities ``by_ip`` gives.

``by_ip`` counts an IPv6 client by its network (``QUOTA_IPV6_PREFIX``, default /64), so an IPv6
address given to block, unblock, whitelist add|remove, reset or list is taken as that network,
and the output says so. A network (an IPv4 one, or IPv6 at another prefix) is refused in one
line: stored lists and counters hold identities, and ``QUOTA_WHITELIST`` is where networks go.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from flask_quota import ConfigurationError, admin
from flask_quota._identities import OperatorIdentity
from tests.ops.conftest import IP1, OpsApp, get, statuses
from tests.ops.test_cli import ok, one_line_error

CLIENT = "2001:db8:1:2::1"
#: Another address of CLIENT's /64: the same client for by_ip.
NEIGHBOUR = "2001:db8:1:2:ffff::9"
NETWORK = "2001:db8:1:2::/64"
#: Another /64: another client.
STRANGER = "2001:db8:1:3::1"
TAKEN_AS = f"{CLIENT} is identity {NETWORK}, as by_ip counts it."


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def ops(request: pytest.FixtureRequest, make_ops_app: Any) -> OpsApp:
    ops_app: OpsApp = make_ops_app(request.param)
    return ops_app


def test_block_of_an_ipv6_address_blocks_its_network(ops: OpsApp) -> None:
    blocked = ops.cli("block", CLIENT, "--for", "60")

    assert ok(blocked) == f"{TAKEN_AS}\nBlocked {NETWORK} for 60 s.\n"
    assert get(ops.app, "/", ip=NEIGHBOUR).status_code == 429
    assert get(ops.app, "/", ip=STRANGER).status_code == 200

    unblocked = json.loads(ok(ops.cli("unblock", NEIGHBOUR, "--json")))

    assert unblocked == {"identity": NETWORK, "blocked": False, "given": NEIGHBOUR}
    assert get(ops.app, "/", ip=CLIENT).status_code == 200


def test_json_says_which_address_was_given(ops: OpsApp) -> None:
    blocked = json.loads(ok(ops.cli("block", CLIENT, "--for", "60", "--json")))
    again = json.loads(ok(ops.cli("block", NETWORK, "--for", "60", "--json")))

    assert blocked == {"identity": NETWORK, "blocked_for": 60, "given": CLIENT}
    # Given as the identity itself: nothing was taken for anything else.
    assert again == {"identity": NETWORK, "blocked_for": 60}


def test_whitelist_of_an_ipv6_address_allows_its_network(ops: OpsApp) -> None:
    added = ops.cli("whitelist", "add", NEIGHBOUR)
    passed = [get(ops.app, "/", ip=CLIENT) for _ in range(12)]

    assert ok(added).splitlines() == [
        f"{NEIGHBOUR} is identity {NETWORK}, as by_ip counts it.",
        f"Whitelisted {NETWORK}.",
    ]
    assert [r.status_code for r in passed] == [200] * 12
    assert "X-RateLimit-Remaining" not in passed[0].headers
    assert json.loads(ok(ops.cli("whitelist", "list", "--json"))) == [
        {"identity": NETWORK, "source": "storage"}
    ]

    removed = json.loads(ok(ops.cli("whitelist", "remove", CLIENT, "--json")))

    assert removed == {"identity": NETWORK, "whitelisted": False, "given": CLIENT}
    assert get(ops.app, "/", ip=CLIENT).headers["X-RateLimit-Remaining"] == "9"


def test_list_and_reset_of_an_ipv6_address_find_its_network(ops: OpsApp) -> None:
    assert statuses(ops.app, "/", 3, ip=CLIENT) == [200] * 3

    listed = json.loads(ok(ops.cli("list", NEIGHBOUR, "--json")))
    text = ok(ops.cli("list", NEIGHBOUR))
    cleared = ops.cli("reset", NEIGHBOUR)

    assert [(r["identity"], r["name"], r["used"]) for r in listed] == [
        (NETWORK, "index:10/minute", 3)
    ]
    assert text.splitlines()[0] == f"{NEIGHBOUR} is identity {NETWORK}, as by_ip counts it."
    assert text.splitlines()[3].split()[:2] == [NETWORK, "index:10/minute"]
    assert ok(cleared).splitlines() == [
        f"{NEIGHBOUR} is identity {NETWORK}, as by_ip counts it.",
        f"Cleared 1 counters of {NETWORK}.",
    ]
    assert json.loads(ok(ops.cli("list", NETWORK, "--json"))) == []


def test_the_network_follows_quota_ipv6_prefix(make_ops_app: Any) -> None:
    ops = make_ops_app("memory", QUOTA_IPV6_PREFIX=48)

    blocked = json.loads(ok(ops.cli("block", CLIENT, "--json")))

    assert blocked["identity"] == "2001:db8:1::/48"
    assert get(ops.app, "/", ip=STRANGER).status_code == 429  # same /48
    assert one_line_error(ops.cli("block", NETWORK)).startswith(
        f"Error: invalid identity '{NETWORK}': an IP network"
    )


@pytest.mark.parametrize(
    ("given", "identity"),
    [
        ("2001:DB8:1:2::/64", NETWORK),  # written otherwise
        ("2001:db8:1:2::7/64", NETWORK),  # an address of the network, with its prefix
        ("::ffff:203.0.113.9", "203.0.113.9"),  # IPv4-mapped: by_ip counts it as IPv4
        ("203.0.113.9/32", "203.0.113.9"),  # one address
    ],
)
def test_other_spellings_of_an_identity_are_taken_as_it(
    ops: OpsApp, given: str, identity: str
) -> None:
    assert ok(ops.cli("block", given, "--for", "60")).splitlines() == [
        f"{given} is identity {identity}, as by_ip counts it.",
        f"Blocked {identity} for 60 s.",
    ]


@pytest.mark.parametrize(
    "identity", ["user:42", "tenant:acme", "key:sha256:0123456789abcdef", IP1, "global", "a/b"]
)
def test_other_identities_are_taken_as_given(ops: OpsApp, identity: str) -> None:
    assert ok(ops.cli("block", identity, "--for", "60")) == f"Blocked {identity} for 60 s.\n"
    assert json.loads(ok(ops.cli("whitelist", "add", identity, "--json"))) == {
        "identity": identity,
        "whitelisted": True,
    }


@pytest.mark.parametrize("network", ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/48", "::/0"])
@pytest.mark.parametrize(
    "command",
    [("whitelist", "add"), ("whitelist", "remove"), ("block",), ("unblock",), ("reset",)],
)
def test_a_network_is_refused_in_one_line_pointing_to_quota_whitelist(
    ops: OpsApp, command: tuple[str, ...], network: str
) -> None:
    result = ops.cli(*command, network)

    line = one_line_error(result)
    assert result.exit_code == 1
    assert line.startswith(f"Error: invalid identity '{network}': an IP network, but stored ")
    assert line.endswith("; to allow a network, put it in QUOTA_WHITELIST")
    assert json.loads(ok(ops.cli("whitelist", "list", "--json"))) == []


def test_list_refuses_a_network_and_points_to_globs(ops: OpsApp) -> None:
    line = one_line_error(ops.cli("list", "192.0.2.0/24"))

    assert line.startswith("Error: invalid identity '192.0.2.0/24': an IP network")
    assert line.endswith("; to list several, use a glob ('*', '?', '[...]')")
    assert ok(ops.cli("list", "192.0.2.*")) == "No live counters match '192.0.2.*'.\n"


def test_admin_functions_take_addresses_as_the_cli_does(ops: OpsApp) -> None:
    assert admin.block(ops.app, CLIENT, 60) == (NETWORK, 60)
    assert admin.unblock(ops.app, NEIGHBOUR) is True
    assert admin.allow(ops.app, CLIENT) == NETWORK
    assert admin.disallow(ops.app, NEIGHBOUR) is True
    assert admin.resolve_identity(ops.app, CLIENT) == OperatorIdentity(NETWORK, CLIENT)
    with pytest.raises(ConfigurationError, match="QUOTA_WHITELIST"):
        admin.allow(ops.app, "10.0.0.0/8")


# -- long identities: stored, listed and reset as a digest ---------------------------------------

#: X-User values whose identity (``user:<value>``) is longer than 128 characters once escaped.
LONG_USERS = {"134 chars": "u" * 129, "64 x é": "é" * 64}


def listed_as(identity: str) -> str:
    """How ``list`` shows a long identity (storage.md): ``#`` + blake2b-128 of its UTF-8."""
    return "#" + hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


def per_user_rows(ops: OpsApp, *pattern: str) -> list[tuple[str, int]]:
    rows = json.loads(ok(ops.cli("list", "--json", *pattern)))
    return [(r["identity"], r["used"]) for r in rows if r["name"] == "per-user"]


@pytest.mark.parametrize("user", LONG_USERS.values(), ids=LONG_USERS)
@pytest.mark.parametrize("given", ["in full", "as listed"])
def test_reset_clears_a_long_identity(ops: OpsApp, user: str, given: str) -> None:
    # Both forms used to answer "Cleared 0 counters" (exit status 0), and the client stayed
    # refused: reset compared the full identity with the digest the key holds.
    identity = f"user:{user}"
    other = "v" * 200
    assert statuses(ops.app, "/user", 4, headers={"X-User": user}) == [200] * 3 + [429]
    assert statuses(ops.app, "/user", 1, headers={"X-User": other}) == [200]
    before = per_user_rows(ops)

    cleared = ops.cli("reset", identity if given == "in full" else listed_as(identity), "--json")

    assert sorted(before) == sorted([(listed_as(identity), 3), (listed_as(f"user:{other}"), 1)])
    assert json.loads(ok(cleared))["cleared"] == 1
    assert per_user_rows(ops) == [(listed_as(f"user:{other}"), 1)]
    assert get(ops.app, "/user", headers={"X-User": user}).status_code == 200


def test_reset_of_a_long_identity_by_limit_name(ops: OpsApp) -> None:
    identity = f"user:{LONG_USERS['134 chars']}"
    assert statuses(ops.app, "/user", 2, headers={"X-User": LONG_USERS["134 chars"]}) == [200] * 2

    wrong = ops.cli("reset", listed_as(identity), "--limit", "api")
    right = ops.cli("reset", listed_as(identity), "--limit", "per-user")

    assert ok(wrong) == f"Cleared 0 counters of {listed_as(identity)}.\n"
    assert ok(right) == f"Cleared 1 counters of {listed_as(identity)}.\n"


@pytest.mark.parametrize("user", LONG_USERS.values(), ids=LONG_USERS)
def test_list_finds_a_long_identity_in_full_or_as_listed(ops: OpsApp, user: str) -> None:
    # In full it used to find nothing: the pattern was compared with the digest.
    identity = f"user:{user}"
    assert statuses(ops.app, "/user", 2, headers={"X-User": user}) == [200] * 2

    assert per_user_rows(ops, identity) == [(listed_as(identity), 2)]
    assert per_user_rows(ops, listed_as(identity)) == [(listed_as(identity), 2)]
    assert per_user_rows(ops, "#*") == [(listed_as(identity), 2)]


@pytest.mark.parametrize(
    "command",
    [("block",), ("unblock",), ("whitelist", "add"), ("whitelist", "remove")],
    ids=" ".join,
)
def test_the_digest_form_of_a_long_identity_is_refused_by_lists_and_blocks(
    ops: OpsApp, command: tuple[str, ...]
) -> None:
    digest = "#" + "0123456789abcdef" * 2  # how list shows an identity too long to escape

    result = ops.cli(*command, digest)

    assert one_line_error(result) == (
        f"Error: '{digest}' is the form list shows for a long identity: give the identity in full"
    )
