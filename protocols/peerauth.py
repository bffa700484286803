# -*- test-case-name: tests.test_peerauth -*-
"""
Mutual authentication of a link between two of our own processes by a
shared secret: an HMAC challenge-response over nonces from both ends.

The exchange, before any byte of the link's own protocol::

    accepting side  -> MAGIC + server_nonce                      (4 + 32 bytes)
    connecting side -> client_nonce + HMAC(client, label, sn, cn) (32 + 32 bytes)
    accepting side  -> HMAC(server, label, cn, sn)                (32 bytes)

``HMAC`` is HMAC-SHA256 keyed with the shared secret over a direction word,
the link's ``label`` (``b"laptop-replica"``, ``b"market-service"``: a proof for
one kind of link is worthless on another) and both nonces.  Each side proves
knowledge of the secret over a nonce the *other* side chose just now, so a
recorded handshake cannot be replayed in either direction, and neither side
says anything about the secret to a peer that has not proved it.

:class:`Acceptor` and :class:`Connector` are sans-I/O: they take bytes and
return bytes to send, and raise :class:`AuthenticationFailed` on a wrong
proof or a malformed greeting.  :class:`AuthenticatingProtocol` runs one of
them in front of any Twisted protocol and hands the connection over, with
whatever bytes followed the handshake, once the peer has proved itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import attrs
from twisted.internet import defer, protocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python.failure import Failure
from zope.interface import alsoProvides

MAGIC = b"PAU1"
NONCE_SIZE = 32
PROOF_SIZE = 32
MIN_SECRET_SIZE = 16

_CHALLENGE_SIZE = len(MAGIC) + NONCE_SIZE
_ANSWER_SIZE = NONCE_SIZE + PROOF_SIZE


class AuthenticationFailed(Exception):
    """The peer sent a wrong proof or something that is no handshake."""


def _proof(secret: bytes, direction: bytes, label: bytes, first: bytes, second: bytes) -> bytes:
    message = direction + b"\0" + label + b"\0" + first + second
    return hmac.new(secret, message, hashlib.sha256).digest()


@attrs.frozen
class Step:
    """What one call of ``receive`` produced."""

    #: bytes to send to the peer now
    send: bytes = b""
    #: the peer has proved itself; the handshake is over
    done: bool = False
    #: bytes that arrived after the handshake: the link's own protocol
    leftover: bytes = b""


class _Side:
    def __init__(self, secret: bytes, label: bytes, nonce: bytes | None = None):
        if len(secret) < MIN_SECRET_SIZE:
            raise ValueError(f"a shared secret needs at least {MIN_SECRET_SIZE} bytes")
        self._secret = secret
        self._label = label
        self._nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
        self._buffer = b""
        self.done = False

    def _take(self, data: bytes, size: int) -> bytes | None:
        self._buffer += data
        if len(self._buffer) < size:
            return None
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def _finish(self, send: bytes = b"") -> Step:
        self.done = True
        leftover, self._buffer = self._buffer, b""
        return Step(send=send, done=True, leftover=leftover)


class Acceptor(_Side):
    """The accepting end: challenges first, then checks the answer."""

    def start(self) -> bytes:
        """The challenge to send as soon as the connection is made."""
        return MAGIC + self._nonce

    def receive(self, data: bytes) -> Step:
        if self.done:
            return Step(done=True, leftover=data)
        answer = self._take(data, _ANSWER_SIZE)
        if answer is None:
            return Step()
        client_nonce, proof = answer[:NONCE_SIZE], answer[NONCE_SIZE:]
        expected = _proof(self._secret, b"client", self._label, self._nonce, client_nonce)
        if not hmac.compare_digest(proof, expected):
            raise AuthenticationFailed("wrong proof of the shared secret")
        return self._finish(_proof(self._secret, b"server", self._label, client_nonce, self._nonce))


class Connector(_Side):
    """The connecting end: answers the challenge, then checks the acceptor's proof."""

    def __init__(self, secret: bytes, label: bytes, nonce: bytes | None = None):
        super().__init__(secret, label, nonce)
        self._server_nonce = None

    def start(self) -> bytes:
        return b""

    def receive(self, data: bytes) -> Step:
        if self.done:
            return Step(done=True, leftover=data)
        send = b""
        if self._server_nonce is None:
            challenge = self._take(data, _CHALLENGE_SIZE)
            if challenge is None:
                return Step()
            if challenge[:len(MAGIC)] != MAGIC:
                raise AuthenticationFailed("the peer sent no authentication challenge")
            self._server_nonce = challenge[len(MAGIC):]
            send = self._nonce + _proof(
                self._secret, b"client", self._label, self._server_nonce, self._nonce
            )
            data = b""
        proof = self._take(data, PROOF_SIZE)
        if proof is None:
            return Step(send=send)
        expected = _proof(self._secret, b"server", self._label, self._nonce, self._server_nonce)
        if not hmac.compare_digest(proof, expected):
            raise AuthenticationFailed("the peer does not know the shared secret")
        return self._finish(send)


