# -*- test-case-name: tests.laptop.test_tap -*-
"""
One laptop-order replica as a Twisted service: the replication state machine
(``replication.Replica``) wired to a listening port for customers and peers
(or one for each), and to one outbound link per peer, authenticated by a
shared secret when one is given.
"""

from collections import deque
from functools import partial
from time import perf_counter
from typing import Dict, Mapping, Optional, Tuple

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.logger import Logger

from marketplace.laptop.replication import ReadResult, Replica, Timeouts
from marketplace.laptop.storage import FileStorage, MemoryStorage
from marketplace.metrics import Counters
from marketplace.net import ConnectionLimits, Listener, connect
from protocols.laptop import (
    NO_VALUE,
    READ_FAILED,
    REPLICA_LINK_LABEL,
    ROLE_CUSTOMER,
    ROLE_REPLICA,
    TYPE_LOCAL_READ,
    TYPE_ORDER,
    TYPE_READ,
    CustomerRequest,
    OrderReply,
    RecordReply,
    encode_order_reply,
    encode_order_reply_fields,
    encode_record_reply,
    encode_role,
)
from protocols.laptop_server import DEFAULT_IDLE_TIMEOUT, LaptopServerFactory, ReplicaLinkProtocol
from protocols.peerauth import connecting


#: Request type -> the C{api} label of its requests in the metrics.
REQUEST_NAMES = {TYPE_ORDER: "order", TYPE_READ: "read", TYPE_LOCAL_READ: "local_read"}
FAILED = "failed"


class OrderDesk:
    """
    Turns customer requests into replica calls and wire replies.  Every
    outcome is a reply: a request that cannot be served gets the spec's
    failure form instead of silence.
    """

    def __init__(self, replica: Replica, counters):
        self._replica = replica
        self._counters = counters
        #: (connection, customer) -> that connection's unanswered orders of
        #: that customer, and the reads it sent after them, in arrival order
        self._unanswered: Dict[Tuple[int, int], deque] = {}

    def handle(self, request: CustomerRequest, engineer_id: int, respond) -> None:
        """
        Serve one request; ``respond(reply_bytes)`` is called exactly once,
        at once or when the replica has an outcome.  Plain callbacks rather
        than a Deferred: this runs for every order a customer places.
        Each is counted by type and outcome (C{ok} or C{failed}), with its
        latency.
        """
        customer, number, kind = request.customer_id, request.order_number, request.request_type
        respond = self._measured(respond, kind)
        if kind == TYPE_ORDER:
            if customer < 0 or number < 0:
                self._counters.increment("laptop_invalid_orders")
                respond(self._order_failed(request, engineer_id), FAILED)
                return
            key = (engineer_id, customer)
            queue = self._unanswered.get(key)
            if queue is None:
                queue = self._unanswered[key] = deque()
            order = [False]  # answered yet?
            queue.append(order)

            def committed(admin_id):
                try:
                    respond(encode_order_reply_fields(customer, number, kind, engineer_id, admin_id))
                finally:
                    self._order_answered(key, order)

            def failed(_):
                try:
                    respond(self._failed(request, engineer_id), FAILED)
                finally:
                    self._order_answered(key, order)

            self._replica.place_order(customer, number, committed, failed)
            return
        if kind == TYPE_READ:
            if customer < 0:
                respond(encode_record_reply(RecordReply(NO_VALUE, NO_VALUE)))
                return
            queue = self._unanswered.get((engineer_id, customer))
            if queue is None:
                self._read(request, engineer_id, respond)
            else:
                queue.append(partial(self._read, request, engineer_id, respond))
            return
        if kind == TYPE_LOCAL_READ:
            last = self._replica.book.last_order(customer)
            respond(self._record(ReadResult(last, self._replica.replica_id), customer))
            return
        self._counters.increment("laptop_unknown_request_types")
        respond(self._order_failed(request, engineer_id), FAILED)

    def _measured(self, respond, kind: int):
        """C{respond}, counting the request of type C{kind} when it is answered."""
        api, started = REQUEST_NAMES.get(kind, "UNKNOWN"), perf_counter()
        record = self._counters.request

        def answered(reply: bytes, outcome: str = "ok") -> None:
            record(api, outcome, perf_counter() - started)
            respond(reply)

        return answered

    def _read(self, request: CustomerRequest, engineer_id: int, respond) -> None:
        customer = request.customer_id
        self._replica.read_record(
            customer,
            lambda result: respond(self._record(result, customer)),
            lambda _: respond(self._failed(request, engineer_id), FAILED),
        )

    def _order_answered(self, key: Tuple[int, int], order: list) -> None:
        """
        Read-your-writes on one connection: a read waits for the orders of
        its customer the same connection sent before it (pipelined), so it
        sees each of them once committed.  A read sent at once would be
        served from the commit index of its arrival, which need not hold
        them yet.  Reads that no unanswered order precedes any more go now.
        A connection is keyed by its number (``engineer_id``), which stays
        unique among open connections until 2**31 were accepted; sharing one
        would only make a read wait for another connection's orders.
        """
        order[0] = True
        queue = self._unanswered[key]
        while queue:
            head = queue[0]
            if type(head) is list:
                if not head[0]:
                    return
                queue.popleft()
            else:
                queue.popleft()()
        if self._unanswered.get(key) is queue:
            del self._unanswered[key]

    @staticmethod
    def _record(result, customer: int) -> bytes:
        if result.last_order is None:
            return encode_record_reply(RecordReply(NO_VALUE, NO_VALUE))
        return encode_record_reply(RecordReply(customer, result.last_order))

    def _failed(self, request: CustomerRequest, engineer_id: int) -> bytes:
        """The reply to a request the replica could not serve in time (``RequestFailed``)."""
        self._counters.increment("laptop_failed_requests")
        if request.request_type == TYPE_READ:
            return encode_record_reply(RecordReply(NO_VALUE, READ_FAILED))
        return self._order_failed(request, engineer_id)

    def _order_failed(self, request: CustomerRequest, engineer_id: int) -> bytes:
        return encode_order_reply(
            OrderReply(
                NO_VALUE,
                request.order_number,
                request.request_type,
                engineer_id,
                self._replica.replica_id,
            )
        )


