"""
Tests for L{marketplace.branch.aggregate}: the query protocol over memory
transports, then real loopback peers, including the existing programs'
behaviour re-enacted with raw sockets and every fault from the issue.
"""

import socket
from decimal import Decimal

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from marketplace.branch.aggregate import (
    ERROR,
    MALFORMED,
    OK,
    TIMEOUT,
    UNREACHABLE,
    BranchQueryProtocol,
    BranchResult,
    Limits,
    aggregate,
    refuse_shared_ids,
)
from marketplace.branch.tap import branch_listener
from marketplace.net import Listener
from protocols.branch import BranchReply, MalformedReply
from tests.support.services import listening_port, start_service
from tests.support.tls import make_tls_files

SPEC_REPLY = b"BRANCH_ID: A\nRECORDS: 2\nSUBTOTAL: 350.75\nEND\n"
SPEC_CSV = "date,amount\n2025-01-01,100.25\n2025-01-02,250.50\n"
SPEC_RESULT = BranchReply("A", 2, Decimal("350.75"))

#: Scheduling slack allowed on top of a timeout on 2 shared cores.
MARGIN = 1.5


class QueryProtocolTests(SynchronousTestCase):
    def connect(self):
        protocol = BranchQueryProtocol()
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_sends_request(self):
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), b"REQUEST\n")

    def test_reply_in_one_byte_segments(self):
        protocol, transport = self.connect()
        for byte in SPEC_REPLY[:-1]:
            protocol.dataReceived(bytes([byte]))
            self.assertNoResult(protocol.outcome)
        protocol.dataReceived(SPEC_REPLY[-1:])
        self.assertEqual(self.successResultOf(protocol.outcome), SPEC_RESULT)
        self.assertTrue(transport.disconnecting)

    def test_reply_without_end_completed_by_close(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"SUBTOTAL: 350.75\r\nRECORDS: 2\r\nBRANCH_ID: A\r\n")
        self.assertNoResult(protocol.outcome)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(protocol.outcome), SPEC_RESULT)

    def test_malformed_reply_aborts(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"X" * 5000)
        self.failureResultOf(protocol.outcome, MalformedReply)
        self.assertTrue(transport.disconnected)

    def test_cancel_aborts(self):
        protocol, transport = self.connect()
        protocol.outcome.cancel()
        self.assertTrue(transport.disconnected)
        self.failureResultOf(protocol.outcome, CancelledError)


class SharedIdTests(SynchronousTestCase):
    def test_an_id_answered_twice_in_a_run_is_refused_for_both(self):
        """
        A branch claiming another's id gets neither row written: which one
        is genuine cannot be told.
        """
        results = [
            BranchResult("tcp:a:1", OK, reply=BranchReply("A", 1, Decimal("1.00"))),
            BranchResult("tcp:b:2", OK, reply=BranchReply("B", 2, Decimal("2.00"))),
            BranchResult("tcp:c:3", OK, reply=BranchReply("A", 9, Decimal("9.00"))),
            BranchResult("tcp:d:4", TIMEOUT, reason="not connected within 3s"),
        ]
        checked = refuse_shared_ids(results)
        self.assertEqual([r.status for r in checked], [MALFORMED, OK, MALFORMED, TIMEOUT])
        self.assertIn("also answered by tcp:c:3", checked[0].reason)
        self.assertIn("also answered by tcp:a:1", checked[2].reason)
        self.assertEqual(checked[1], results[1])


class _Scripted(Protocol):
    """
    A branch that answers with fixed bytes, or never.
    """

    def __init__(self, reply):
        self.reply = reply

    def dataReceived(self, data):
        if self.reply is not None:
            self.transport.write(self.reply)
            self.transport.loseConnection()


def scripted_branch(testcase, reply):
    """
    Listen on a free loopback port with a branch answering C{reply}
    (C{None}: accept and stay silent); return a Deferred of its endpoint.
    """
    factory = Factory.forProtocol(lambda: _Scripted(reply))
    listener = start_service(testcase, Listener("tcp:0:interface=127.0.0.1", factory))
    return listening_port(listener).addCallback(lambda port: f"tcp:127.0.0.1:{port}")


