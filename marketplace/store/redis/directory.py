"""
The name -> user id directory in Redis, shared by every process on the
server and kept across restarts.

Each id space has two hashes, ``<prefix>directory:<space>:names`` (name -> id)
and ``<prefix>directory:<space>:ids`` (id -> name).  A claim is one Lua script: look the
name up, else probe from its home slot with ``HSETNX`` on the ids hash until
one is free, then record the name.  Being one script, two processes claiming
at once can never get the same id, and a restarted process finds every id
where it was.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store import directory_rules as rules
from marketplace.store.errors import DirectoryFull, StoreError
from marketplace.store.interfaces import IDirectory
from marketplace.store.redis.scripts import lua

@implementer(IDirectory)
class RedisDirectory:
    def __init__(self, connection):
        self._redis = connection
        self._prefix = connection.prefix + "directory:"

    def _keys(self, id_space: int) -> list[str]:
        return [f"{self._prefix}{id_space}:names", f"{self._prefix}{id_space}:ids"]

    def user_id_for(self, name, id_space):
        try:
            rules.check_name(name)
            rules.check_id_space(id_space)
        except (TypeError, ValueError):
            return defer.fail()
        reserved = str(rules.RESERVED_ID) if rules.reserved_in(id_space) else ""
        d = self._redis.script(
            lua("directory_claim"), self._keys(id_space),
            [name, rules.home_slot(name, id_space), id_space, reserved, rules.capacity(id_space)])
        return d.addCallback(self._claimed, id_space)

    @staticmethod
    def _claimed(reply, id_space):
        status, value = reply
        if status == "ok":
            return int(value)
        if status == "full":
            raise DirectoryFull(rules.full_message(id_space))
        raise StoreError(f"unexpected directory script reply: {reply!r}")
