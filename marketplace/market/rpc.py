"""
Client for envelope services: pooled, pipelined, timed out, retried.

Front ends call the DB services and payments through ``ServiceClient``; the
CLIs call the front ends through it.  Calls go over a small pool of
persistent length-prefixed connections, opened on demand: a call is
pipelined on the first connection with fewer than ``pipeline_depth`` calls in
flight, else on the least busy one while the pool grows in the background (if
it has room); it waits for a connection only when there is none.  Filling a
connection before spreading to the next lets one read and one write carry
many calls under load: on the marketplace benchmark, spreading calls over
every pooled connection cost about 15% more CPU per user operation in the
front ends and the DB services.  Nothing is cached about a dead peer, so the
client recovers by itself as soon as the service is back.

A caller that only passes a reply's payload on asks for it ``encoded``: it
then comes back as an ``EncodedPayload``, without being decoded (see
``protocols.envelope.parse_reply_encoded``).

Failures a caller can act on:

* an error reply raises the matching ``marketplace.market.errors`` class;
* no connection, a lost connection or no reply within ``timeout`` raise
  ``ServiceUnavailable``.

Links to our own services are authenticated when the client has the
deployment's shared secret (``secret``, from ``--service-secret``): every
pooled connection runs the ``protocols.peerauth`` handshake (label
:data:`SERVICE_LINK`) before its first call, and a connection whose service
does not prove the secret is never used.  The CLIs talk to the front ends,
which take anyone, without one.

Retries: a call that never reached the service (the connection could not be
opened or authenticated) is always retried; a call that was sent is retried
only when the caller says it is ``idempotent``, because its effect may
already have happened.  Error replies are never retried.
"""

import functools
from collections import deque

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from marketplace.market.errors import ServiceUnavailable, error_for_code
from marketplace.net import client_endpoint, connect, describe_connection_failure
from protocols.envelope import (
    EnvelopeError,
    ErrorReply,
    encode_request,
    parse_reply,
    parse_reply_encoded,
)
from protocols.envelope_server import no_delay
from protocols.jsonframe import MAX_FRAME_LIMIT, Frame, FrameDecoder, Framing, encode_frame
from protocols.peerauth import connecting

_log = Logger()

#: The peerauth label of a front end's link to customer-db, product-db or payments.
SERVICE_LINK = b"market-service"


class _NotSent(Exception):
    """The request never left this process, so any call may be retried."""


class _Lost(Exception):
    """The request was sent but no reply will come on this connection."""


class _Call:
    """A sent request waiting for its reply, with its reply deadline and parser."""

    __slots__ = ("deferred", "timer", "parse")

    def __init__(self, deferred, timer, parse):
        self.deferred = deferred
        self.timer = timer
        self.parse = parse


class _ClientProtocol(Protocol):
    """
    One pooled connection: pipelined requests, replies matched in order.

    A call that gets no reply in time, or that its caller cancels, keeps its
    place in the order (its late reply is discarded) and retires the
    connection from the pool, which closes once nothing but abandoned calls
    is left on it.  Only the deadline counts as ``_Lost`` (and may be
    retried); a caller's cancel ends the call with ``CancelledError``.
    """

    def __init__(self, max_frame, clock):
        self._decoder = FrameDecoder(max_frame, Framing.LENGTH_PREFIXED)
        self._clock = clock
        self._pending = deque()  # _Call, or None for an abandoned call
        self.retired = False
        self.lost = False
        self.on_lost = defer.Deferred()

    def connectionMade(self):
        no_delay(self.transport)

    @property
    def load(self):
        return len(self._pending)

    def send(self, body, timeout, parse):
        """
        Deferred[Reply | ErrorReply] from ``parse(reply_frame)``; fails with
        ``_Lost`` after ``timeout`` s.
        """
        d = defer.Deferred(canceller=self._abandon)
        timer = self._clock.callLater(timeout, self._expire, d, timeout)
        self._pending.append(_Call(d, timer, parse))
        self.transport.write(encode_frame(Framing.LENGTH_PREFIXED, body))
        return d

    def _expire(self, d, timeout):
        self._abandon(d)
        d.errback(_Lost(f"no reply within {timeout:g} s"))

    def _abandon(self, d):
        self.retired = True
        for index, call in enumerate(self._pending):
            if call is not None and call.deferred is d:
                if call.timer.active():
                    call.timer.cancel()
                self._pending[index] = None
        if all(call is None for call in self._pending):
            self.transport.loseConnection()

    def dataReceived(self, data):
        for event in self._decoder.feed(data):
            if not isinstance(event, Frame) or not self._pending:
                self._broken("an unexpected or oversize frame")
                return
            call = self._pending[0]
            try:
                reply = (parse_reply if call is None else call.parse)(event.data)
            except EnvelopeError as e:
                self._broken(e.message)
                return
            self._pending.popleft()
            if call is not None:
                call.timer.cancel()
                call.deferred.callback(reply)
        if self.retired and not self._pending:
            self.transport.loseConnection()

    def _broken(self, why):
        _log.warn("closing a connection to a peer that sent {why}", why=why)
        self.retired = True
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.lost = True
        pending, self._pending = self._pending, deque()
        for call in pending:
            if call is not None:
                call.timer.cancel()
                call.deferred.errback(_Lost(describe_connection_failure(reason)))
        self.on_lost.callback(None)