class PeerLink:
    """
    Keeps one outbound connection to a peer open, reconnecting after a short
    delay whenever it fails or drops.  Sending while it is down is a no-op
    (the replication protocol resends), so a dead peer never raises here.
    With a ``secret`` the link is up only once both ends proved it; the
    handshake is bounded by ``connect_timeout`` too.
    """

    log = Logger()

    def __init__(self, own_id, peer_id, addresses, clock, on_up, on_lost,
                 connect_timeout=1.0, retry_delay=0.2, secret=None):
        self.peer_id = peer_id
        self._secret = secret
        #: the connection being made and authenticated, until it is up
        self._wire = None
        #: looked up on every attempt, so a peer's address may become known late
        #: (tests whose replicas listen on OS-chosen ports)
        self._addresses = addresses
        self._own_id = own_id
        self._clock = clock
        self._on_up = on_up
        self._on_lost = on_lost
        self._connect_timeout = connect_timeout
        self._retry_delay = retry_delay
        self._running = False
        self._attempt = None
        self._retry = None
        self._link: Optional[ReplicaLinkProtocol] = None
        self._closed: Optional[defer.Deferred] = None
        self._reported_down = False

    def start(self) -> None:
        self._running = True
        self._connect()

    @property
    def description(self) -> Optional[str]:
        return self._addresses.get(self.peer_id)

    def _connect(self) -> None:
        self._retry = None
        if self.description is None:
            self._schedule_retry()
            return
        link = ReplicaLinkProtocol(self._own_id, self._lost, role_sent=self._secret is not None)
        if self._secret is None:
            self._attempt = connect(self.description, link, self._connect_timeout, self._clock)
        else:
            self._wire = connecting(
                link, self._secret, REPLICA_LINK_LABEL, self._clock, self._connect_timeout,
                preamble=encode_role(ROLE_REPLICA),
            )
            self._attempt = connect(
                self.description, self._wire, self._connect_timeout, self._clock
            ).addCallback(lambda wire: wire.whenAuthenticated())
        self._attempt.addCallbacks(self._connected, self._failed)

    def _connected(self, link) -> None:
        self._attempt = None
        self._wire = None
        self._link = link
        self._reported_down = False
        self.log.info("link to replica {peer} at {where} is up", peer=self.peer_id, where=self.description)
        self._on_up(self.peer_id)

    def _failed(self, failure) -> None:
        self._attempt = None
        self._wire = None
        if not self._reported_down:
            self._reported_down = True
            self.log.info(
                "cannot reach replica {peer} at {where}: {why}; retrying",
                peer=self.peer_id,
                where=self.description,
                why=failure.getErrorMessage(),
            )
        self._schedule_retry()

    def _lost(self, link) -> None:
        if link is self._link:
            self._link = None
            self._on_lost(self.peer_id)
        if self._closed is not None:
            closed, self._closed = self._closed, None
            closed.callback(None)
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._running and self._retry is None:
            self._retry = self._clock.callLater(self._retry_delay, self._connect)

    def send(self, message) -> bool:
        link = self._link
        return link is not None and link.send(message)

    def stop(self) -> defer.Deferred:
        self._running = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._attempt is not None:
            wire = self._wire
            self._attempt.cancel()
            if wire is not None and wire.transport is not None:
                wire.transport.abortConnection()  # connected, not yet authenticated
        if self._link is None:
            return defer.succeed(None)
        self._closed = defer.Deferred()
        self._link.transport.abortConnection()
        return self._closed


