# -*- test-case-name: tests.store.test_redis_outage -*-
"""
A Redis outage in the log as two lines, one when it starts and one when it
ends, instead of a line per reconnection attempt.

txredisapi reconnects through Twisted's ``ClientService``, which logs
``Scheduling retry N to connect ... in 0.1153... seconds`` at every attempt:
several lines a second for as long as Redis is down.  L{QuietReconnecting}
is txredisapi's factory with that logger silenced below warnings, and with
an L{OutageLog} told of every failed attempt (``retryDelay``, which
``ClientService`` asks before each retry) and of every connection that
becomes usable (``addConnection``).
"""

from __future__ import annotations

import datetime

import txredisapi
from twisted.application.internet import ClientService
from twisted.logger import Logger, LogLevel, globalLogPublisher

from marketplace.metrics import Counters


def _warnings_only(event) -> None:
    if event.get("log_level", LogLevel.info) >= LogLevel.warn:
        globalLogPublisher(event)


class _QuietClientService(ClientService):
    """A ClientService that logs its warnings and errors, not its retry schedule."""

    _log = Logger(observer=_warnings_only)


class _QuietSlot(txredisapi._PoolSlot):
    """txredisapi's pool slot over a L{_QuietClientService}."""

    def __init__(self, factory, endpoint, reconnect=True):
        super().__init__(factory, endpoint, reconnect)
        self.service = _QuietClientService(
            endpoint, txredisapi._SlotFactory(factory, self),
            retryPolicy=self._retryDelay, prepareConnection=self._prepareConnection)


class OutageLog:
    """
    Tells when Redis stops answering and when it is back, once each:
    C{began()} at every failed attempt or lost connection, C{ended()} at
    every usable connection.  Outages are counted in C{counters}
    (C{event}, by default C{redis_outages}) and C{down} says whether one
    lasts now.

    C{began} and C{ended} are the two lines (format strings given C{what},
    C{since} and, for C{ended}, C{seconds}; C{began(**fields)} adds its
    own), so another condition that comes and goes -- replicas that do not
    acknowledge writes -- is logged the same way.
    """

    log = Logger()

    def __init__(self, what: str, clock, counters: Counters | None = None, *,
                 event: str = "redis_outages",
                 began: str = ("{what} is unreachable since {since}; reconnecting every second at "
                               "most, store calls fail as unavailable meanwhile"),
                 ended: str = "{what} is reachable again after {seconds:.1f}s (unreachable since {since})"):
        self.what = what
        self.counters = Counters() if counters is None else counters
        self._clock = clock
        self._event = event
        self._began = began
        self._ended = ended
        self.since: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def began(self, **fields) -> None:
        if self.since is not None:
            return
        self.since = self._clock.seconds()
        self.counters.increment(self._event)
        self.log.warn(self._began, what=self.what, since=_utc(self.since), **fields)

    def ended(self) -> None:
        if self.since is None:
            return
        since, self.since = self.since, None
        self.log.info(self._ended, what=self.what, seconds=self._clock.seconds() - since,
                      since=_utc(since))


def _utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class QuietReconnecting(txredisapi.RedisFactory):
    """
    txredisapi's reconnecting factory without a log line per attempt,
    reporting to C{outage} (an L{OutageLog}, or None) instead.
    """

    outage: OutageLog | None = None

    def startConnecting(self, endpoint):
        for _ in range(self.poolsize):
            slot = _QuietSlot(self, endpoint, self.reconnect)
            self.slots.append(slot)
            slot.start()

    def retryDelay(self, attempt):
        if self.outage is not None:
            self.outage.began()
        return super().retryDelay(attempt)

    def addConnection(self, conn):
        super().addConnection(conn)
        if self.outage is not None and conn in self.pool:
            self.outage.ended()
