"""
The server protocol and the order desk, over ``StringTransport`` and a
``task.Clock``: customer requests, pipelining, the close request, bad input.
"""

import socket
import struct

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from marketplace.laptop.replication import ReadResult, RequestFailed
from marketplace.laptop.service import OrderDesk
from marketplace.metrics import Counters
from protocols.immediate import HIGH_WATER
from protocols.laptop import (
    REPLICA_LINK_LABEL,
    ROLE_CUSTOMER,
    ROLE_REPLICA,
    AppendReply,
    CustomerRequest,
    Hello,
    InstallSnapshot,
    OrderReply,
    RecordReply,
    encode_order_reply,
    encode_record_reply,
    encode_replica_message,
    encode_request,
    encode_role,
)
from protocols.laptop_server import MAX_PIPELINE, LaptopServerFactory, ReplicaLinkProtocol
from protocols.peerauth import MAGIC, Connector
from tests.laptop.simnet import SimulatedNetwork
from tests.test_immediate import SocketTransport, receive_all

#: the customer idle timeout the tests' factories use
IDLE = 300.0


def vector(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


class TCPSocketTransport(SocketTransport):
    """A transport with a real socket that also takes the TCP option our protocols set."""

    def setTcpNoDelay(self, enabled):
        self.no_delay = enabled


class FakeReplica:
    """Answers like a primary with id 0 holding customer 1 -> order 2."""

    replica_id = 0

    def __init__(self):
        self.pending = []
        self.book = self

    def last_order(self, customer):
        return {1: 2}.get(customer)

    def order(self, customer, number):
        d = defer.Deferred()
        self.pending.append(d)
        return d

    def read(self, customer):
        return defer.succeed(ReadResult(self.last_order(customer), 0))

    def place_order(self, customer, number, on_done, on_failed):
        self.order(customer, number).addCallbacks(on_done, on_failed)

    def read_record(self, customer, on_done, on_failed):
        self.read(customer).addCallbacks(on_done, on_failed)


class Inbox:
    def __init__(self):
        self.messages = []
        self.lost_peers = []

    def knows(self, peer):
        return peer in (1, 2)

    def received(self, peer, message):
        self.messages.append((peer, message))

    def lost(self, peer):
        self.lost_peers.append(peer)


class ServerProtocolTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.counters = Counters()
        self.replica = FakeReplica()
        self.inbox = Inbox()
        self.factory = LaptopServerFactory(
            OrderDesk(self.replica, self.counters), self.inbox, self.counters, self.clock,
            partial_timeout=10.0, idle_timeout=IDLE,
        )

    def connect(self):
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_spec_order_vector(self):
        protocol, transport = self.connect()
        protocol.dataReceived(vector("00000000 00000001 00000000 00000001"))
        self.replica.pending.pop(0).callback(0)
        self.assertEqual(transport.value(), vector("00000001 00000000 00000001 00000000 00000000"))

    def test_spec_read_vectors(self):
        protocol, transport = self.connect()
        protocol.dataReceived(vector("00000000 00000001 ffffffff 00000002"))
        self.assertEqual(transport.value(), vector("00000001 00000002"))
        transport.clear()
        protocol.dataReceived(vector("00000002 ffffffff 00000002"))
        self.assertEqual(transport.value(), vector("ffffffff ffffffff"))

    def test_engineer_id_numbers_connections(self):
        for expected in range(3):
            protocol, transport = self.connect()
            protocol.dataReceived(encode_role(0) + encode_request(CustomerRequest(5, 1, 1)))
            self.replica.pending.pop(0).callback(0)
            self.assertEqual(transport.value()[12:16], expected.to_bytes(4, "big"))

    def test_pipelined_replies_keep_request_order(self):
        protocol, transport = self.connect()
        protocol.dataReceived(
            encode_role(0)
            + encode_request(CustomerRequest(5, 1, 1))
            + encode_request(CustomerRequest(1, -1, 2))
            + encode_request(CustomerRequest(6, 1, 1))
        )
        self.assertEqual(transport.value(), b"")
        first, second = self.replica.pending
        second.callback(2)
        self.assertEqual(transport.value(), b"")
        first.callback(2)
        self.assertEqual(
            transport.value(),
            encode_order_reply(OrderReply(5, 1, 1, 0, 2))
            + encode_record_reply(RecordReply(1, 2))
            + encode_order_reply(OrderReply(6, 1, 1, 0, 2)),
        )

    def test_long_pipeline_pauses_reading_until_answered(self):
        protocol, transport = self.connect()
        protocol.dataReceived(
            encode_role(0) + b"".join(encode_request(CustomerRequest(c, 1, 1)) for c in range(MAX_PIPELINE))
        )
        self.assertEqual(transport.producerState, "paused")
        pending = self.replica.pending
        half = MAX_PIPELINE // 2
        for waiter in pending[:half]:
            waiter.callback(0)
        self.assertEqual(transport.producerState, "paused")
        pending[half].callback(0)
        self.assertEqual(transport.producerState, "producing")
        for waiter in pending[half + 1 :]:
            waiter.callback(0)
        self.assertEqual(len(transport.value()), MAX_PIPELINE * 20)

    def test_customer_that_does_not_read_is_not_read_from(self):
        """
        Replies to a customer that sends but never reads pile up in the
        transport: once its buffer is full (the transport pauses its
        producer) no more requests are read, and reading resumes when the
        buffer drained, though not while the pipeline is still too long.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0))
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)
        reads = encode_request(CustomerRequest(1, -1, 2)) * 100
        protocol.dataReceived(reads)
        self.assertEqual(len(transport.value()), 100 * 8)
        protocol.pauseProducing()  # what the transport does when its buffer is full
        self.assertEqual(transport.producerState, "paused")
        protocol.dataReceived(reads)  # read before the pause took effect: still answered
        self.assertEqual(len(transport.value()), 200 * 8)
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(
            b"".join(encode_request(CustomerRequest(c, 1, 1)) for c in range(MAX_PIPELINE))
        )
        protocol.pauseProducing()
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "paused", "the pipeline is still full")
        for waiter in self.replica.pending:
            waiter.callback(0)
        self.assertEqual(transport.producerState, "producing")

    def _socket_connection(self):
        """A customer connection whose transport has a real socket: the peer end is returned."""
        ours, peer = socket.socketpair()
        for end in (ours, peer):
            end.setblocking(False)
            self.addCleanup(end.close)
        protocol = self.factory.buildProtocol(None)
        transport = TCPSocketTransport(ours)
        protocol.makeConnection(transport)
        protocol.dataReceived(encode_role(0))
        return protocol, transport, ours, peer

    def test_replies_on_plain_tcp_leave_at_once(self):
        """
        On a plain TCP connection a reply is sent on the socket at once,
        not handed to the transport for its next poll; the connection is
        the transport's pull producer, told when the transport drains.
        """
        protocol, transport, _, peer = self._socket_connection()
        self.assertIs(transport.producer, protocol)
        self.assertFalse(transport.streaming)
        protocol.dataReceived(encode_request(CustomerRequest(1, -1, 2)))
        self.assertEqual(receive_all(peer), vector("00000001 00000002"))
        self.assertEqual(transport.value(), b"")

    def test_replies_backed_up_on_plain_tcp_stop_reading(self):
        """
        Replies the socket does not take go to the transport; past its high
        water mark no more requests are read, until the transport drained.
        """
        protocol, transport, ours, _ = self._socket_connection()
        try:
            while True:
                ours.send(b"x" * 65536)  # a customer that does not read
        except BlockingIOError:
            pass
        reads = encode_request(CustomerRequest(1, -1, 2)) * (HIGH_WATER // 8 + 1)
        protocol.dataReceived(reads)
        self.assertEqual(len(transport.value()), len(reads) // 12 * 8)
        self.assertEqual(transport.producerState, "paused")
        transport.clear()
        protocol.resumeProducing()  # what the transport does once it drained
        self.assertEqual(transport.producerState, "producing")

    def test_replica_link_on_plain_tcp_sends_at_once_and_drops_when_congested(self):
        """
        A replica link's messages leave on the socket at once; once they
        back up past the high water mark the link is congested and drops
        them (the replication protocol resends), until the transport drained.
        """
        ours, peer = socket.socketpair()
        for end in (ours, peer):
            end.setblocking(False)
            self.addCleanup(end.close)
        link = ReplicaLinkProtocol(0, lambda link: None)
        transport = TCPSocketTransport(ours)
        link.makeConnection(transport)
        self.assertFalse(transport.streaming)
        self.assertEqual(receive_all(peer), encode_role(2) + encode_replica_message(Hello(0)))
        reply = AppendReply(1, 0, True, 5, 3)
        self.assertTrue(link.send(reply))
        self.assertEqual(receive_all(peer), encode_replica_message(reply))
        while link.send(reply):
            pass
        self.assertTrue(link.congested)
        self.assertGreater(len(transport.value()), HIGH_WATER)
        transport.clear()
        link.resumeProducing()  # the transport drained
        self.assertFalse(link.congested)

    def test_unknown_type_gets_failure_reply(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + encode_request(CustomerRequest(5, 3, 9)))
        self.assertEqual(transport.value(), encode_order_reply(OrderReply(-1, 3, 9, 0, 0)))
        self.assertEqual(self.counters.counts["laptop_unknown_request_types"], 1)

    def test_invalid_order_numbers_fail(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + encode_request(CustomerRequest(-5, 3, 1)))
        protocol.dataReceived(encode_request(CustomerRequest(5, -3, 1)))
        self.assertEqual(
            transport.value(),
            encode_order_reply(OrderReply(-1, 3, 1, 0, 0))
            + encode_order_reply(OrderReply(-1, -3, 1, 0, 0)),
        )
        self.assertEqual(self.replica.pending, [])

    def test_failed_commit_gets_failure_replies(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + encode_request(CustomerRequest(5, 3, 1)))
        self.replica.pending.pop().errback(RequestFailed("no primary"))
        self.assertEqual(transport.value(), encode_order_reply(OrderReply(-1, 3, 1, 0, 0)))
        self.replica.read = lambda customer: defer.fail(RequestFailed("no primary"))
        transport.clear()
        protocol.dataReceived(encode_request(CustomerRequest(5, -1, 2)))
        self.assertEqual(transport.value(), encode_record_reply(RecordReply(-1, -2)))

    def test_close_request_waits_for_earlier_replies(self):
        protocol, transport = self.connect()
        protocol.dataReceived(
            encode_role(0)
            + encode_request(CustomerRequest(5, 1, 1))
            + encode_request(CustomerRequest(-1, -1, -1))
            + encode_request(CustomerRequest(6, 1, 1))
        )
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.replica.pending), 1, "nothing after the close request is served")
        self.replica.pending.pop().callback(0)
        self.assertEqual(transport.value(), encode_order_reply(OrderReply(5, 1, 1, 0, 0)))
        self.assertTrue(transport.disconnecting)

    def test_bad_role_closes_and_counts(self):
        protocol, transport = self.connect()
        protocol.dataReceived(vector("00000009 00000001"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.counters.counts["laptop_rejected_bad_role"], 1)

    def test_legacy_replication_role_refused(self):
        protocol, transport = self.connect()
        protocol.dataReceived(vector("00000001 00000000 ffffffff 00000000 00000001 00000001 00000000"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_rejected_legacy_replication"], 1)

    def test_truncated_message_times_out(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + b"\x00\x00\x00\x05\x00")
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_rejected_truncated_message"], 1)

    def test_silent_connection_without_role_times_out(self):
        protocol, transport = self.connect()
        self.clock.advance(10.1)
        self.assertTrue(transport.disconnecting)

    def test_idle_customer_is_closed_after_the_idle_timeout(self):
        """
        The existing client keeps its connection between requests: a pause
        shorter than the idle timeout keeps it, a longer one closes it
        (counted), as a reply would have been flushed first.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + encode_request(CustomerRequest(1, -1, 2)))
        self.clock.advance(IDLE - 1)
        protocol.dataReceived(encode_request(CustomerRequest(1, -1, 2)))
        self.clock.advance(IDLE - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_idle_timeouts"], 1)

    def test_customer_waiting_for_a_reply_is_not_idle(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + encode_request(CustomerRequest(5, 1, 1)))
        self.clock.advance(IDLE * 2.5)
        self.assertFalse(transport.disconnecting)
        self.replica.pending.pop().callback(0)
        self.clock.advance(IDLE)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_idle_timeouts"], 1)

    def test_replica_link_has_no_idle_timeout(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(ROLE_REPLICA) + encode_replica_message(Hello(2)))
        self.clock.advance(IDLE * 10)
        self.assertFalse(transport.disconnecting)

    def test_truncated_message_then_close_is_counted(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + b"\x00\x00")
        protocol.connectionLost(None)
        self.assertEqual(self.counters.counts["laptop_rejected_truncated_message"], 1)

    def test_garbage_after_role_gets_failure_replies_not_a_crash(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(0) + bytes(range(7, 31)))
        self.assertEqual(len(transport.value()), 40)
        self.assertEqual(transport.value()[:4], vector("ffffffff"))

    def test_replica_link_delivers_after_hello(self):
        protocol, transport = self.connect()
        protocol.dataReceived(
            encode_role(ROLE_REPLICA)
            + encode_replica_message(Hello(2))
            + encode_replica_message(AppendReply(1, 2, True, 3, 4))
        )
        self.assertEqual(self.inbox.messages, [(2, AppendReply(1, 2, True, 3, 4))])
        protocol.connectionLost(None)
        self.assertEqual(self.inbox.lost_peers, [2])

    def test_replica_link_from_unknown_replica_refused(self):
        protocol, transport = self.connect()
        protocol.dataReceived(encode_role(ROLE_REPLICA) + encode_replica_message(Hello(7)))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_rejected_unknown_replica"], 1)
        protocol, transport = self.connect()
        protocol.dataReceived(
            encode_role(ROLE_REPLICA) + encode_replica_message(AppendReply(1, 2, True, 3, 4))
        )
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.inbox.messages, [])

    def test_close_all(self):
        protocols = [self.connect() for _ in range(2)]
        done = self.factory.close_all()
        self.assertNoResult(done)
        for protocol, transport in protocols:
            protocol.connectionLost(None)
        self.successResultOf(done)

    def test_replies_ready_in_one_read_leave_in_one_write(self):
        protocol, transport = self.connect()
        writes = []
        transport.write = lambda data: (writes.append(data), StringTransport.write(transport, data))
        protocol.dataReceived(
            encode_role(0)
            + encode_request(CustomerRequest(1, -1, 2))
            + encode_request(CustomerRequest(5, 3, 9))
            + encode_request(CustomerRequest(1, -1, 4))
        )
        self.assertEqual(
            writes,
            [
                encode_record_reply(RecordReply(1, 2))
                + encode_order_reply(OrderReply(-1, 3, 9, 0, 0))
                + encode_record_reply(RecordReply(1, 2))
            ],
        )

    def test_close_request_sends_replies_ready_in_the_same_read_first(self):
        protocol, transport = self.connect()
        protocol.dataReceived(
            encode_role(0)
            + encode_request(CustomerRequest(1, -1, 2))
            + encode_request(CustomerRequest(-1, -1, -1))
        )
        self.assertEqual(transport.value(), encode_record_reply(RecordReply(1, 2)))
        self.assertTrue(transport.disconnecting)



