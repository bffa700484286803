"""
Session ids: 256 random bits from the OS, URL-safe so they survive any
framing (JSON, text lines, length-prefixed strings) unchanged.

Clients send ids back, so an id is checked for this shape before it goes
near a store: in Redis a session's key is built from its id, and an id such
as ``user:buyer:1`` would otherwise name a key of another kind.
"""

import re
import secrets

DEFAULT_SESSION_TTL = 300.0


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


#: What ``new_session_id`` draws: 32 bytes in unpadded URL-safe base64.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def is_session_id(value) -> bool:
    """Whether ``value`` has the shape of an id this module draws."""
    return isinstance(value, str) and _SHAPE.fullmatch(value) is not None