def blocking_socket(testcase, *, listen_backlog=None):
    """
    A loopback TCP socket bound to a free port, listening with
    C{listen_backlog} if given; closed at cleanup.
    """
    sock = socket.socket()
    testcase.addCleanup(sock.close)
    sock.bind(("127.0.0.1", 0))
    if listen_backlog is not None:
        sock.listen(listen_backlog)
    return sock, f"tcp:127.0.0.1:{sock.getsockname()[1]}"


class AggregateTests(TestCase):
    timeout = 30

    limits = Limits(connect=0.5, reply=0.5, run=5.0)

    @inlineCallbacks
    def aggregate_timed(self, endpoints, limits=None):
        started = reactor.seconds()
        results = yield aggregate(endpoints, limits or self.limits, reactor)
        return results, reactor.seconds() - started

    @inlineCallbacks
    def test_error_reason_cannot_drive_the_terminal(self):
        """
        A branch's error text reaches the aggregator's terminal with its
        escape sequences and carriage returns shown, not obeyed.
        """
        endpoint = yield scripted_branch(self, b"ERROR: \x1b]0;owned\x07\r ok\nEND\n")
        results = yield aggregate([endpoint], self.limits, reactor)
        self.assertEqual(results[0].status, ERROR)
        self.assertEqual(results[0].reason, "branch says: \\x1b]0;owned\\x07\\r ok")

    @inlineCallbacks
    def test_our_aggregator_against_existing_branch(self):
        """
        A raw-socket branch that reads once and sends its reply in one
        write, as the existing C server does.
        """
        server, endpoint = blocking_socket(self, listen_backlog=1)

        def existing_branch():
            server.settimeout(10)
            connection, _ = server.accept()
            with connection:
                connection.settimeout(10)
                request = connection.recv(127)
                connection.sendall(SPEC_REPLY if b"REQUEST" in request else b"")
                return request

        serving = deferToThread(existing_branch)
        results = yield aggregate([endpoint], self.limits, reactor)
        self.assertEqual(results[0].status, OK)
        self.assertEqual(results[0].reply, SPEC_RESULT)
        self.assertEqual((yield serving), b"REQUEST\n")

    @inlineCallbacks
    def test_existing_aggregator_against_our_branch(self):
        """
        A raw-socket aggregator that sends the captured request and reads
        once, as the existing C aggregator does, gets the whole reply, even
        while another client holds a connection open without a word.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(SPEC_CSV)
        listener = start_service(self, branch_listener("A", path, listen="tcp:0:interface=127.0.0.1"))
        port = yield listening_port(listener)

        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(silent.close)

        def existing_aggregator():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(bytes.fromhex("52 45 51 55 45 53 54 0a"))
                return sock.recv(4096)

        self.assertEqual((yield deferToThread(existing_aggregator)), SPEC_REPLY)

    @inlineCallbacks
    def test_branch_accepts_and_never_answers(self):
        endpoint = yield scripted_branch(self, None)
        [result], elapsed = yield self.aggregate_timed([endpoint])
        self.assertEqual((result.status, result.reason), (TIMEOUT, "no complete reply within 0.5s"))
        self.assertLess(elapsed, 0.5 + MARGIN)

    @inlineCallbacks
    def test_branch_refuses(self):
        _, endpoint = blocking_socket(self)
        [result], elapsed = yield self.aggregate_timed([endpoint])
        self.assertEqual(result.status, UNREACHABLE)
        self.assertIn("refused", result.reason)
        self.assertLess(elapsed, MARGIN)

    @inlineCallbacks
    def test_branch_never_accepts(self):
        """
        A listener whose accept queue is full drops new SYNs, like a
        filtered host: the connect timeout bounds the wait.
        """
        server, endpoint = blocking_socket(self, listen_backlog=0)
        filler = socket.create_connection(server.getsockname(), timeout=5)
        self.addCleanup(filler.close)
        [result], elapsed = yield self.aggregate_timed([endpoint])
        self.assertEqual((result.status, result.reason), (TIMEOUT, "not connected within 0.5s"))
        self.assertLess(elapsed, 0.5 + MARGIN)

    @inlineCallbacks
    def test_run_limit_bounds_everything(self):
        silent = yield scripted_branch(self, None)
        answering = yield scripted_branch(self, SPEC_REPLY)
        limits = Limits(connect=5.0, reply=5.0, run=0.5)
        results, elapsed = yield self.aggregate_timed([silent, answering, silent], limits)
        self.assertEqual([r.status for r in results], [TIMEOUT, OK, TIMEOUT])
        self.assertEqual(results[0].reason, "no reply within the 0.5s run limit")
        self.assertLess(elapsed, 0.5 + MARGIN)

    @inlineCallbacks
    def test_mixed_branches_reported_each(self):
        good = yield scripted_branch(self, SPEC_REPLY)
        crlf_no_end = yield scripted_branch(
            self, b"SUBTOTAL: 1.50\r\nBRANCH_ID: B\r\nRECORDS: 1\r\n"
        )
        error = yield scripted_branch(self, b"ERROR: cannot read CSV\nEND\n")
        malformed = yield scripted_branch(self, b"BRANCH_ID: C\nEND\n")
        closes = yield scripted_branch(self, b"")
        results = yield aggregate(
            [good, crlf_no_end, error, malformed, closes, "tcp:127.0.0.1:notaport"],
            self.limits,
            reactor,
        )
        self.assertEqual(
            [(r.status, r.reason) for r in results],
            [
                (OK, ""),
                (OK, ""),
                (ERROR, "branch says: cannot read CSV"),
                (MALFORMED, "missing RECORDS, SUBTOTAL"),
                (MALFORMED, "connection closed without a reply"),
                (UNREACHABLE, results[5].reason),
            ],
        )
        self.assertEqual(results[1].reply, BranchReply("B", 1, Decimal("1.50")))
        self.assertIn("unexpected error", results[5].reason)
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_dribbling_branch(self):
        """
        A branch that sends its reply one byte per reactor turn is
        reassembled.
        """

        class Dribbling(Protocol):
            def dataReceived(self, data):
                self.send(SPEC_REPLY)

            def send(self, remaining):
                if remaining:
                    self.transport.write(remaining[:1])
                    reactor.callLater(0, self.send, remaining[1:])

        listener = start_service(
            self, Listener("tcp:0:interface=127.0.0.1", Factory.forProtocol(Dribbling))
        )
        port = yield listening_port(listener)
        [result] = yield aggregate([f"tcp:127.0.0.1:{port}"], self.limits, reactor)
        self.assertEqual(result.reply, SPEC_RESULT)

    @inlineCallbacks
    def test_tls_endpoint(self):
        tls = make_tls_files(self.mktemp())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(SPEC_CSV)
        listen = f"ssl:0:interface=127.0.0.1:privateKey={tls.key}:certKey={tls.cert}"
        listener = start_service(self, branch_listener("A", path, listen=listen))
        port = yield listening_port(listener)
        endpoint = f"tls:127.0.0.1:{port}:trustRoots={tls.ca_dir}"
        limits = Limits(connect=5.0, reply=5.0, run=10.0)
        [result] = yield aggregate([endpoint], limits, reactor)
        self.assertEqual((result.status, result.reply), (OK, SPEC_RESULT))

    @inlineCallbacks
    def test_tls_handshake_bounded_by_reply_timeout(self):
        """
        A tls: endpoint reports connected once TCP is, so a branch that
        accepts and never handshakes is cut by the reply timeout (as the
        help of --connect-timeout says), not the connect timeout.
        """
        tls = make_tls_files(self.mktemp())
        silent = yield scripted_branch(self, None)
        port = silent.rsplit(":", 1)[1]
        endpoint = f"tls:127.0.0.1:{port}:trustRoots={tls.ca_dir}"
        [result], elapsed = yield self.aggregate_timed([endpoint])
        self.assertEqual((result.status, result.reason), (TIMEOUT, "no complete reply within 0.5s"))
        self.assertLess(elapsed, 0.5 + MARGIN)

    @inlineCallbacks
    def test_tls_untrusted_certificate(self):
        tls = make_tls_files(self.mktemp())
        other = make_tls_files(self.mktemp())
        path = self.mktemp()
        listen = f"ssl:0:interface=127.0.0.1:privateKey={tls.key}:certKey={tls.cert}"
        listener = start_service(self, branch_listener("A", path, listen=listen))
        port = yield listening_port(listener)
        endpoint = f"tls:127.0.0.1:{port}:trustRoots={other.ca_dir}"
        [result] = yield aggregate([endpoint], Limits(connect=5.0, reply=5.0, run=10.0), reactor)
        self.assertEqual(result.status, UNREACHABLE)
        self.assertIn("certificate", result.reason)

