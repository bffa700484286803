# -*- test-case-name: tests.tradechat.test_workers,tests.test_net -*-
"""
One listening socket shared by several worker processes.

The master binds the socket (L{SharedSocket}) from an ordinary ``--listen``
endpoint string and never accepts on it; each worker is spawned with the
descriptor among its ``childFDs`` and adopts it (L{AdoptedListener}), so
the kernel hands every new connection to whichever worker accepts first.
A connection waiting in the backlog when a worker dies stays there for the
others: with ``SO_REUSEPORT`` each worker's own socket would take its queue
down with it.
"""

from __future__ import annotations

import socket

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from marketplace.net import CountingFactory
from marketplace.tls import forward_secret_only


class _NeverAccepts(Factory):
    """The master's factory: it stops reading the port at once, so it builds nothing."""

    noisy = False

    def buildProtocol(self, addr):
        return None


class _PortService(Service):
    """Holds a listening port while it runs."""

    port = None

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


class SharedSocket(_PortService):
    """
    Binds and listens on C{description} when started, then stops reading it:
    the workers accept, the master only keeps the socket (and the port
    number, which a C{tcp:0} description chose) for their whole lives.
    """

    log = Logger()

    def __init__(self, description: str, reactor) -> None:
        self.description = description
        self._reactor = reactor

    def startService(self):
        super().startService()
        listening = endpoints.serverFromString(self._reactor, self.description).listen(
            _NeverAccepts())
        failures = []
        listening.addCallbacks(self._bound, failures.append)
        if failures:
            failures[0].raiseException()

    def _bound(self, port):
        port.stopReading()
        self.port = port
        self.log.info("{name} listening on {address}", name=self.name, address=self.address)

    @property
    def address(self) -> str:
        host = self.port.getHost()
        return f"{host.host}:{host.port}" if hasattr(host, "port") else str(host)

    def fileno(self) -> int:
        return self.port.fileno()


class AdoptedListener(_PortService):
    """
    Accepts on an inherited listening descriptor while it runs.  C{description}
    is the same ``--listen`` string the master bound: for an ``ssl:``
    endpoint the connections are wrapped in TLS here, with the context the
    string names.  Connections are counted in the factory's C{counters}, as
    a L{marketplace.net.Listener} counts them.
    """

    def __init__(self, fd: int, description: str, factory, reactor) -> None:
        self._fd = fd
        self._reactor = reactor
        self.factory = _tls_wrapped(
            description, CountingFactory(factory, factory.counters), reactor)

    def startService(self):
        super().startService()
        inherited = socket.socket(fileno=self._fd)
        family = inherited.family
        try:
            self.port = self._reactor.adoptStreamPort(self._fd, family, self.factory)
        finally:
            inherited.close()  # the port holds its own duplicate


def _tls_wrapped(description: str, factory, reactor):
    """
    C{factory} behind TLS when C{description} is an C{ssl:} string, with the
    same forward-secret-only context a L{marketplace.net.Listener} gets.
    """
    endpoint = forward_secret_only(endpoints.serverFromString(reactor, description))
    if isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        # The context the ssl: string built (narrowed above, in place);
        # Twisted keeps it on the endpoint.
        return TLSMemoryBIOFactory(endpoint._sslContextFactory, False, factory)
    return factory
