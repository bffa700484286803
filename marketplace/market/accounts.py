"""
User names and passwords.

Passwords are hashed with argon2id, a memory-hard KDF, in a worker thread:
a hash takes tens of milliseconds of CPU by design, which must never stall the
reactor.  argon2-cffi releases the GIL while hashing, so the work really runs
beside the reactor.  The front ends hash (they scale out), and the customer
database only ever stores and returns the encoded hash.
"""

from __future__ import annotations

import re

import attrs
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet import threads

from marketplace.market.errors import ClientError

ROLES = ("buyer", "seller")
MAX_PASSWORD = 128
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")


def username(payload: dict) -> str:
    """A user name: 3 to 32 letters, digits, '_', '.' or '-' (unique per role)."""
    value = payload.get("username")
    if not isinstance(value, str) or not _USERNAME.match(value):
        raise ClientError("'username' must be 3 to 32 letters, digits, '_', '.' or '-'")
    return value


def password(payload: dict) -> str:
    value = payload.get("password")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_PASSWORD:
        raise ClientError(f"'password' must be a string of 1 to {MAX_PASSWORD} characters")
    return value


def role(value) -> str:
    if value not in ROLES:
        raise ClientError(f"'role' must be one of {', '.join(ROLES)}")
    return value


@attrs.frozen
class KdfCost:
    """argon2id parameters; the default follows the OWASP minimum for argon2id."""

    time_cost: int = 2
    memory_kib: int = 19 * 1024
    parallelism: int = 1


#: A cheap setting for tests and benchmarks only (``--cheap-kdf``): still
#: argon2id, but a hundred times faster and far weaker.
CHEAP_COST = KdfCost(time_cost=1, memory_kib=64, parallelism=1)


class Passwords:
    """Hash and verify passwords off the reactor thread."""

    def __init__(self, cost: KdfCost = KdfCost(), defer_to_thread=threads.deferToThread):
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_kib,
            parallelism=cost.parallelism,
        )
        self._defer_to_thread = defer_to_thread

    def hash(self, secret: str):
        """@return: a Deferred firing with the encoded argon2id hash."""
        return self._defer_to_thread(self._hasher.hash, secret)

    def verify(self, encoded: str, secret: str):
        """@return: a Deferred firing True when ``secret`` matches ``encoded``."""
        return self._defer_to_thread(self._matches, encoded, secret)

    def _matches(self, encoded: str, secret: str) -> bool:
        try:
            return self._hasher.verify(encoded, secret)
        except (VerificationError, InvalidHashError):
            return False
