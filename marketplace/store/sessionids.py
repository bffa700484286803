"""
Session ids: 256 random bits from the OS, URL-safe so they survive any
framing (JSON, text lines, length-prefixed strings) unchanged.
"""

import secrets

DEFAULT_SESSION_TTL = 300.0


def new_session_id() -> str:
    return secrets.token_urlsafe(32)
