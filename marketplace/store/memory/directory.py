"""
The name -> user id directory held in this process.

A name already claimed costs one dict lookup, which keeps logins on the
embedded store as cheap as they were with a private table.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store import directory_rules as rules
from marketplace.store.errors import DirectoryFull
from marketplace.store.interfaces import IDirectory


@implementer(IDirectory)
class MemoryDirectory:
    def __init__(self) -> None:
        #: ``(id space, name) -> id``: the lookup every known login makes.
        self._ids: dict[tuple[int, str], int] = {}
        #: Per id space, ``id -> name`` for every id taken (the reserved id
        #: included, under the empty name, so probing skips it for free).
        self._names: dict[int, dict[int, str]] = {}

    def user_id_for(self, name, id_space):
        user_id = self._ids.get((id_space, name))
        if user_id is not None:
            return defer.succeed(user_id)
        try:
            return defer.succeed(self._claim(name, id_space))
        except (DirectoryFull, TypeError, ValueError):
            return defer.fail()

    def _claim(self, name, id_space) -> int:
        rules.check_name(name)
        rules.check_id_space(id_space)
        names = self._names.get(id_space)
        if names is None:
            names = self._names[id_space] = {}
            if rules.reserved_in(id_space):
                names[rules.RESERVED_ID] = ""
        if len(names) >= id_space:
            raise DirectoryFull(rules.full_message(id_space))
        user_id = rules.home_slot(name, id_space)
        while user_id in names:
            user_id = (user_id + 1) % id_space
        names[user_id] = name
        self._ids[(id_space, name)] = user_id
        return user_id
