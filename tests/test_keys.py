"""Keys against hostile identities: no collision, no forged slot, no secret, no odd byte.

Identities come from clients (headers, user ids, anything a key function returns), so each
property below is checked on every code point class, lone surrogates, NUL and newlines,
Redis glob and hash-tag characters, and sizes up to a megabyte.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from flask_quota import keys as keys_module
from flask_quota.algorithms import Algorithm
from flask_quota.keys import (
    MAX_IDENTITY_CHARS,
    digest_pattern,
    escape_identity,
    hash_tag,
    identity_key,
    is_digest,
    limit_key,
    parse_key,
    redact,
    stored_identity,
)

#: Any code point, lone surrogates included (encoded with 'surrogatepass').
CHARACTERS = st.characters() | st.characters(categories=["Cs"])
HOSTILE = st.sampled_from(["{", "}", ":", "*", "?", "[", "%", "#", "\x00", "\n", " ", "\ud800"])
IDENTITIES = st.one_of(
    st.text(CHARACTERS),
    st.text(HOSTILE | st.sampled_from("ab:"), max_size=30),
    st.text(CHARACTERS, min_size=100, max_size=400),
    st.builds(lambda text: "key:" + text, st.text(CHARACTERS)),
)
#: The tag: the first {...} of a key, which Redis Cluster hashes instead of the whole key.
TAG = re.compile(r"\{([^}]*)\}")


def key(identity: str, prefix: str = "quota", scope: str = "search") -> str:
    return limit_key(prefix, scope, Algorithm.GCRA, 60, redact(identity))


def test_a_plain_identity_stays_readable() -> None:
    assert key("user:42") == f"quota:{{{hash_tag('user:42')}}}:search:gc:60:user:42"
    assert key("203.0.113.9").endswith(":gc:60:203.0.113.9")


@pytest.mark.parametrize(
    ("identity", "escaped"),
    [
        ("{evil}", "%7Bevil%7D"),
        ("a*b?[c]", "a%2Ab%3F%5Bc%5D"),
        ("100%", "100%25"),
        ("#tag", "%23tag"),
        ("line\nbreak\x00", "line%0Abreak%00"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("\ud800", "%ED%A0%80"),
        ("a b\tc", "a%20b%09c"),
    ],
)
def test_hostile_bytes_are_percent_escaped(identity: str, escaped: str) -> None:
    assert escape_identity(identity) == escaped
    assert key(identity).endswith(":" + escaped)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("aA", "a%41"),
        ("a:b", "a%3Ab"),
        ("\ud83d\ude00", "\U0001f600"),
        ("x" * 200, "#" + hashlib.blake2b(b"x" * 200, digest_size=16).hexdigest()),
    ],
)
def test_look_alikes_do_not_collide(one: str, other: str) -> None:
    assert key(one) != key(other)


def test_scope_and_identity_cannot_trade_colons() -> None:
    assert limit_key("q", "a:b", Algorithm.GCRA, 1, "c") != limit_key(
        "q", "a", Algorithm.GCRA, 1, "b:c"
    )


def test_a_megabyte_identity_becomes_a_digest() -> None:
    identity = "\x00{x}\n" * 200_000
    assert len(identity) == 1_000_000
    built = key(identity)
    digest = hashlib.blake2b(identity.encode("utf-8"), digest_size=16).hexdigest()
    assert built.endswith(":#" + digest)
    assert len(built) < 100
    assert key(identity + "!") != built


def test_an_escaped_identity_just_within_the_limit_is_kept() -> None:
    assert escape_identity("a" * MAX_IDENTITY_CHARS) == "a" * MAX_IDENTITY_CHARS
    assert escape_identity("a" * (MAX_IDENTITY_CHARS + 1)).startswith("#")
    # Escaping counts: 43 escaped bytes are 129 characters.
    assert escape_identity("{" * 43).startswith("#")


def test_api_keys_are_redacted_to_a_short_digest() -> None:
    digest = hashlib.sha256(b"s3cret-value").hexdigest()[:16]
    assert redact("key:s3cret-value") == f"key:sha256:{digest}"
    built = key("key:s3cret-value")
    assert built.endswith(f":key:sha256:{digest}")
    assert "s3cret" not in built
    # Other identities, and a redacted one, pass unchanged.
    assert redact("user:42") == "user:42"
    assert redact(f"key:sha256:{digest}") == f"key:sha256:{digest}"


@settings(max_examples=300, deadline=None)
@given(IDENTITIES, IDENTITIES)
def test_distinct_identities_give_distinct_keys(one: str, other: str) -> None:
    if redact(one) != redact(other):
        assert key(one) != key(other)
    else:
        assert key(one) == key(other)


@settings(max_examples=300, deadline=None)
@given(IDENTITIES, st.text(CHARACTERS, max_size=20), st.text(CHARACTERS, max_size=20))
def test_the_only_braces_are_the_digest_tag(identity: str, prefix: str, scope: str) -> None:
    built = key(identity, prefix, scope)
    tag = hash_tag(redact(identity))
    assert re.fullmatch(r"[0-9a-f]{4}", tag)
    match = TAG.search(built)
    assert match is not None and match.group(1) == tag
    assert built.count("{") == built.count("}") == 1


@settings(max_examples=300, deadline=None)
@given(IDENTITIES, st.text(CHARACTERS, max_size=20), st.text(CHARACTERS, max_size=20))
def test_keys_are_printable_ascii_without_whitespace(
    identity: str, prefix: str, scope: str
) -> None:
    built = key(identity, prefix, scope)
    assert all("\x21" <= char <= "\x7e" for char in built), built
    assert len(built) <= 200 + len(prefix) * 12 + len(scope) * 12


@settings(max_examples=200, deadline=None)
@given(st.text(CHARACTERS, min_size=1).map(lambda s: "Zq" + s))
def test_a_secret_never_reaches_the_key(secret: str) -> None:
    built = key("key:" + secret)
    assert secret not in built
    assert escape_identity(secret) not in built
    assert re.search(r":key:sha256:[0-9a-f]{16}$", built)


@settings(max_examples=300, deadline=None)
@given(IDENTITIES)
def test_redact_is_idempotent(identity: str) -> None:
    assert redact(redact(identity)) == redact(identity)


@settings(max_examples=200, deadline=None)
@given(
    IDENTITIES,
    st.lists(
        st.tuples(
            st.text(CHARACTERS, max_size=10),
            st.text(CHARACTERS, max_size=10),
            st.sampled_from(Algorithm),
            st.integers(1, 10 * 365 * 86_400),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_the_cluster_slot_depends_only_on_the_identity(
    identity: str, layouts: list[tuple[str, str, Algorithm, int]]
) -> None:
    redacted = redact(identity)
    slot = key_slot(hash_tag(redacted).encode())
    for prefix, scope, algorithm, period_s in layouts:
        built = limit_key(prefix, scope, algorithm, period_s, redacted)
        assert key_slot(built.encode()) == slot


def test_a_forged_tag_in_the_identity_does_not_pick_the_slot() -> None:
    victim = key("user:1")
    forged = key("{" + hash_tag("user:1") + "}")
    match = TAG.search(forged)
    assert match is not None
    assert match.group(1) == hash_tag("{" + hash_tag("user:1") + "}") != hash_tag("user:1")
    assert forged != victim
    # A naive layout would hash "a" for the identity "{a}"; ours hashes the digest.
    assert key_slot(key("{a}").encode()) == key_slot(hash_tag("{a}").encode())
    assert key_slot(hash_tag("{a}").encode()) != key_slot(b"a")


def test_a_huge_identity_is_hashed_without_being_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the whole identity was escaped before its length was looked at, a second
    # of CPU per request for a megabyte identity. Escaping never shortens, so the byte
    # length alone decides; only short identities reach the escaper.
    escaped_lengths: list[int] = []
    real_escape = keys_module._escape

    def spy(text: str, safe: frozenset[int]) -> str:
        escaped_lengths.append(len(text))
        return real_escape(text, safe)

    monkeypatch.setattr(keys_module, "_escape", spy)
    assert escape_identity("{" * 1_000_000).startswith("#")
    assert escape_identity("a" * (MAX_IDENTITY_CHARS + 1)).startswith("#")
    assert escaped_lengths == []
    # 126 bytes: escaped, and only then found too long (378 characters).
    assert escape_identity("日" * 42).startswith("#")
    assert escaped_lengths == [42]


@settings(max_examples=300, deadline=None)
@given(IDENTITIES)
def test_a_key_gives_back_the_stored_identity(identity: str) -> None:
    # What list shows and reset compares: the identity, or the digest of a long one.
    key = limit_key("quota", "search", Algorithm.GCRA, 60, identity)
    parsed = parse_key(key, "quota")

    assert parsed is not None
    assert parsed.identity == stored_identity(identity)
    assert is_digest(parsed.identity) == escape_identity(identity).startswith("#")


@settings(max_examples=200, deadline=None)
@given(st.text(CHARACTERS, min_size=129, max_size=300), IDENTITIES)
def test_a_digest_pattern_matches_the_keys_of_that_identity_only(long: str, other: str) -> None:
    digest = stored_identity(long)
    pattern = re.compile(fnmatch.translate(digest_pattern("quota", digest)))

    assert is_digest(digest)
    assert pattern.match(limit_key("quota", "a:b", Algorithm.GCRA, 60, long))
    assert pattern.match(identity_key("quota", "%block", long))
    if stored_identity(other) != digest:
        assert not pattern.match(limit_key("quota", "a:b", Algorithm.GCRA, 60, other))
        assert not pattern.match(limit_key("quota", digest, Algorithm.GCRA, 60, other))
