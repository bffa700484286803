"""
The name -> user id directory in Redis, shared by every process on the
server and kept across restarts.

Each id space has two hashes, ``<prefix>directory:<space>:names`` (name -> id) and
``<prefix>directory:<space>:ids`` (id -> name), and a sorted set
``<prefix>directory:<space>:leases`` of leased names scored by their expiry on
Redis's own clock (``TIME``), so that every process agrees on when a lease
ends whatever its own clock says.  A claim is one Lua script: clean up a
bounded batch of ended leases, look the name up, else probe from its home
slot until an id is free (or held by an ended lease), then record the name.
Being one script, two processes claiming at once can never get the same id,
and a restarted process finds every id where it was.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store import directory_rules as rules
from marketplace.store.errors import DirectoryFull, StoreError
from marketplace.store.interfaces import IDirectory
from marketplace.store.redis.scripts import lua

ENDED_LEASES_PER_CLAIM = 100
"""Ended leases a claim cleans up at most: the script's work stays bounded
however many ended at once, and each claim adds at most one lease."""


def _optional(value) -> str:
    return "" if value is None else repr(value)


@implementer(IDirectory)
class RedisDirectory:
    def __init__(self, connection):
        self._redis = connection
        self._prefix = connection.prefix + "directory:"

    def _keys(self, id_space: int) -> list[str]:
        return [f"{self._prefix}{id_space}:names", f"{self._prefix}{id_space}:ids",
                f"{self._prefix}{id_space}:leases"]

    def user_id_for(self, name, id_space, lease=None, lease_limit=None):
        try:
            rules.check_name(name)
            rules.check_id_space(id_space)
            rules.check_lease(lease, lease_limit)
        except (TypeError, ValueError):
            return defer.fail()
        reserved = str(rules.RESERVED_ID) if rules.reserved_in(id_space) else ""
        return self._redis.script(
            lua("directory_claim"), self._keys(id_space),
            [name, rules.home_slot(name, id_space), id_space, reserved, rules.capacity(id_space),
             _optional(lease), _optional(lease_limit), ENDED_LEASES_PER_CLAIM],
            parse=lambda reply: self._claimed(reply, id_space, lease_limit))

    @staticmethod
    def _claimed(reply, id_space, lease_limit):
        status, value = reply
        if status == "ok":
            return int(value)
        if status == "full":
            raise DirectoryFull(rules.full_message(id_space))
        if status == "leases full":
            raise DirectoryFull(rules.leases_full_message(lease_limit))
        raise StoreError(f"unexpected directory script reply: {reply!r}")
