"""
The name -> user id directory held in this process.

A name already claimed for good costs one dict lookup, which keeps logins
on the embedded store as cheap as they were with a private table.  Leased
claims are kept with their expiry, and a heap of expiries lets each call
drop every claim that has ended before it looks at the table.
"""

from __future__ import annotations

import heapq

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store import directory_rules as rules
from marketplace.store.errors import DirectoryFull
from marketplace.store.interfaces import IDirectory


@implementer(IDirectory)
class MemoryDirectory:
    def __init__(self, clock) -> None:
        self._clock = clock
        #: ``(id space, name) -> id``: the lookup every known login makes.
        self._ids: dict[tuple[int, str], int] = {}
        #: Per id space, ``id -> name`` for every id taken (the reserved id
        #: included, under the empty name, so probing skips it for free).
        self._names: dict[int, dict[int, str]] = {}
        #: Per id space, ``name -> expiry`` of the leased claims, and a heap
        #: of ``(expiry, name)`` (renewals leave stale entries, skipped).
        self._leases: dict[int, dict[str, float]] = {}
        self._expiries: dict[int, list[tuple[float, str]]] = {}

    def user_id_for(self, name, id_space, lease=None, lease_limit=None):
        user_id = self._ids.get((id_space, name))
        if user_id is not None and name not in self._leases.get(id_space, ()):
            return defer.succeed(user_id)
        try:
            rules.check_lease(lease, lease_limit)
            return defer.succeed(self._claim(name, id_space, lease, lease_limit))
        except (DirectoryFull, TypeError, ValueError):
            return defer.fail()

    def _claim(self, name, id_space, lease, lease_limit) -> int:
        rules.check_name(name)
        rules.check_id_space(id_space)
        now = self._clock.seconds()
        self._end_expired(id_space, now)
        leases = self._leases.setdefault(id_space, {})
        user_id = self._ids.get((id_space, name))
        if user_id is not None:
            if lease is None:
                del leases[name]
            else:
                self._lease(id_space, name, now + lease)
            return user_id
        names = self._names.get(id_space)
        if names is None:
            names = self._names[id_space] = {}
            if rules.reserved_in(id_space):
                names[rules.RESERVED_ID] = ""
        if lease is not None and lease_limit is not None and len(leases) >= lease_limit:
            raise DirectoryFull(rules.leases_full_message(lease_limit))
        if len(names) >= id_space:
            raise DirectoryFull(rules.full_message(id_space))
        user_id = rules.home_slot(name, id_space)
        while user_id in names:
            user_id = (user_id + 1) % id_space
        names[user_id] = name
        self._ids[(id_space, name)] = user_id
        if lease is not None:
            self._lease(id_space, name, now + lease)
        return user_id

    def _lease(self, id_space, name, expiry) -> None:
        self._leases[id_space][name] = expiry
        heapq.heappush(self._expiries.setdefault(id_space, []), (expiry, name))

    def _end_expired(self, id_space, now) -> None:
        """Forget every leased claim of ``id_space`` that ended by ``now``."""
        heap = self._expiries.get(id_space)
        if not heap:
            return
        leases = self._leases[id_space]
        while heap and heap[0][0] <= now:
            expiry, name = heapq.heappop(heap)
            if leases.get(name) == expiry:
                del leases[name]
                del self._names[id_space][self._ids.pop((id_space, name))]