def make_storage(data_dir: Optional[str], fsync: bool = False):
    return FileStorage(data_dir, fsync=fsync) if data_dir else MemoryStorage()


class ReplicaService(MultiService):
    """
    A replica: ``Replica`` plus its listener and peer links.  Customers and
    peers share the listening port (the role word tells them apart) unless
    ``replica_listen`` gives replica links a listener of their own; then the
    customer port refuses them.  With a ``replica_secret`` every replica link
    proves it before any of its messages is read.
    """

    log = Logger()

    def __init__(
        self,
        replica_id: int,
        listen: str,
        peers: Mapping[int, Optional[str]],
        timeouts: Timeouts = Timeouts(),
        storage=None,
        counters=None,
        clock=None,
        connect_timeout: float = 1.0,
        partial_timeout: float = 10.0,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        replica_secret: Optional[bytes] = None,
        replica_listen: Optional[str] = None,
        limits: ConnectionLimits = ConnectionLimits(),
    ):
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.counters = counters if counters is not None else Counters()
        self.replica = Replica(
            replica_id,
            list(peers),
            clock,
            self._send,
            storage=storage if storage is not None else MemoryStorage(),
            timeouts=timeouts,
            counters=self.counters,
        )
        self.factory = LaptopServerFactory(
            OrderDesk(self.replica, self.counters), self, self.counters, clock, partial_timeout,
            idle_timeout, replica_secret,
            roles=(ROLE_CUSTOMER,) if replica_listen else (ROLE_CUSTOMER, ROLE_REPLICA),
        )
        self.listener = Listener(listen, self.factory, reactor=clock, limits=limits)
        self.listener.setName(f"laptop replica {replica_id}")
        self.listener.setServiceParent(self)
        self.replica_factory = self.replica_listener = None
        if replica_listen:
            self.replica_factory = LaptopServerFactory(
                None, self, self.counters, clock, partial_timeout, idle_timeout, replica_secret,
                roles=(ROLE_REPLICA,),
            )
            self.replica_listener = Listener(replica_listen, self.replica_factory, reactor=clock)
            self.replica_listener.setName(f"laptop replica {replica_id} (replica links)")
            self.replica_listener.setServiceParent(self)
        self.links = {
            peer: PeerLink(
                replica_id,
                peer,
                peers,
                clock,
                self.replica.peer_connected,
                self.replica.peer_lost,
                connect_timeout=connect_timeout,
                secret=replica_secret,
            )
            for peer in peers
        }

    # The factory's replica inbox.
    def knows(self, peer_id: int) -> bool:
        return peer_id in self.links

    def received(self, peer_id: int, message) -> None:
        self.replica.receive(peer_id, message)

    def lost(self, peer_id: int) -> None:
        self.replica.peer_lost(peer_id)

    def _send(self, peer_id: int, message) -> bool:
        return self.links[peer_id].send(message)

    def startService(self):
        self.replica.start()
        super().startService()
        for link in self.links.values():
            link.start()

    def stopService(self):
        self.log.info(
            "replica {id} stopping; counters: {counters}",
            id=self.replica.replica_id,
            counters=self.counters.snapshot(),
        )
        self.replica.stop()
        closing = [link.stop() for link in self.links.values()]
        closing.append(self.factory.close_all())
        if self.replica_factory is not None:
            closing.append(self.replica_factory.close_all())
        closing.append(defer.maybeDeferred(super().stopService))
        return defer.gatherResults(closing, consumeErrors=True)
