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
import secrets

import attrs
from argon2 import PasswordHasher, Type, extract_parameters
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
    """
    Hash and verify passwords off the reactor thread.

    With a ``gate`` (a ``kdfgate.KdfGate``) every hash is admitted by it for
    the ``client`` address asking, so nobody can queue unbounded work.

    A login for a name nobody has verifies the password against a decoy
    hash made at start-up with the configured cost, so it costs the same as
    a wrong password for a real account and its timing tells nothing.  The
    decoy is this process's own random hash; nothing of it ever leaves the
    process, so processes differ in nothing a client can observe.
    """

    def __init__(self, cost: KdfCost = KdfCost(), defer_to_thread=threads.deferToThread,
                 gate=None):
        self._cost = cost
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_kib,
            parallelism=cost.parallelism,
        )
        self._defer_to_thread = defer_to_thread
        self._gate = gate
        self._decoy = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, secret: str, client=None):
        """@return: a Deferred firing with the encoded argon2id hash."""
        return self._run(client, self._hasher.hash, secret)

    def verify(self, encoded: str, secret: str, client=None):
        """@return: a Deferred firing True when ``secret`` matches ``encoded``."""
        return self._run(client, self._matches, encoded, secret)

    def verify_decoy(self, secret: str, client=None):
        """The work of a ``verify`` for a user that does not exist: fires False."""
        return self._run(client, self._matches, self._decoy, secret).addCallback(lambda _: False)

    def needs_upgrade(self, encoded: str) -> bool:
        """Whether ``encoded`` was made with less work than this process's cost."""
        try:
            used = extract_parameters(encoded)
        except InvalidHashError:
            return False
        cost = self._cost
        return (used.type is not Type.ID or used.time_cost < cost.time_cost
                or used.memory_cost < cost.memory_kib)

    def _run(self, client, function, *args):
        def work():
            return self._defer_to_thread(function, *args)
        if self._gate is None:
            return work()
        return self._gate.run(client, work)

    def _matches(self, encoded: str, secret: str) -> bool:
        try:
            return self._hasher.verify(encoded, secret)
        except (VerificationError, InvalidHashError):
            return False
