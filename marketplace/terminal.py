# -*- test-case-name: tests.test_terminal -*-
"""
Showing strings that came from a server (or any peer) on a terminal.

Item names, chat messages and error texts are chosen by other people.
Printed raw, a carriage return lets a message overwrite the start of its
own line and fake the sender prefix the client printed there, a line feed
or U+2028 starts a line that looks like the client's own output, and an
escape sequence can recolour, move the cursor, retitle the window or
clear the screen.  L{printable} turns every such character into a visible
escape, so that what the terminal shows is exactly one line of inert text.
"""

from __future__ import annotations

import re

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

_UNPRINTABLE = re.compile(
    "["
    "\x00-\x1f"        # C0 controls, ESC (the start of every escape sequence) included
    "\x7f"             # DEL
    "\x80-\x9f"        # C1 controls: CSI (U+009B) and OSC (U+009D) start sequences, U+0085 is NEL
    "\u2028\u2029"     # line and paragraph separators
    "\u202a-\u202e"    # bidirectional embeddings and overrides: they reorder what follows
    "\u2066-\u2069"    # bidirectional isolates
    "\ud800-\udfff"    # lone surrogates (from surrogateescape): unencodable on the way out
    "]")


def _escape(match: re.Match) -> str:
    character = match.group()
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """
    C{text} with every control character (C0, DEL, C1), line or paragraph
    separator and bidirectional override shown as a Python-style escape
    (C{\\r}, C{\\x1b}, C{\\u2028}); everything else, backslashes included,
    is left as it is, so ordinary text of any script prints unchanged.
    """
    return _UNPRINTABLE.sub(_escape, text)
