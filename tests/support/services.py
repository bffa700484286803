"""
Starting services under test and finding the ports they bound.
"""

from __future__ import annotations

import socket

from twisted.application.service import IServiceCollection
from twisted.internet import defer, protocol


def start_service(testcase, service):
    """Start ``service`` now and stop it when ``testcase`` cleans up."""
    service.startService()
    testcase.addCleanup(service.stopService)
    return service


def listeners_of(service) -> list:
    """Every ``Listener`` in a service tree, depth first."""
    from marketplace.net import Listener
    if isinstance(service, Listener):
        return [service]
    if IServiceCollection.providedBy(service):
        return [found for child in service for found in listeners_of(child)]
    return []


def listening_port(listener):
    """A Deferred firing with the TCP port number ``listener`` bound."""
    return listener.whenListening().addCallback(lambda port: port.getHost().port)


def free_ports(count: int) -> list[int]:
    """
    Ports the OS says are free on loopback now, all different: for programs
    whose parts find each other on fixed ports, so cannot listen on port 0.

    The ports are closed again before this returns, so another process may
    take one before the program binds it: a caller must start the program
    again on fresh ports when it fails because an address is in use.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class HalfClosingClient(protocol.Protocol):
    """
    Send ``request``, shut down the sending side as ``nc -N`` does, and
    collect the reply until the server closes: ``closed`` fires with the
    bytes received, ``reason`` is why the connection ended.
    """

    def __init__(self, request: bytes):
        self.request = request
        self.received = b""
        self.reason = None
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.request)
        self.transport.loseWriteConnection()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.reason = reason
        self.closed.callback(self.received)
