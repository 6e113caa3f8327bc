"""How the CLI's text output shows identities (``flask_quota._display``): usual ones as they
are; any other safely (nothing a terminal would act on, nothing the stream cannot encode) and
unambiguously (a shown form decodes back to one identity only)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_quota._display import escaped, shown

#: Any code point, lone surrogates included.
CHARACTERS = st.characters() | st.characters(categories=["Cs"])
TRICKY = st.sampled_from(['"', "\\", " ", "\n", "\t", "\x1b", "\u202e", "\ud800", "é", "用"])
TEXTS = st.text(CHARACTERS) | st.text(TRICKY | st.sampled_from("ab:"), max_size=12)
_ESCAPE = re.compile(r'\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|([nrt"\\]))')


def unshown(text: str) -> str:
    """The identity a shown form names: the inverse of :func:`shown`, written here from its
    documented rule (quoted: C-style escapes; else as it is)."""
    if not (len(text) >= 2 and text[0] == text[-1] == '"'):
        assert not text.startswith('"')
        return text

    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2) or match.group(3)
        if code:
            return chr(int(code, 16))
        return {"n": "\n", "r": "\r", "t": "\t"}.get(match.group(4), match.group(4))

    inner = text[1:-1]
    assert not re.search(r'(?<!\\)(?:\\\\)*"', inner), "an unescaped quote inside"
    return _ESCAPE.sub(one, inner)


@pytest.mark.parametrize(
    "identity",
    ["user:42", "203.0.113.9", "2001:db8:1:2::/64", "key:sha256:1f2e3d4c5b6a7988", "#" + "a" * 32,
     "DOMAIN\\user", "tenant:acme corp", "é", "用户", "a\"b", ""],
)  # fmt: skip
def test_usual_identities_are_shown_as_they_are(identity: str) -> None:
    assert shown(identity) == identity


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ("\ud800", '"\\ud800"'),
        ("a\nb", '"a\\nb"'),
        ("\x1b[31m", '"\\x1b[31m"'),
        ("\u202eevil", '"\\u202eevil"'),
        ("tab\there", '"tab\\there"'),
        ("\U000e0041", '"\\U000e0041"'),
        ('"quoted"', '"\\"quoted\\""'),
        (" lead", '" lead"'),
        ("trail ", '"trail "'),
        ("two  spaces", '"two  spaces"'),
        ("back\\slash\n", '"back\\\\slash\\n"'),
    ],
)
def test_unusual_identities_are_quoted_with_escapes(identity: str, expected: str) -> None:
    assert shown(identity) == expected


def test_what_the_stream_cannot_encode_is_escaped() -> None:
    assert shown("用户", "latin-1") == '"\\u7528\\u6237"'
    assert shown("é", "latin-1") == "é"
    assert shown("é", "ascii") == '"\\xe9"'


@given(TEXTS)
def test_a_shown_form_is_printable_and_names_one_identity(identity: str) -> None:
    text = shown(identity)

    assert text.isprintable()
    text.encode("utf-8")  # no surrogate left
    assert unshown(text) == identity


@given(TEXTS)
def test_an_escaped_message_is_printable_and_unchanged_when_it_was(message: str) -> None:
    text = escaped(message)

    assert text.isprintable()
    assert (text == message) == message.isprintable()
