"""
Writing to a TCP socket at once instead of at the reactor's next poll.

Twisted's TCP transport buffers every C{write} and sends it when the next
poll reports the socket writable (twisted/twisted#5303).  For each write
that costs a registration for writing, an event dispatched through the
reactor, a second copy into the buffer and a deregistration.  A chat server
writing to a hundred connections in every reactor turn spent more on that
round trip than on the C{send} calls themselves.

L{ImmediateWriter} sends at once while the transport holds nothing for the
connection and hands the transport only what the kernel did not take.  To
know when the transport holds nothing again it registers the protocol as a
I{pull} producer: a TCP transport calls a pull producer's C{resumeProducing}
each time its buffer runs empty, which is exactly when sending at once is
safe again.  Nothing is ever sent past bytes the transport still holds, so
the byte stream keeps the order of the writes.

Only plain TCP connections are written at once.  Over TLS (whose transport
encrypts what it is given) and on transports without a socket (test
transports), every write goes to the transport, and the protocol is
registered as a streaming producer as usual.

Either way the writer tells its protocol when output backs up: L{paused}
is set once more than L{HIGH_WATER} bytes wait in the transport (in the
streaming case the transport says so through C{pauseProducing}), and
L{backlog} counts the bytes written since, so that the protocol can stop
reading requests and drop a peer that does not read.
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import ISSLTransport, ITCPTransport, ISystemHandle

HIGH_WATER = 64 * 1024
"""Bytes waiting in the transport past which output counts as backed up (as
Twisted's own C{bufferSize})."""


def plain_tcp_socket(transport) -> socket.socket | None:
    """The socket of C{transport} if it is a plain (not TLS) TCP connection."""
    if (ITCPTransport.providedBy(transport) and ISystemHandle.providedBy(transport)
            and not ISSLTransport.providedBy(transport)):
        handle = transport.getHandle()
        if isinstance(handle, socket.socket):
            return handle
    return None


class ImmediateWriter:
    """
    The one path by which a protocol writes to its transport.

    The protocol registers itself with L{register_producer} and forwards
    its producer calls: C{pauseProducing} to L{pause} and
    C{resumeProducing} to L{drained}; it calls L{release} before
    C{loseConnection} (a transport with a producer registered waits for that
    producer before closing).
    """

    def __init__(self, transport) -> None:
        self.transport = transport
        self._socket = plain_tcp_socket(transport)
        self.immediate = self._socket is not None
        self._held = 0
        self.paused = False
        self.backlog = 0

    def register_producer(self, producer) -> None:
        """
        Register C{producer} (the protocol) with the transport: as a pull
        producer, told each time the transport's buffer empties, when
        writing at once; else as a streaming one, told when the buffer
        passed its limit and when it drained.
        """
        self.transport.registerProducer(producer, not self.immediate)

    def write(self, data: bytes) -> None:
        if self._held == 0 and self.immediate:
            try:
                sent = self._socket.send(data)
            except OSError:
                # The kernel's buffer is full, the call was interrupted, or
                # the connection is failing: the transport takes the data
                # and, in the last case, meets the error itself and closes
                # the connection.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        if self.paused:
            self.backlog += len(data)
        elif self.immediate:
            self._held += len(data)
            if self._held > HIGH_WATER:
                self.paused = True
        self.transport.write(data)

    @property
    def queued(self) -> int:
        """
        Bytes written that may still wait in the transport.  When writing at
        once: what the transport was handed since it last drained.  In the
        streaming case the transport does not say what it holds: while paused,
        its limit plus the backlog; else nothing (it holds under its limit and
        is sending it).
        """
        if self.immediate:
            return self._held + self.backlog
        return HIGH_WATER + self.backlog if self.paused else 0

    def pause(self) -> None:
        """The transport's buffer passed its limit (streaming producer only)."""
        self.paused = True

    def drained(self) -> None:
        """The transport wrote out everything it held."""
        self._held = 0
        self.paused = False
        self.backlog = 0

    def release(self) -> None:
        """Unregister the producer, before closing the connection."""
        self.transport.unregisterProducer()
