"""
Tests for L{marketplace.branch.server} over in-memory transports, and over
loopback sockets where the socket's own behaviour matters.
"""

from twisted.internet.defer import Deferred, fail, inlineCallbacks, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from marketplace.branch.csvsource import BranchSales, SalesFile
from marketplace.branch.server import BranchFactory
from marketplace.branch.tap import branch_listener
from marketplace.metrics import Counters
from marketplace.net import connect
from protocols.branch import MAX_AMOUNT_DIGITS
from tests.support.services import HalfClosingClient, listening_port, start_service

SPEC_CSV = "date,amount\n2025-01-01,100.25\n2025-01-02,250.50\n"
SPEC_REPLY = b"BRANCH_ID: A\nRECORDS: 2\nSUBTOTAL: 350.75\nEND\n"


class BranchProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.path = self.mktemp()
        self.clock = Clock()
        self.counters = Counters()
        sales = BranchSales("A", SalesFile(self.path), self.counters, run_blocking=maybeDeferred)
        self.factory = BranchFactory(
            sales, self.counters, self.clock, idle_timeout=10.0, max_request=32
        )

    def write_csv(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def connect(self):
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_spec_example(self):
        self.write_csv(SPEC_CSV)
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(transport.value(), SPEC_REPLY)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["branch.requests"], 1)

    def test_reply_is_one_write(self):
        """
        Existing aggregators read once, so the reply must be one write.
        """
        self.write_csv(SPEC_CSV)
        protocol, transport = self.connect()
        writes = []
        transport.write = writes.append
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(writes, [SPEC_REPLY])

    def test_split_request_with_carriage_return(self):
        self.write_csv(SPEC_CSV)
        protocol, transport = self.connect()
        for byte in b"REQUEST":
            self.assertEqual(transport.value(), b"")
            protocol.dataReceived(bytes([byte]))
        for byte in b"\r\n":
            protocol.dataReceived(bytes([byte]))
        self.assertEqual(transport.value(), SPEC_REPLY)

    def test_missing_file_error_reply(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(transport.value(), b"ERROR: cannot read CSV\nEND\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["branch.error_replies"], 1)

    def test_changed_file_reflected(self):
        self.write_csv(SPEC_CSV)
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.write_csv(SPEC_CSV + "2025-01-03,-50.75\n")
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(
            transport.value(), b"BRANCH_ID: A\nRECORDS: 3\nSUBTOTAL: 300.00\nEND\n"
        )

    def test_bad_rows_do_not_change_reply(self):
        self.write_csv(SPEC_CSV + "2025-01-03,n/a\n")
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(transport.value(), SPEC_REPLY)
        self.assertEqual(self.counters.counts["branch.rows_rejected"], 1)

    def test_request_then_end_of_file(self):
        self.write_csv(SPEC_CSV)
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        protocol.readConnectionLost()
        self.assertEqual(transport.value(), SPEC_REPLY)
        self.assertEqual(self.counters.counts["branch.requests"], 1)

    def test_request_without_line_end_answered_at_once(self):
        """
        Existing servers answer C{REQUEST} without its line end at once,
        with no end-of-file and no timeout to wait for.
        """
        self.write_csv(SPEC_CSV)
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST")
        self.assertEqual(transport.value(), SPEC_REPLY)
        self.assertTrue(transport.disconnecting)
        protocol.readConnectionLost()
        self.assertEqual(transport.value(), SPEC_REPLY)

    def test_partial_request_then_end_of_file_closed_silently(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQ")
        protocol.readConnectionLost()
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["branch.bad_requests"], 1)

    def test_unknown_request_closed_silently(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"HELLO\n")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["branch.bad_requests"], 1)

    def test_oversize_request_closed(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"R" * 33)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["branch.oversize_requests"], 1)

    def test_idle_timeout(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQ")
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters.counts["branch.idle_timeouts"], 1)

    def test_idle_timeout_while_summary_pending(self):
        """
        A summary that never comes cannot keep the connection open, and
        its late arrival writes nothing.
        """
        pending = Deferred()
        self.factory.sales.summary = lambda: pending
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(None)
        self.write_csv(SPEC_CSV)
        pending.callback(SalesFile(self.path).current()[0])
        self.assertEqual(transport.value(), b"")

    def test_reply_cancels_timeout(self):
        self.write_csv(SPEC_CSV)
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unexpected_failure_is_error_reply(self):
        self.factory.sales.summary = lambda: fail(ZeroDivisionError())
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(transport.value(), b"ERROR: cannot read CSV\nEND\n")
        self.assertEqual(self.counters.counts["branch.internal_errors"], 1)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_subtotal_beyond_default_precision(self):
        self.write_csv("date,amount\nd,1000000000000000000000.00\nd,0.005000000000000000000001\n")
        protocol, transport = self.connect()
        protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(
            transport.value(),
            b"BRANCH_ID: A\nRECORDS: 2\nSUBTOTAL: 1000000000000000000000.01\nEND\n",
        )

    def test_subtotal_too_long_is_logged_error_reply(self):
        """
        A subtotal too long for a reply is answered with an error reply and
        logged, and the connection still closes: the reply is built before
        the idle timeout is cancelled.
        """
        self.write_csv("date,amount\nd,1" + "0" * MAX_AMOUNT_DIGITS + "\n")
        protocol, transport = self.connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"REQUEST\n")
        self.assertEqual(transport.value(), b"ERROR: subtotal out of range\nEND\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn("integer digits", errors[0]["error"])
        self.assertEqual(self.counters.counts["branch.subtotal_out_of_range"], 1)
        self.assertEqual(self.counters.counts["branch.error_replies"], 1)


class HalfCloseTests(TestCase):
    """
    Over real loopback sockets: end-of-file from the client does not stop
    the reply.
    """

    timeout = 10

    @inlineCallbacks
    def ask(self, request):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(SPEC_CSV)
        listener = start_service(
            self, branch_listener("A", path, listen="tcp:0:interface=127.0.0.1")
        )
        port = yield listening_port(listener)
        client = HalfClosingClient(request)
        yield connect(f"tcp:127.0.0.1:{port}", client, timeout=5)
        return (yield client.closed)

    @inlineCallbacks
    def test_request_then_shutdown(self):
        self.assertEqual((yield self.ask(b"REQUEST\n")), SPEC_REPLY)

    @inlineCallbacks
    def test_request_without_line_end_then_shutdown(self):
        self.assertEqual((yield self.ask(b"REQUEST")), SPEC_REPLY)
