# -*- test-case-name: tests.laptop.test_server -*-
"""
Twisted protocols for the laptop-order wire: the server side of every
accepted connection (customers and replica links) and the outbound link a
replica keeps open to each peer.  Framing and dispatch only: customer
requests go to a ``desk`` (``handle(request, engineer_id, respond)``, which
calls ``respond(reply_bytes)`` once),
replica messages to a ``replica_inbox`` (``received(sender, message)``,
``lost(sender)``, ``knows(sender)``).

With a shared secret, a replica link proves it (``protocols.peerauth``,
right after the role word) before any of its frames is read, and every
message on it must name the replica its ``Hello`` named.
"""

from collections import deque
from functools import partial

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.logger import Logger
from zope.interface import implementer

from protocols.discipline import Discipline, HalfCloseable
from protocols.laptop import (
    CLOSE_CUSTOMER_ID,
    REPLICA_LINK_LABEL,
    ROLE_CUSTOMER,
    ROLE_LEGACY_REPLICATION,
    ROLE_REPLICA,
    CustomerRequest,
    FrameTooLarge,
    Hello,
    ProtocolError,
    RoleDeclared,
    ServerDecoder,
    claimed_sender,
    encode_replica_message,
    encode_role,
)
from protocols.immediate import ImmediateWriter
from protocols.peerauth import Acceptor, AuthenticationFailed

#: pipelined requests a customer may have unanswered before we stop reading
MAX_PIPELINE = 1024

#: seconds a customer connection may stay silent with nothing owed to it
DEFAULT_IDLE_TIMEOUT = 300.0

#: why a listener refuses a role it does not serve (counter suffixes)
_REFUSED_ROLES = {
    ROLE_CUSTOMER: "customer_on_replica_port",
    ROLE_LEGACY_REPLICATION: "legacy_replication",
    ROLE_REPLICA: "replica_on_customer_port",
}


def set_no_delay(transport) -> None:
    """
    Replies and replication messages are small and latency-bound: never let
    Nagle hold one back waiting for a delayed ACK (TCP transports only).
    """
    if ITCPTransport.providedBy(transport):
        transport.setTcpNoDelay(True)