class ReadYourWritesTests(unittest.TestCase):
    """
    A read pipelined after orders on one connection sees them: the
    existing server answers it with the order just placed.
    """

    def serve(self, replica):
        factory = LaptopServerFactory(
            OrderDesk(replica, Counters()), Inbox(), Counters(), task.Clock()
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(encode_role(0))
        return protocol, transport

    def test_pipelined_order_then_read_through_every_replica(self):
        net = SimulatedNetwork()
        net.run_until(lambda: net.primary() is not None, 5.0)
        primary = net.primary()
        net.run_until(lambda: len(net.replicas[primary].live) == 2, 2.0)
        for entry in net.ids:
            protocol, transport = self.serve(net.replicas[entry])
            customer = 10 + entry
            for number in range(3):
                transport.clear()
                protocol.dataReceived(
                    encode_request(CustomerRequest(customer, number, 1))
                    + encode_request(CustomerRequest(customer, -1, 2))
                )
                net.run_until(lambda: len(transport.value()) == 28, 2.0)
                self.assertEqual(
                    transport.value()[20:],
                    encode_record_reply(RecordReply(customer, number)),
                    f"entry replica {entry}, order {number}",
                )

    def test_read_waits_for_its_connections_earlier_orders_only(self):
        replica = FakeReplica()
        reads = []
        replica.read_record = lambda customer, on_done, on_failed: reads.append(customer)
        protocol, transport = self.serve(replica)
        other, _ = self.serve(replica)
        protocol.dataReceived(
            encode_request(CustomerRequest(1, 3, 1))
            + encode_request(CustomerRequest(2, -1, 2))
            + encode_request(CustomerRequest(1, -1, 2))
            + encode_request(CustomerRequest(1, 4, 1))
            + encode_request(CustomerRequest(1, -1, 2))
        )
        other.dataReceived(encode_request(CustomerRequest(1, -1, 2)))
        self.assertEqual(reads, [2, 1], "other customers and other connections do not wait")
        first, second = replica.pending
        first.callback(0)
        self.assertEqual(reads, [2, 1, 1], "released by the order before it, not the one after")
        second.errback(RequestFailed("no primary"))
        self.assertEqual(reads, [2, 1, 1, 1], "a failed order releases the reads after it too")
        self.assertEqual(protocol.factory.desk._unanswered, {})


#: the forged frame of the report: InstallSnapshot of view 1 from "replica 0",
#: last_index 10**9, records {0: 5, 999: 424242}
FORGED_SNAPSHOT = (
    encode_role(ROLE_REPLICA)
    + encode_replica_message(Hello(0))
    + encode_replica_message(InstallSnapshot(1, 0, 10**9, 1, 0, 2, 0, ((0, 5), (999, 424242))))
)
SECRET = b"s3cret-shared-by-every-replica!!"


class ReplicaLinkAuthenticationTests(unittest.TestCase):
    """Replica links prove the shared secret before any of their frames is read."""

    def setUp(self):
        self.clock = task.Clock()
        self.counters = Counters()
        self.inbox = Inbox()
        self.inbox.knows = lambda peer: peer in (0, 1, 2)

    def factory(self, **options):
        options.setdefault("replica_secret", SECRET)
        return LaptopServerFactory(
            OrderDesk(FakeReplica(), self.counters), self.inbox, self.counters, self.clock,
            partial_timeout=10.0, idle_timeout=IDLE, **options
        )

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_forged_snapshot_without_the_secret_is_refused_and_counted(self):
        protocol, transport = self.connect(self.factory())
        protocol.dataReceived(FORGED_SNAPSHOT)
        self.assertEqual(self.inbox.messages, [])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_rejected_replica_unauthenticated"], 1)
        # The acceptor's challenge is all the peer got.
        self.assertEqual(transport.value()[:len(MAGIC)], MAGIC)
        protocol.connectionLost(None)
        self.assertEqual(self.inbox.lost_peers, [], "a mere claim to be replica 0 changes nothing")

    def test_reported_frames_byte_for_byte(self):
        """
        The two reported attacks as sent: role 2, Hello(0), then one frame
        (the report's layout of InstallSnapshot, before snapshots came in
        chunks).  Neither is read: the link never proved the secret.
        """
        snapshot = struct.pack(">iiqiqi", 1, 0, 10**9, 1, 0, 2) + struct.pack(">iiii", 0, 5, 999, 424242)
        at_the_limit = struct.pack(">iiqiqi", 2**31 - 1, 0, 0, 2**31 - 1, 0, 0)
        for body in (snapshot, at_the_limit):
            frame = (struct.pack(">i", 2) + struct.pack(">iii", 1, 4, 0)
                     + struct.pack(">ii", 6, len(body)) + body)
            protocol, transport = self.connect(self.factory())
            protocol.dataReceived(frame)
            protocol.connectionLost(None)
        self.assertEqual((self.inbox.messages, self.inbox.lost_peers), ([], []))
        self.assertEqual(self.counters.counts["laptop_rejected_replica_unauthenticated"], 2)

    def test_role_word_then_silence_times_out_counted(self):
        protocol, transport = self.connect(self.factory())
        protocol.dataReceived(encode_role(ROLE_REPLICA))
        self.clock.advance(10.1)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.counters.counts["laptop_rejected_replica_unauthenticated"], 1)

    def authenticated_link(self, factory, hello=Hello(2), split=False):
        """A replica link that proved the secret, with its ``Hello`` sent."""
        protocol, transport = self.connect(factory)
        connector = Connector(SECRET, REPLICA_LINK_LABEL)
        protocol.dataReceived(encode_role(ROLE_REPLICA))
        answer = connector.receive(transport.value())
        transport.clear()
        if split:
            protocol.dataReceived(answer.send[:10])
            protocol.dataReceived(answer.send[10:])
            hello_bytes = encode_replica_message(hello)
        else:
            # The answer and the first frames in one read.
            protocol.dataReceived(answer.send + encode_replica_message(hello))
            hello_bytes = b""
        self.assertTrue(connector.receive(transport.value()).done)
        if hello_bytes:
            protocol.dataReceived(hello_bytes)
        return protocol, transport

    def test_authenticated_link_delivers(self):
        for split in (False, True):
            self.inbox.messages = []
            protocol, transport = self.authenticated_link(self.factory(), split=split)
            protocol.dataReceived(encode_replica_message(AppendReply(1, 2, True, 3, 4)))
            self.assertEqual(self.inbox.messages, [(2, AppendReply(1, 2, True, 3, 4))])
            self.assertFalse(transport.disconnecting)

    def test_wrong_secret_is_refused(self):
        protocol, transport = self.connect(self.factory())
        protocol.dataReceived(encode_role(ROLE_REPLICA))
        answer = Connector(b"x" * 32, REPLICA_LINK_LABEL).receive(transport.value())
        protocol.dataReceived(answer.send + encode_replica_message(Hello(2)))
        self.assertEqual(self.inbox.messages, [])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_rejected_replica_unauthenticated"], 1)

    def test_replica_speaking_as_another_is_refused(self):
        protocol, transport = self.authenticated_link(self.factory(), Hello(2))
        protocol.dataReceived(encode_replica_message(AppendReply(1, 1, True, 3, 4)))
        self.assertEqual(self.inbox.messages, [])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_rejected_replica_impersonation"], 1)

    def test_only_the_current_link_of_a_replica_reports_its_loss(self):
        factory = self.factory()
        old, old_transport = self.authenticated_link(factory)
        new, _ = self.authenticated_link(factory)
        self.assertTrue(old_transport.disconnected, "the newer link replaces the older")
        old.connectionLost(None)
        self.assertEqual(self.inbox.lost_peers, [])
        new.connectionLost(None)
        self.assertEqual(self.inbox.lost_peers, [2])

    def test_customer_port_with_a_replica_listener_refuses_replica_links(self):
        protocol, transport = self.connect(self.factory(roles=(ROLE_CUSTOMER,)))
        protocol.dataReceived(FORGED_SNAPSHOT)
        self.assertEqual(self.inbox.messages, [])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.counters.counts["laptop_rejected_replica_on_customer_port"], 1)

    def test_replica_port_refuses_customers(self):
        protocol, transport = self.connect(self.factory(roles=(ROLE_REPLICA,)))
        protocol.dataReceived(encode_role(ROLE_CUSTOMER) + encode_request(CustomerRequest(1, 1, 1)))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["laptop_rejected_customer_on_replica_port"], 1)

    def test_without_a_secret_frames_follow_the_role_word(self):
        """Loopback-only clusters may run without a secret: the link's frames come at once."""
        protocol, transport = self.connect(self.factory(replica_secret=None))
        protocol.dataReceived(
            encode_role(ROLE_REPLICA) + encode_replica_message(Hello(2))
            + encode_replica_message(AppendReply(1, 2, True, 3, 4))
        )
        self.assertEqual(self.inbox.messages, [(2, AppendReply(1, 2, True, 3, 4))])
