"""
A connection that sends whatever a test writes and keeps whatever comes
back, for the tests that play a hostile or broken peer on real sockets.
"""

from twisted.internet import defer, protocol


class RawClient(protocol.Protocol):
    """``closed`` fires with every byte received once the connection ends."""

    def __init__(self):
        self.received = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(self.received)