@implementer(IPushProducer)
class LaptopServerProtocol(HalfCloseable, protocol.Protocol):
    """
    On a customer connection this is the transport's producer, and replies
    go through an ``ImmediateWriter``: on plain TCP they are sent at once,
    not at the reactor's next poll (a write through the transport costs a
    registration for writing, a reactor event and a deregistration, more
    than the ``send`` itself).  It stops reading requests while the replies
    already written back up in the transport (a customer that sends but
    never reads), as it does while ``MAX_PIPELINE`` requests are
    unanswered, so what is buffered for one customer stays bounded by both.

    Two timers of the shared discipline (L{protocols.discipline}): while a
    message (or a replica's handshake) is incomplete, ``partial_timeout``
    from the last read; on a customer connection otherwise
    ``idle_timeout`` from the last read.  Neither runs while reading is
    stopped, and the idle one not while a request is unanswered: a
    customer that waits for replies, or reads them slowly, is not idle.
    A half-close is answered in full before the close.
    """

    log = Logger()

    def __init__(self, factory, engineer_id: int):
        self.factory = factory
        self.engineer_id = engineer_id
        self._decoder = ServerDecoder()
        self._replies = deque()
        #: reading is stopped because too many requests are unanswered
        self._backlogged = False
        self._closing = False
        self._peer_id = None
        #: a replica link's shared-secret handshake, until the peer proved it
        self._handshake = None
        #: the role word of a replica link was just read: what followed it
        #: is the handshake's, or the link's first frames
        self._after_replica_role = False
        #: replies that became ready while a batch of requests is being
        #: decoded go out in one write at the end of the batch
        self._held = None

    def connectionMade(self):
        self.factory.connections.add(self)
        set_no_delay(self.transport)
        self._writer = ImmediateWriter(self.transport)
        discipline = self.discipline = Discipline(
            self.transport, self.factory.clock, self.factory.counters)
        self._partial_timer = discipline.timer(self.factory.partial_timeout, self._timed_out)
        self._idle_timer = discipline.timer(self.factory.idle_timeout, self._timed_out, idle=True)
        self._partial_timer.start()

    def dataReceived(self, data):
        if self._handshake is not None:
            data = self._authenticate(data)
            if not data:
                self._rearm()
                return
        try:
            events = self._decoder.feed(data)
        except ProtocolError as error:
            self._reject(error.reason)
            return
        self._held = []
        try:
            for event in events:
                if self._closing:
                    break
                kind = type(event)
                if kind is CustomerRequest:
                    self._customer_request(event)
                elif kind is RoleDeclared:
                    self._role(event.role)
                elif self._decoder.role == ROLE_REPLICA:
                    self._replica_message(event)
        finally:
            self._write_held()
            self._held = None
        if self._closing:
            return
        if self._after_replica_role:
            self._after_replica_role = False
            rest = self._decoder.take_buffered()
            if rest:
                self.dataReceived(rest)
                return
        self._rearm()

    def _rearm(self) -> None:
        """Restart the timer for what the connection waits for now."""
        if self._closing:
            return
        if self._handshake is not None or self._decoder.mid_message:
            # Every read of a message still incomplete restarts the countdown.
            self._idle_timer.stop()
            self._partial_timer.start()
        elif self._decoder.role == ROLE_CUSTOMER:
            self._partial_timer.stop()
            self._idle_timer.start()
        else:
            self._partial_timer.stop()
            self._idle_timer.stop()

    def _reject(self, reason: str) -> None:
        self.factory.counters.increment("laptop_rejected_" + reason)
        self.log.info(
            "closing connection from {peer}: {reason}", peer=self.transport.getPeer(), reason=reason
        )
        self._closing = True
        self.discipline.close()

    def _role(self, role: int) -> None:
        if role not in self.factory.roles:
            # Our replicas replicate over ROLE_REPLICA, with views; entries
            # from a legacy primary carry none, so accepting them could undo
            # committed orders.  A port with its own replica listener takes
            # no replica links, and that listener no customers.
            self._reject(_REFUSED_ROLES[role])
        elif role == ROLE_CUSTOMER:
            self.factory.counters.increment("laptop_customer_connections")
            # A pull producer when writing at once: the transport says each
            # time its buffer drains (the writer tells when it backs up).
            self.discipline.register_producer(self, streaming=not self._writer.immediate)
        else:
            self._after_replica_role = True
            secret = self.factory.replica_secret
            if secret is not None:
                self._handshake = Acceptor(secret, REPLICA_LINK_LABEL)
                self.transport.write(self._handshake.start())

    def _authenticate(self, data: bytes) -> bytes:
        """
        Run the replica link's handshake; return the bytes that followed it
        once the peer has proved the secret (empty until then).
        """
        try:
            step = self._handshake.receive(data)
        except AuthenticationFailed:
            self._reject("replica_unauthenticated")
            return b""
        if step.send:
            self.transport.write(step.send)
        if not step.done:
            return b""
        self._handshake = None
        return step.leftover

    # -------------------------------------------------------------- customers

    def _customer_request(self, request: CustomerRequest) -> None:
        if request.customer_id == CLOSE_CUSTOMER_ID:
            self._closing = True
            self._partial_timer.stop()
            self._idle_timer.stop()
            self._close_when_answered()
            return
        slot = [None]
        self._replies.append(slot)
        self.discipline.settle(True)
        self.factory.desk.handle(request, self.engineer_id, partial(self._answered, slot))
        if len(self._replies) >= MAX_PIPELINE and not self._backlogged:
            self._update_reading()

    def _answered(self, slot, reply: bytes) -> None:
        slot[0] = reply
        replies = self._replies
        if not replies or replies[0] is not slot:
            return  # an earlier reply is still due, or the customer has gone
        held = self._held
        if held is not None:
            while replies and replies[0][0] is not None:
                held.append(replies.popleft()[0])
        else:
            ready = []
            while replies and replies[0][0] is not None:
                ready.append(replies.popleft()[0])
            self._write(b"".join(ready) if len(ready) > 1 else ready[0])
        if not replies:
            self.discipline.settle(False)
        if self._backlogged and len(replies) < MAX_PIPELINE // 2:
            self._update_reading()
        if self._closing:
            self._close_when_answered()

    def _update_reading(self) -> None:
        """
        Read requests only while fewer than ``MAX_PIPELINE`` are unanswered
        (resuming below half of it); the discipline also stops reading while
        the transport does not take our replies.
        """
        limit = MAX_PIPELINE // 2 if self._backlogged else MAX_PIPELINE
        self._backlogged = len(self._replies) >= limit
        self.discipline.stop_reading("backlog", self._backlogged)

    # Producer of a customer connection: the transport says when its buffer
    # is full (streaming only) and when it drained (streaming and pull).
    def pauseProducing(self):
        self._writer.pause()
        self.discipline.output_paused()

    def resumeProducing(self):
        self._writer.drained()
        self.discipline.output_resumed()

    def stopProducing(self):
        """The transport is closing; ``connectionLost`` follows."""

    def _write(self, data: bytes) -> None:
        writer = self._writer
        writer.write(data)
        if writer.paused and not self.discipline.output_blocked:
            self.discipline.output_paused()

    def _write_held(self) -> None:
        held = self._held
        if held:
            self._write(b"".join(held))
            del held[:]

    def _close_when_answered(self) -> None:
        if not self._replies:
            self._write_held()
            self.discipline.close()

    def input_ended(self):
        """
        The client half-closed: answer the requests it sent, then close.  A
        message or handshake it left unfinished can never complete.
        """
        if not self._closing:
            if self._handshake is not None:
                self.factory.counters.increment("laptop_rejected_replica_unauthenticated")
            elif self._decoder.mid_message:
                self.factory.counters.increment("laptop_rejected_truncated_message")
        self._closing = True
        self._close_when_answered()

    # -------------------------------------------------------------- replica links

    def _replica_message(self, message) -> None:
        inbox = self.factory.replica_inbox
        if self._peer_id is None:
            if type(message) is not Hello or not inbox.knows(message.replica_id):
                self._reject("unknown_replica")
                return
            self._peer_id = message.replica_id
            self.factory.replica_link_opened(self)
            return
        claimed = claimed_sender(message)
        if claimed is not None and claimed != self._peer_id:
            # A replica speaking as another: what it says cannot be trusted.
            self._reject("replica_impersonation")
            return
        inbox.received(self._peer_id, message)

    @property
    def peer_id(self):
        """The replica this link's ``Hello`` named (None before it, and on customer connections)."""
        return self._peer_id

    def _timed_out(self):
        """
        A timer ran out: an idle customer (or a connection that never said
        its role) is closed in order; a half-sent message or handshake is
        an abuse limit, and aborted.
        """
        if self._handshake is not None:
            reason = "laptop_rejected_replica_unauthenticated"
        elif self._decoder.mid_message:
            reason = "laptop_rejected_truncated_message"
        else:
            self.factory.counters.increment("laptop_idle_timeouts")
            self._closing = True
            self.discipline.close()
            return
        self._closing = True
        self.discipline.abort(reason)

    def connectionLost(self, reason):
        self.discipline.lost()
        if not self._closing:
            if self._handshake is not None:
                self.factory.counters.increment("laptop_rejected_replica_unauthenticated")
            elif self._decoder.mid_message:
                self.factory.counters.increment("laptop_rejected_truncated_message")
        if self._peer_id is not None:
            self.factory.replica_link_closed(self)
        self._replies.clear()
        self.factory.connection_closed(self)