class AuthenticatingProtocol(protocol.Protocol):
    """
    Runs a handshake (an :class:`Acceptor` or a :class:`Connector`) in front
    of ``inner``, which sees nothing of the connection until the peer has
    proved itself: then ``inner.makeConnection`` is called with the real
    transport (so its writes, producers and closes cost nothing extra) and
    fed the bytes that followed the handshake.  Only reads and the
    connection's end still pass through this object.

    ``preamble`` goes out on connect, before the handshake's own bytes.
    A wrong proof, a malformed greeting, or a handshake not finished within
    ``timeout`` seconds closes the connection and calls ``on_refused(why)``
    (to count it); ``whenAuthenticated()`` fires with ``inner`` once the peer
    has proved itself, or fails with the reason it did not.
    """

    def __init__(self, inner, handshake: Acceptor | Connector, clock, timeout: float,
                 on_refused=None, preamble: bytes = b""):
        self.inner = inner
        self._preamble = preamble
        self._handshake = handshake
        self._clock = clock
        self._timeout = timeout
        self._on_refused = on_refused
        self._timer = None
        self._refused = False
        self._failure = None
        self._waiters: list[defer.Deferred] = []
        if IHalfCloseableProtocol.providedBy(inner):
            alsoProvides(self, IHalfCloseableProtocol)

    def connectionMade(self):
        self._timer = self._clock.callLater(self._timeout, self._refuse, "handshake timed out")
        greeting = self._preamble + self._handshake.start()
        if greeting:
            self.transport.write(greeting)

    def dataReceived(self, data):
        try:
            step = self._handshake.receive(data)
        except AuthenticationFailed as error:
            self._refuse(str(error))
            return
        if step.send:
            self.transport.write(step.send)
        if step.done:
            self._authenticated(step.leftover)

    def _authenticated(self, leftover: bytes) -> None:
        self._cancel_timer()
        inner = self.inner
        # From now on reads go straight to the link's own protocol.
        self.dataReceived = inner.dataReceived
        inner.makeConnection(self.transport)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(inner)
        if leftover and self.transport is not None and not getattr(self.transport, "disconnecting", False):
            inner.dataReceived(leftover)

    def _refuse(self, why: str) -> None:
        self._cancel_timer()
        if self._refused:
            return
        self._refused = True
        if self._on_refused is not None:
            self._on_refused(why)
        self.transport.abortConnection()
        self._fail(why)

    def _fail(self, why: str) -> None:
        self._failure = Failure(AuthenticationFailed(why))
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(self._failure)

    def whenAuthenticated(self) -> defer.Deferred:
        """
        A Deferred firing with the inner protocol once the peer has proved
        itself, or failing with L{AuthenticationFailed}.
        """
        if self._handshake.done:
            return defer.succeed(self.inner)
        if self._failure is not None:
            return defer.fail(self._failure)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def readConnectionLost(self):
        if self._handshake.done:
            self.inner.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self):
        if self._handshake.done:
            self.inner.writeConnectionLost()

    def connectionLost(self, reason=Failure(ConnectionDone())):
        self._cancel_timer()
        if self._handshake.done:
            self.inner.connectionLost(reason)
        elif not self._refused:
            self._refused = True
            self._fail("connection lost during the handshake")


class AuthenticatingFactory(protocol.Factory):
    """
    Wraps a server factory so that every accepted connection proves the
    shared secret before ``wrapped`` builds its protocol for it sees a byte.
    """

    noisy = False

    def __init__(self, wrapped, secret: bytes, label: bytes, clock, timeout: float = 10.0,
                 on_refused=None):
        self.wrapped = wrapped
        self._secret = secret
        self._label = label
        self._clock = clock
        self._timeout = timeout
        self._on_refused = on_refused

    def doStart(self):
        self.wrapped.doStart()

    def doStop(self):
        self.wrapped.doStop()

    def buildProtocol(self, addr):
        inner = self.wrapped.buildProtocol(addr)
        if inner is None:
            return None
        return AuthenticatingProtocol(
            inner, Acceptor(self._secret, self._label), self._clock, self._timeout,
            self._on_refused,
        )


def connecting(inner, secret: bytes, label: bytes, clock, timeout: float = 10.0,
               on_refused=None, preamble: bytes = b"") -> AuthenticatingProtocol:
    """
    The protocol to connect in place of ``inner`` on an authenticated link.
    ``preamble`` is sent before the handshake: for a port that serves
    several kinds of connection, the bytes that say which kind this is
    (the laptop wire's role word).
    """
    return AuthenticatingProtocol(
        inner, Connector(secret, label), clock, timeout, on_refused, preamble
    )
