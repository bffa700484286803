# -*- test-case-name: tests.test_outputbudget -*-
"""
One bound on the output a process holds for all its connections.

A per-connection cap alone bounds each reader, not their sum: 400 members
of a room that never read, each allowed a few MiB of queued pushes, hold
over a GiB between them while one sender chats.  An L{OutputBudget} adds up
what every connection has queued (each reports its own figure whenever it
changes) and, once the sum passes the limit, drops connections, the one
with the most queued output first, until the sum is back within it.  The
connection with the most queued is the reader furthest behind the stream
everybody gets, and dropping it frees the most memory for the fewest
disconnects.

Connections are anything with a C{shed_output()} method that closes them at
once and frees what they hold; the budget knows nothing of sockets or
reactors.
"""

from __future__ import annotations

from operator import itemgetter


class OutputBudget:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the output budget must be a positive number of bytes")
        self.limit = limit
        self.total = 0
        self._queued: dict[object, int] = {}

    def update(self, connection, queued: int) -> None:
        """C{connection} now has C{queued} bytes waiting; shed readers if over the limit."""
        previous = self._queued.get(connection, 0)
        if queued == previous:
            return
        if queued:
            self._queued[connection] = queued
        else:
            del self._queued[connection]
        self.total += queued - previous
        if self.total > self.limit:
            self._shed()

    def forget(self, connection) -> None:
        """C{connection} closed: what it held no longer counts."""
        self.total -= self._queued.pop(connection, 0)

    def _shed(self) -> None:
        by_size = sorted(self._queued.items(), key=itemgetter(1), reverse=True)
        for connection, queued in by_size:
            if self.total <= self.limit:
                return
            self.forget(connection)
            connection.shed_output()