class LaptopServerFactory(protocol.Factory):
    """
    Numbers accepted connections: the number is the reply's ``engineer_id``,
    as in the existing server.

    ``roles`` are the connection roles this listener serves (customers and
    replica links on one port, or one of them on each of two ports);
    ``replica_secret`` (bytes or None) is what a replica link must prove.
    """

    def __init__(self, desk, replica_inbox, counters, clock, partial_timeout: float = 10.0,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, replica_secret=None,
                 roles=(ROLE_CUSTOMER, ROLE_REPLICA)):
        self.desk = desk
        self.replica_inbox = replica_inbox
        self.counters = counters
        self.clock = clock
        self.partial_timeout = partial_timeout
        self.idle_timeout = idle_timeout
        self.replica_secret = replica_secret
        self.roles = frozenset(roles)
        self._accepted = 0
        self.connections = set()
        #: replica id -> the inbound link its latest ``Hello`` came on
        self._replica_links = {}
        self._all_closed = []

    def buildProtocol(self, addr):
        engineer_id = self._accepted
        self._accepted = (self._accepted + 1) & 0x7FFFFFFF
        return LaptopServerProtocol(self, engineer_id)

    def replica_link_opened(self, connection) -> None:
        """
        A peer's link said who it is.  A replica has one link to us: a newer
        one replaces the last (the peer reconnected and the old one is dead
        or dying), and only the current link's loss is reported.
        """
        previous = self._replica_links.get(connection.peer_id)
        self._replica_links[connection.peer_id] = connection
        if previous is not None:
            previous.transport.abortConnection()

    def replica_link_closed(self, connection) -> None:
        if self._replica_links.get(connection.peer_id) is connection:
            del self._replica_links[connection.peer_id]
            self.replica_inbox.lost(connection.peer_id)

    def connection_closed(self, connection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            waiters, self._all_closed = self._all_closed, []
            for waiter in waiters:
                waiter.callback(None)

    def close_all(self) -> defer.Deferred:
        """Drop every open connection (the service is stopping); fires once all are gone."""
        if not self.connections:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._all_closed.append(waiter)
        for connection in list(self.connections):
            connection.transport.abortConnection()
        return waiter


@implementer(IPushProducer)
class ReplicaLinkProtocol(protocol.Protocol):
    """
    The outbound half of a replica pair: this replica's messages to one
    peer.  Nothing is expected back on it.  Messages go through an
    ``ImmediateWriter``, so on plain TCP each leaves at once.  While the
    kernel buffer towards a stalled peer is full, messages are dropped
    rather than queued without bound: the replication protocol resends what
    was lost.
    """

    log = Logger()

    def __init__(self, own_id: int, on_lost, role_sent: bool = False):
        self._own_id = own_id
        self._on_lost = on_lost
        #: the role word went out already, ahead of an authentication handshake
        self._role_sent = role_sent
        self._writer = None
        self.connected = False

    @property
    def congested(self) -> bool:
        """Whether what was written backs up in the transport."""
        return self._writer is not None and self._writer.paused

    def connectionMade(self):
        self.connected = True
        set_no_delay(self.transport)
        self._writer = ImmediateWriter(self.transport)
        self._writer.register_producer(self)
        hello = encode_replica_message(Hello(self._own_id))
        self._writer.write(hello if self._role_sent else encode_role(ROLE_REPLICA) + hello)

    def send(self, message) -> bool:
        if not self.connected or self.congested:
            return False
        try:
            frame = encode_replica_message(message)
        except FrameTooLarge as error:
            # The peer would close the link on it: the message is lost, as
            # on a congested link, but said.
            self.log.error("not sending {kind}: {why}", kind=type(message).__name__, why=error)
            return False
        self._writer.write(frame)
        return True

    def dataReceived(self, data):
        self._writer.release()
        self.transport.loseConnection()

    def pauseProducing(self):
        self._writer.pause()

    def resumeProducing(self):
        self._writer.drained()

    def stopProducing(self):
        self._writer.pause()

    def connectionLost(self, reason):
        self.connected = False
        self._on_lost(self)
