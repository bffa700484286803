# -*- test-case-name: tests.store.test_redis_sentinel -*-
"""
Finding the primary of a Sentinel-managed Redis before each connection.

txredisapi has Sentinel support (C{txredisapi.Sentinel}), but it does not
fit the store: it keeps a connection open to every sentinel, asks them
``SENTINEL MASTERS`` with a ten-second discovery timeout of its own (not the
store's), always connects to the primary over plain TCP (no ``rediss``),
and its connections are txredisapi's own protocol, not the store's
pipelined one.  Its shape is kept: an endpoint that asks before every
connection attempt, so txredisapi's reconnecting pool follows a failover by
itself, and a role check before a connection is used (L{connection}).

Each attempt asks the sentinels in the URL's order, each on a short-lived
connection with the store timeout split between them, and takes the first
answer: one sentinel down, or slow, costs an attempt at most its share of
the timeout and changes nothing else.  A primary that turns out not to be a
primary (a sentinel's stale view) is refused by the connection's ``ROLE``
check and the next attempt asks again.
"""

from __future__ import annotations

import hiredis
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from marketplace.store.address import RedisAddress


class NoPrimaryKnown(Exception):
    """No sentinel named a primary for the service."""


class _OneCommand(protocol.Protocol):
    """Send one command, fire with its reply, hang up."""

    def __init__(self, command):
        self.command = command
        self.reply = defer.Deferred()
        self._reader = hiredis.Reader(encoding="utf-8")

    def connectionMade(self):
        self.transport.write(hiredis.pack_command(self.command))

    def dataReceived(self, data):
        self._reader.feed(data)
        reply = self._reader.gets()
        if reply is not False and not self.reply.called:
            self.transport.loseConnection()
            self.reply.callback(reply)

    def connectionLost(self, reason):
        if not self.reply.called:
            self.reply.errback(reason)


def ask_once(endpoint, command, timeout: float, reactor) -> defer.Deferred:
    """One command on a connection of its own, all within ``timeout`` seconds."""
    one = _OneCommand(command)
    connecting = endpoint.connect(protocol.Factory.forProtocol(lambda: one))

    def connected(proto):
        return one.reply

    def give_up(result):
        # A reply that never came leaves the connection open: close it.
        if one.transport is not None and not one.reply.called:
            one.transport.abortConnection()
        return result
    d = connecting.addCallback(connected)
    d.addTimeout(timeout, reactor)
    return d.addBoth(give_up)


@implementer(IStreamClientEndpoint)
class SentinelPrimaryEndpoint:
    """
    Connects to whichever server the sentinels now call the primary of
    C{address.service}.  C{endpoint_for(address)} builds the endpoint of a
    given server (TCP or TLS, as the URL says).
    """

    log = Logger()

    def __init__(self, address: RedisAddress, endpoint_for, timeout: float, reactor):
        self._address = address
        self._endpoint_for = endpoint_for
        self._timeout = timeout
        self._reactor = reactor
        #: the primary the last successful look-up found
        self.primary: tuple[str, int] | None = None

    @defer.inlineCallbacks
    def find_primary(self):
        """The primary's ``(host, port)`` from the first sentinel that knows it."""
        share = self._timeout / len(self._address.sentinels)
        for host, port in self._address.sentinels:
            sentinel = self._endpoint_for(self._address.primary_at(host, port))
            try:
                reply = yield ask_once(sentinel, ("SENTINEL", "get-master-addr-by-name",
                                                  self._address.service), share, self._reactor)
            except Exception as error:  # down, slow or refusing: ask the next one
                self.log.debug("sentinel {host}:{port} did not answer: {error}",
                               host=host, port=port, error=error)
                continue
            if isinstance(reply, list) and len(reply) == 2:
                found = (reply[0], int(reply[1]))
                if found != self.primary:
                    self.log.info("the sentinels name {host}:{port} the primary of {service}",
                                  host=found[0], port=found[1], service=self._address.service)
                self.primary = found
                return found
        raise NoPrimaryKnown(f"no sentinel of {self._address} named a primary")

    def connect(self, protocol_factory):
        d = self.find_primary()
        return d.addCallback(lambda primary: self._endpoint_for(
            self._address.primary_at(*primary)).connect(protocol_factory))
