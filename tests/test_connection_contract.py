"""
The connection discipline's contract (L{protocols.discipline}), run against
every server family: the branch server, the marketplace's envelope ports
(both framings), the trading chatroom and the laptop customer port.

Each family is driven through a C{StringTransport} and a C{task.Clock}.  The
transport's producer calls stand for the kernel: C{pauseProducing} on the
protocol is a client that stopped reading its replies, and the protocol's
own C{pauseProducing} on the transport is the server stopping reading, after
which the test sends nothing more until the server reads again, exactly as
the client's bytes would wait in the socket.
"""

import socket

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from marketplace.branch.csvsource import BranchSales, SalesFile
from marketplace.branch.server import BranchFactory
from marketplace.laptop.service import OrderDesk
from marketplace.metrics import Counters
from marketplace.net import Listener, connect
from protocols.branch import MAX_REPLY
from protocols import tradechat_bodies
from protocols.envelope import encode_request as encode_envelope
from protocols.envelope_server import EnvelopeServerFactory
from protocols.jsonframe import Frame, FrameDecoder, Framing, encode_frame
from protocols.laptop import ROLE_CUSTOMER, CustomerRequest, encode_request, encode_role
from protocols.laptop_server import LaptopServerFactory
from protocols.nsframe import FrameDecoder as NSFrameDecoder
from protocols.nsframe import encode_frame as encode_ns_frame
from protocols.tradechat import TradeChatServerFactory
from tests.laptop.test_server import FakeReplica, Inbox
from tests.support.services import HalfClosingClient, listening_port, start_service
from tests.tradechat.helpers import Harness as TradeChatHarness

#: Seconds the contract waits where a client timer would have fired:
#: far beyond every family's own (the families below use 10 s).
LONG = 1000.0

#: Requests a pipelining client sends before it stops reading.
PIPELINE = 300


