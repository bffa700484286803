# -*- test-case-name: tests.test_terminal -*-
"""
Text from a peer made safe to print on a terminal.

A string a server or another user chose (an item name, an error message, a
chat line) may hold a carriage return that overwrites what was printed
before it, an escape sequence that moves the cursor, clears the screen or
retitles the window, or a line separator that starts a fake new line.
:func:`printable` shows every such character as a visible escape instead.
"""

from __future__ import annotations

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(code: int) -> str:
    char = chr(code)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


#: C0 controls (ESC among them, so no escape sequence survives), DEL, C1
#: controls (U+0085 among them) and the Unicode line and paragraph separators.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_TABLE = {code: _escape(code) for code in _CONTROLS}


def printable(text: str) -> str:
    """``text`` with every control character shown as a visible escape (``\\r``, ``\\x1b``)."""
    return text.translate(_TABLE)