class ServiceClient:
    """
    Calls one service's apis: ``call(api, payload, session_id=None, idempotent=False)``.

    ``endpoint_description`` is a Twisted client endpoint string
    (``tcp:host:port``, ``tls:host:port:...``).  ``timeout`` bounds connecting
    and each attempt's reply; ``retries`` is how many extra attempts a
    retriable failure gets, with a short growing pause between them.
    ``pipeline_depth`` is how many calls one connection carries before the
    next pooled connection is used; the default is half of what a DB service
    runs at once per connection, so while the pool has room the service never
    has to pause reading a connection.  With ``secret`` every connection
    proves it (and checks the service's proof) before carrying a call.
    """

    def __init__(
        self,
        endpoint_description,
        pool_size=4,
        timeout=2.0,
        retries=2,
        reactor=None,
        *,
        max_frame=MAX_FRAME_LIMIT,
        retry_delay=0.05,
        pipeline_depth=32,
        secret=None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.endpoint_description = endpoint_description
        self.pool_size = pool_size
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.pipeline_depth = pipeline_depth
        self.max_frame = max_frame
        self._secret = secret
        self._reactor = reactor
        client_endpoint(endpoint_description, reactor)  # a bad description fails here, not mid-call
        self._connections = []
        self._connecting = False  # one connection is opened at a time
        self._connect_waiters = []
        self._closing = False

    def call(self, api, payload, session_id=None, idempotent=False, encoded=False):
        """
        Deferred[(session_id, payload)], the payload an ``EncodedPayload`` if
        ``encoded``; see the module docstring for failures.
        """
        try:
            body = encode_request(api, session_id, payload)
        except (TypeError, ValueError):
            return defer.fail()
        parse = functools.partial(parse_reply_encoded, api=api) if encoded else parse_reply
        return self._attempt(api, body, parse, idempotent, 0)

    def _attempt(self, api, body, parse, idempotent, attempt):
        connection = self._ready_connection()
        if connection is not None:
            d = self._send(connection, body, parse)
        else:
            d = self._new_connection().addCallback(self._send, body, parse)
        return d.addCallbacks(_unwrap, self._retry_or_fail,
                              errbackArgs=(api, body, parse, idempotent, attempt))

    def _retry_or_fail(self, failure, api, body, parse, idempotent, attempt):
        if not failure.check(_NotSent, _Lost):
            return failure
        retriable = failure.check(_NotSent) or idempotent
        if retriable and attempt < self.retries and not self._closing:
            delay = self.retry_delay * (2**attempt)
            return deferLater(self._reactor, delay, self._attempt, api, body, parse, idempotent,
                              attempt + 1)
        raise ServiceUnavailable(
            f"{api}: service at {self.endpoint_description} is unavailable "
            f"({failure.getErrorMessage()})"
        )

    def _send(self, connection, body, parse):
        if connection.lost:
            raise _NotSent("connection closed before sending")
        return connection.send(body, self.timeout, parse)

    def _ready_connection(self):
        """
        The first pooled connection with room in its pipeline; else the least
        busy (growing the pool if it has room); else None.
        """
        if self._closing:
            return None
        best = None
        usable = 0
        for connection in self._connections:
            if connection.retired or connection.lost:
                continue
            if connection.load < self.pipeline_depth:
                return connection
            usable += 1
            if best is None or connection.load < best.load:
                best = connection
        if best is not None and usable < self.pool_size and not self._connecting:
            self._open()  # grow the pool; meanwhile pipeline on the least busy
        return best

    def _new_connection(self):
        """Deferred[_ClientProtocol] once the connection being opened is ready."""
        if self._closing:
            return defer.fail(_NotSent("client closed"))
        waiter = defer.Deferred()
        self._connect_waiters.append(waiter)
        if not self._connecting:
            self._open()
        return waiter

    def _open(self):
        """Open one more pooled connection and hand it to everyone waiting for one."""
        self._connecting = True
        connection = _ClientProtocol(self.max_frame, self._reactor)
        if self._secret is None:
            d = connect(self.endpoint_description, connection, self.timeout, self._reactor)
        else:
            link = connecting(connection, self._secret, SERVICE_LINK, self._reactor, self.timeout)
            d = connect(self.endpoint_description, link, self.timeout, self._reactor)
            d.addCallback(lambda _: link.whenAuthenticated())

        def opened(_):
            if self._closing:
                connection.transport.loseConnection()
                return defer.fail(_NotSent("client closed"))
            self._connections.append(connection)
            connection.on_lost.addCallback(lambda _: self._connections.remove(connection))
            return connection

        def failed(failure):
            return defer.fail(_NotSent(f"cannot connect: {describe_connection_failure(failure)}"))

        def hand_out(result):
            self._connecting = False
            waiters, self._connect_waiters = self._connect_waiters, []
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        d.addCallbacks(opened, failed)
        d.addBoth(hand_out)

    def close(self):
        """Close every connection; Deferred fires when all are closed."""
        self._closing = True
        closing = [c.on_lost for c in self._connections]
        for connection in list(self._connections):
            connection.transport.loseConnection()
        return defer.gatherResults(closing).addCallback(lambda _: None)


def _unwrap(reply):
    if isinstance(reply, ErrorReply):
        raise error_for_code(reply.code, reply.message)
    return reply.session_id, reply.payload