class ConnectionContract:
    """
    The tests; a family's C{TestCase} mixes this in and provides:

    * C{factory}, or C{connect()} -> (protocol, transport), a new connection;
    * C{prelude}: bytes a client sends before its first request;
    * C{request(i)}: one whole request, answered with one reply;
    * C{count_replies(data)}: the whole replies in C{data};
    * C{counters}; C{idle_counter}: the counter an idle close increments;
    * C{idle_timeout}: seconds after which a silent client is closed;
    * C{one_request}: the family answers one request per connection, and
      its idle timeout bounds the whole connection, from accept to reply.
    """

    prelude = b""
    one_request = False

    def connect(self):
        """A new connection of C{self.factory}'s on a C{StringTransport}."""
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def replies_written(self, transport):
        self.clock.advance(0)  # a turn ends: batched output is written
        return self.count_replies(transport.value())

    def assertOpen(self, transport):
        self.assertFalse(transport.disconnecting, "the server closed the connection")

    def assertClosedInOrder(self, transport):
        self.assertTrue(transport.disconnecting, "the server did not close the connection")
        self.assertFalse(transport.disconnected, "the server reset the connection")

    def pipeline(self, count):
        return self.prelude + b"".join(self.request(i) for i in range(count))

    def client_stops_reading(self, protocol):
        """
        The transport's buffer is full.  A family answering one request per
        connection writes one bounded reply and registers no producer.
        """
        if not self.one_request:
            protocol.pauseProducing()

    def client_reads_again(self, protocol):
        if not self.one_request:
            protocol.resumeProducing()

    def test_half_closeable(self):
        protocol, _ = self.connect()
        self.assertTrue(IHalfCloseableProtocol.providedBy(protocol))

    def test_pipelined_requests_with_a_slow_reader(self):
        """
        A client pipelines whole requests and stops reading: however long
        it takes to read again, no reply is lost and nothing resets it.
        The server may have read part of a request when it stopped reading
        (the client sent only whole ones): that is not the client's
        slowness either.
        """
        count = 1 if self.one_request else PIPELINE
        data = self.pipeline(count)
        protocol, transport = self.connect()
        cut = len(data) // 2 + 3
        protocol.dataReceived(data[:cut])
        self.client_stops_reading(protocol)
        if not self.one_request:
            self.assertEqual(transport.producerState, "paused",
                             "the server kept reading a client that does not read")
        self.clock.advance(LONG)
        self.assertFalse(transport.disconnected, "the server reset a slow reader")
        if self.one_request:
            self.assertEqual(self.replies_written(transport), 1)
            return
        self.assertOpen(transport)
        self.client_reads_again(protocol)
        protocol.dataReceived(data[cut:])
        self.assertEqual(self.replies_written(transport), count)
        self.assertOpen(transport)

    def test_half_close_after_requests(self):
        """
        A half-close means "no more requests": every request is answered,
        then the connection closes in order.
        """
        count = 1 if self.one_request else 5
        protocol, transport = self.connect()
        protocol.dataReceived(self.pipeline(count))
        protocol.readConnectionLost()
        self.assertEqual(self.replies_written(transport), count)
        self.assertClosedInOrder(transport)

    def test_half_close_while_the_client_is_not_reading(self):
        """
        A client that half-closes and reads its replies late gets them all,
        then the close: it is never reset for reading slowly.
        """
        count = 1 if self.one_request else 5
        protocol, transport = self.connect()
        self.client_stops_reading(protocol)
        protocol.dataReceived(self.pipeline(count))
        protocol.readConnectionLost()
        self.clock.advance(LONG)
        self.assertFalse(transport.disconnected, "the server reset a slow reader")
        self.client_reads_again(protocol)
        self.assertEqual(self.replies_written(transport), count)
        self.assertClosedInOrder(transport)

    def test_shutdown_answers_what_was_read_then_closes(self):
        """A stopping server (its listener's stop) finishes like a half-close."""
        count = 1 if self.one_request else 5
        protocol, transport = self.connect()
        protocol.dataReceived(self.pipeline(count))
        protocol.shutdown()
        self.assertEqual(self.replies_written(transport), count)
        self.assertClosedInOrder(transport)

    def test_half_close_without_requests(self):
        protocol, transport = self.connect()
        protocol.readConnectionLost()
        self.clock.advance(0)
        self.assertTrue(transport.disconnecting)

    def test_request_split_at_every_byte(self):
        request = self.request(0)
        for cut in range(1, len(request)):
            protocol, transport = self.connect()
            protocol.dataReceived(self.prelude + request[:cut])
            protocol.dataReceived(request[cut:])
            self.assertEqual(self.replies_written(transport), 1, f"split at {cut}")
        protocol, transport = self.connect()
        for byte in self.prelude + request:
            protocol.dataReceived(bytes([byte]))
        self.assertEqual(self.replies_written(transport), 1, "one byte at a time")

    def test_steady_slow_sender_is_never_cut_off(self):
        """
        A client streaming requests in pieces that straddle them, a piece
        every half timeout, is served however long it goes on: each
        request completes within the timeout, though the server is never
        at a request boundary when a read ends.
        """
        count = 1 if self.one_request else 8
        data = self.pipeline(count)
        piece = max(1, len(self.request(0)) * 9 // 10)
        protocol, transport = self.connect()
        for start in range(0, len(data), piece):
            protocol.dataReceived(data[start:start + piece])
            self.clock.advance(self.idle_timeout * 0.45)
        if self.one_request:
            # Its idle timeout bounds the whole exchange; the one request
            # was answered within it.
            self.assertEqual(self.replies_written(transport), 1)
            return
        self.assertOpen(transport)
        self.assertEqual(self.replies_written(transport), count)

    def test_idle_client_closed_in_order(self):
        protocol, transport = self.connect()
        if self.prelude:
            protocol.dataReceived(self.prelude)
        self.clock.advance(self.idle_timeout - 0.5)
        self.assertOpen(transport)
        self.clock.advance(1)
        self.assertClosedInOrder(transport)
        self.assertEqual(self.counters.counts[self.idle_counter], 1)

    def test_output_bounded_while_the_client_does_not_read(self):
        """
        A client that never reads while it keeps sending makes the server
        stop reading it: what is written for it stays bounded.
        """
        protocol, transport = self.connect()
        if self.one_request:
            for _ in range(100):
                protocol.dataReceived(self.request(0))
            self.assertLessEqual(len(transport.value()), MAX_REPLY)
            self.assertClosedInOrder(transport)
            return
        protocol.dataReceived(self.prelude)
        protocol.pauseProducing()
        sent = 0
        request = self.request(0)
        while transport.producerState != "paused" and sent < 100_000:
            protocol.dataReceived(request)
            self.clock.advance(0)
            sent += 1
        self.assertEqual(transport.producerState, "paused")
        self.assertLess(sent, 100_000)
        self.assertOpen(transport)


class BranchContractTests(ConnectionContract, SynchronousTestCase):
    one_request = True
    idle_timeout = 10.0
    idle_counter = "branch.idle_timeouts"

    def setUp(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("date,amount\n2025-01-01,100.25\n")
        self.clock = Clock()
        self.counters = Counters()
        sales = BranchSales("A", SalesFile(path), self.counters, run_blocking=defer.maybeDeferred)
        self.factory = BranchFactory(sales, self.counters, self.clock, idle_timeout=10.0)

    def request(self, i):
        return b"REQUEST\n"

    def count_replies(self, data):
        return data.count(b"\nEND\n")


class _EnvelopeContract(ConnectionContract):
    idle_timeout = 10.0
    idle_counter = "idle_timeouts"

    def setUp(self):
        self.clock = Clock()
        self.counters = Counters()
        self.factory = EnvelopeServerFactory(
            lambda request: (None, {"echo": request.payload}), counters=self.counters,
            reactor=self.clock, idle_timeout=10.0, frame_timeout=10.0)

    def request(self, i):
        return encode_frame(self.framing, encode_envelope("Echo", None, {"n": i}))

    def count_replies(self, data):
        frames = FrameDecoder(framing=self.framing).feed(data)
        return sum(isinstance(frame, Frame) for frame in frames)


class EnvelopeLengthPrefixedContractTests(_EnvelopeContract, SynchronousTestCase):
    framing = Framing.LENGTH_PREFIXED


class EnvelopeNewlineContractTests(_EnvelopeContract, SynchronousTestCase):
    """The newline JSON a piped C{nc -N} sends."""

    framing = Framing.NEWLINE

    def test_last_line_without_newline_then_half_close(self):
        """A file whose last line lacks its newline, piped with C{nc -N}."""
        protocol, transport = self.connect()
        protocol.dataReceived(self.pipeline(3).rstrip(b"\n"))
        self.assertEqual(self.replies_written(transport), 2)
        protocol.readConnectionLost()
        self.assertEqual(self.replies_written(transport), 3)
        self.assertClosedInOrder(transport)
        self.assertEqual(self.counters.counts["truncated_frames"], 0)


class TradeChatContractTests(ConnectionContract, SynchronousTestCase):
    idle_timeout = 10.0
    idle_counter = "idle_timeout"

    def setUp(self):
        self.harness = TradeChatHarness(idle_timeout=10.0, login_timeout=LONG * 10)
        self.clock = self.harness.clock
        self.counters = self.harness.counters

    def connect(self):
        peer = self.harness.connect()
        return peer.protocol, peer.transport

    def request(self, i):
        opcode, body = tradechat_bodies.encode_request(tradechat_bodies.Heartbeat())
        return encode_ns_frame(opcode, i + 1, 0, body, 0)

    def count_replies(self, data):
        decoder = NSFrameDecoder()
        decoder.receive(data)
        return sum(frame.is_response for frame in decoder.frames())


class LaptopCustomerContractTests(ConnectionContract, SynchronousTestCase):
    prelude = encode_role(ROLE_CUSTOMER)
    idle_timeout = 10.0
    idle_counter = "laptop_idle_timeouts"
    #: a read reply: customer id and last order, 4 bytes each
    reply_size = 8

    def setUp(self):
        self.clock = Clock()
        self.counters = Counters()
        self.factory = LaptopServerFactory(
            OrderDesk(FakeReplica(), self.counters), Inbox(), self.counters, self.clock,
            partial_timeout=10.0, idle_timeout=10.0)

    def request(self, i):
        return encode_request(CustomerRequest(1, -1, 2))

    def count_replies(self, data):
        return len(data) // self.reply_size


class RealSocketHalfCloseTests(TestCase):
    """
    Over loopback sockets: the reactor's half-close reaches each server, and
    the replies owed arrive before an orderly close (FIN, not RST).
    """

    timeout = 15

    @defer.inlineCallbacks
    def exchange(self, factory, data):
        from twisted.internet import reactor
        listener = start_service(self, Listener("tcp:0:interface=127.0.0.1", factory))
        port = yield listening_port(listener)
        client = HalfClosingClient(data)
        yield connect(f"tcp:127.0.0.1:{port}", client, timeout=5, reactor=reactor)
        received = yield client.closed
        self.assertTrue(client.reason.check(ConnectionDone), client.reason)
        return received

    @defer.inlineCallbacks
    def test_newline_json_piped_then_half_closed(self):
        from twisted.internet import reactor
        factory = EnvelopeServerFactory(lambda request: (None, {"echo": request.payload}),
                                        reactor=reactor)
        lines = b"".join(
            encode_frame(Framing.NEWLINE, encode_envelope("Echo", None, {"n": i}))
            for i in range(50))
        received = yield self.exchange(factory, lines)
        frames = FrameDecoder(framing=Framing.NEWLINE).feed(received)
        self.assertEqual(sum(isinstance(frame, Frame) for frame in frames), 50)

    @defer.inlineCallbacks
    def test_laptop_order_then_half_close(self):
        from twisted.internet import reactor

        class Primary(FakeReplica):
            def order(self, customer, number):
                return defer.succeed(0)

        counters = Counters()
        factory = LaptopServerFactory(OrderDesk(Primary(), counters), Inbox(), counters, reactor)
        received = yield self.exchange(
            factory, encode_role(ROLE_CUSTOMER) + encode_request(CustomerRequest(5, 1, 1)))
        self.assertEqual(len(received), 20)

    @defer.inlineCallbacks
    def test_tradechat_heartbeats_then_half_close(self):
        from twisted.internet import reactor
        harness = TradeChatHarness()
        factory = TradeChatServerFactory(harness.service, reactor, Counters())
        opcode, body = tradechat_bodies.encode_request(tradechat_bodies.Heartbeat())
        data = b"".join(encode_ns_frame(opcode, i, 0, body, 0) for i in range(1, 21))
        received = yield self.exchange(factory, data)
        decoder = NSFrameDecoder()
        decoder.receive(received)
        self.assertEqual(sum(frame.is_response for frame in decoder.frames()), 20)


class _PipeliningSlowReader(Protocol):
    """
    Send C{data} at once, read nothing until C{resume()}, then count the
    replies in what arrives until C{expected} are in.  C{count} is fed each
    chunk as it arrives and returns the replies counted so far: counting
    the whole of what arrived at every read would make each read slower than
    the last, stall the reactor both ends share, and starve the server's
    timers on a loaded machine.
    """

    def __init__(self, data, count, expected):
        self.data = data
        self.count = count
        self.expected = expected
        self.replies = 0
        self.done = defer.Deferred()

    def connectionMade(self):
        # A small receive buffer: the server's replies back up after a few
        # hundred kilobytes, not after what loopback's autotuning would take.
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        self.transport.pauseProducing()
        self.transport.write(self.data)

    def resume(self):
        self.transport.resumeProducing()

    def dataReceived(self, data):
        self.replies = self.count(data)
        if self.replies >= self.expected and not self.done.called:
            self.done.callback(self.replies)

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(self.replies)


@defer.inlineCallbacks
def _until(condition, what, timeout=20.0):
    """Wait, a few milliseconds at a time and C{timeout} s at most, for C{condition()}."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        yield deferLater(reactor, 0.005, lambda: None)


class RealSocketSlowReaderTests(TestCase):
    """
    Over loopback sockets, with the reactor's own pausing: a client that
    pipelines whole requests and stops reading for many times the
    half-sent-request timeout loses no reply and is not reset.
    """

    timeout = 30

    #: seconds, by the server's clock, that the client does not read: many
    #: times every timer of the server under test
    PAUSE = 3600.0

    @defer.inlineCallbacks
    def slow_reader(self, make_factory, data, count, expected):
        """
        The server's timers run on a L{Clock} while its sockets are real: the
        pause is made by advancing that clock once the server has stopped
        reading, so no scheduling delay of a loaded machine can fire a timer,
        and a timer that wrongly runs while the server does not read always
        fires.
        """
        from twisted.internet import reactor
        clock = Clock()
        factory = make_factory(clock)
        build = factory.buildProtocol
        servers = []

        def build_with_a_small_send_buffer(address):
            # What the kernel takes is small too, so the server's own
            # buffer fills and it stops reading, as with a remote client.
            protocol = build(address)
            make_connection = protocol.makeConnection

            def makeConnection(transport):
                transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
                make_connection(transport)

            protocol.makeConnection = makeConnection
            servers.append(protocol)
            return protocol

        factory.buildProtocol = build_with_a_small_send_buffer
        listener = start_service(self, Listener("tcp:0:interface=127.0.0.1", factory))
        port = yield listening_port(listener)
        client = _PipeliningSlowReader(data, count, expected)
        yield connect(f"tcp:127.0.0.1:{port}", client, timeout=5, reactor=reactor)
        self.addCleanup(client.transport.loseConnection)
        yield _until(lambda: servers and servers[0].discipline.output_blocked,
                     "the server stops reading a client that does not read")
        clock.advance(self.PAUSE)
        client.resume()
        return (yield client.done), factory

    @defer.inlineCallbacks
    def test_marketplace(self):
        def make_factory(clock):
            return EnvelopeServerFactory(lambda request: (None, {"echo": request.payload}),
                                         reactor=clock, frame_timeout=0.2, idle_timeout=0.2)

        requests = 20_000
        data = b"".join(encode_frame(Framing.LENGTH_PREFIXED, encode_envelope("E", None, {"n": i}))
                        for i in range(requests))

        decoder = FrameDecoder(framing=Framing.LENGTH_PREFIXED)
        frames = [0]

        def count(chunk):
            frames[0] += sum(isinstance(frame, Frame) for frame in decoder.feed(chunk))
            return frames[0]

        replies, factory = yield self.slow_reader(make_factory, data, count, requests)
        self.assertEqual(replies, requests)
        self.assertEqual(factory.counters.counts["frame_timeouts"], 0)

    @defer.inlineCallbacks
    def test_laptop_customer_port(self):
        counters = Counters()

        def make_factory(clock):
            return LaptopServerFactory(OrderDesk(FakeReplica(), counters), Inbox(), counters,
                                       clock, partial_timeout=0.2)

        requests = 200_000
        data = encode_role(ROLE_CUSTOMER) + encode_request(CustomerRequest(1, -1, 2)) * requests
        received = [0]

        def count(chunk):
            received[0] += len(chunk)
            return received[0] // 8

        replies, _ = yield self.slow_reader(make_factory, data, count, requests)
        self.assertEqual(replies, requests)
        self.assertEqual(counters.counts["laptop_rejected_truncated_message"], 0)
