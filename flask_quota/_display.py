"""Identities and names as the CLI's text output shows them: safe on a terminal, unambiguous.

A key function may return any string (API.md), so an identity may hold a newline (a fake row
in a table), a terminal escape sequence (``\\x1b[31m``), a bidi override, or a lone surrogate,
which no UTF-8 stream can write (``UnicodeEncodeError``: a traceback instead of the table).
Such a string is shown the way git shows an unusual path: in double quotes, with backslash
escapes. Any other string, the usual identity, is shown as it is, so ``user:42`` stays
``user:42`` and a shown form maps back to one identity only: an unquoted one never starts with
``"``, and inside quotes ``\\`` and ``"`` are escaped too. ``--json`` is the exact form.
"""

from __future__ import annotations

from typing import Final

_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _fits(char: str, encoding: str) -> bool:
    """Whether ``char`` can be written as it is to a stream in ``encoding``."""
    if not char.isprintable():  # control, format (bidi), separator, surrogate, unassigned
        return False
    if char.isascii():
        return True
    try:
        char.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escaped(text: str, encoding: str = "utf-8") -> str:
    """``text`` with each character a terminal must not get raw as a backslash escape: for
    one-line messages, where quoting is not needed to tell values apart."""
    if all(_fits(c, encoding) for c in text):
        return text
    return "".join(c if _fits(c, encoding) else _escape(c) for c in text)


def shown(text: str, encoding: str = "utf-8") -> str:
    """``text`` as one cell or word of text output: as it is, or quoted with escapes.

    Quoted when a character cannot be printed raw (in ``encoding``, the output stream's), when
    it starts with ``"`` (so no unquoted form looks quoted), or when spaces could hide in a
    table: at either end, or two in a row (the column gap).
    """
    if not text:
        return text
    if (
        all(_fits(c, encoding) for c in text)
        and not text.startswith('"')
        and text.strip(" ") == text
        and "  " not in text
    ):
        return text
    inner = "".join(
        "\\" + c if c in '\\"' else c if _fits(c, encoding) else _escape(c) for c in text
    )
    return f'"{inner}"'
