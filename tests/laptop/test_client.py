"""
``laptop-client``: arguments, the output lines, failover, and driving a
stand-in for the existing server that answers exactly as the spec captures.
"""

import io
import struct

from twisted.internet import defer, error, protocol, reactor
from twisted.python import usage
from twisted.trial import unittest

from marketplace.laptop import client
from marketplace.laptop.client import Address, FailoverSession, Latencies, Options, RunSummary
from marketplace.laptop.service import ReplicaService
from marketplace.net import Listener
from protocols.laptop import CustomerRequest
from tests.laptop.processes import refusing_port
from tests.support.services import listening_port, start_service


class ExistingServer(protocol.Protocol):
    """
    Behaves like the existing C++ server towards one customer: role word,
    then 12-byte requests; type 1 answered with engineer 0 / admin 0, type
    2 from its table, anything else never answered.
    """

    def __init__(self):
        self.buffer = b""
        self.role = None

    def dataReceived(self, data):
        self.buffer += data
        if self.role is None and len(self.buffer) >= 4:
            self.role, self.buffer = self.buffer[:4], self.buffer[4:]
        while self.role is not None and len(self.buffer) >= 12:
            request, self.buffer = self.buffer[:12], self.buffer[12:]
            customer, number, kind = struct.unpack(">iii", request)
            if customer == -1:
                self.transport.loseConnection()
                return
            if kind == 1:
                self.factory.book[customer] = number
                self.transport.write(struct.pack(">iiiii", customer, number, kind, 0, 0))
            elif kind == 2:
                last = self.factory.book.get(customer)
                self.transport.write(struct.pack(">ii", customer if last is not None else -1,
                                                 last if last is not None else -1))


class ExistingServerFactory(protocol.Factory):
    protocol = ExistingServer

    def __init__(self):
        self.book = {}


class FailingOnceServer(ExistingServer):
    """Answers its factory's first order with the failure form, like a replica with no primary."""

    def dataReceived(self, data):
        self.buffer += data
        if self.role is None and len(self.buffer) >= 4:
            self.role, self.buffer = self.buffer[:4], self.buffer[4:]
        if self.role is not None and not self.factory.failed and len(self.buffer) >= 12:
            self.factory.failed = True
            request, self.buffer = self.buffer[:12], self.buffer[12:]
            customer, number, kind = struct.unpack(">iii", request)
            self.transport.write(struct.pack(">iiiii", -1, number, kind, 0, 0))
        super().dataReceived(b"")


class FailingOnceServerFactory(ExistingServerFactory):
    protocol = FailingOnceServer

    def __init__(self):
        super().__init__()
        self.failed = False


class OptionsTests(unittest.TestCase):
    def test_existing_arguments(self):
        options = Options()
        options.parseOptions(["10.0.0.1", "8080", "8", "1000", "1"])
        self.assertEqual(options["addresses"], [Address("10.0.0.1", 8080)])
        self.assertEqual((options["customers"], options["orders"], options["type"]), (8, 1000, 1))

    def test_replicas_for_failover(self):
        options = Options()
        options.parseOptions(["h1", "1", "1", "1", "2", "-r", "h2:2", "--replica", "h3:3", "--verify"])
        self.assertEqual([str(a) for a in options["addresses"]], ["h1:1", "h2:2", "h3:3"])
        self.assertTrue(options["verify"])

    def test_first_order(self):
        options = Options()
        options.parseOptions(["h", "1", "1", "1", "1", "--first-order", "5000"])
        self.assertEqual(options["first-order"], 5000)

    def test_rejections(self):
        for argv in (["h", "x", "1", "1", "1"], ["h", "1", "1", "1", "4"], ["h", "1", "-1", "1", "1"],
                     ["h", "1", "1", "1", "1", "--first-order", "-1"],
                     ["--replica", "nohost", "h", "1", "1", "1", "1"], ["h", "1", "1"]):
            self.assertRaises(usage.UsageError, Options().parseOptions, argv)


class SummaryTests(unittest.TestCase):
    def test_last_line_is_the_existing_format(self):
        latencies = Latencies()
        for value in (100, 200, 300, 400):
            latencies.record(value)
        lines = RunSummary(latencies, 2.0, 0, 1).lines()
        self.assertEqual(lines[-1], "avg: 250.00\tmin: 100\tmax: 400\tthroughput: 2.00")
        self.assertTrue(lines[0].startswith("p50: 200\tp95: 400\tp99: 400\tfailed: 0\tfailovers: 1"))

    def test_percentiles_follow_later_records(self):
        latencies = Latencies()
        for value in (100, 100, 0):
            latencies.record(value)
        self.assertEqual((latencies.percentile(50), latencies.low, latencies.high), (100, 1, 100))
        for value in (900, 900, 900, 900):
            latencies.record(value)
        self.assertEqual((latencies.percentile(50), latencies.count, latencies.total),
                         (900, 7, 3801))


class AgainstServersTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def serve(self, factory):
        listener = start_service(self, Listener("tcp:0:interface=127.0.0.1", factory))
        port = yield listening_port(listener)
        return Address("127.0.0.1", port)

    @defer.inlineCallbacks
    def test_drives_the_existing_server(self):
        address = yield self.serve(ExistingServerFactory())
        out = io.StringIO()
        options = Options()
        options.parseOptions(["--progress", "0", address.host, str(address.port), "3", "50", "1"])
        status = yield client._main(reactor, options, out, io.StringIO())
        self.assertEqual(status, 0)
        last = out.getvalue().splitlines()[-1]
        self.assertRegex(last, r"^avg: [0-9.]+\tmin: \d+\tmax: \d+\tthroughput: [0-9.]+$")
        for kind in ("2", "3"):
            options = Options()
            options.parseOptions(["--progress", "0", address.host, str(address.port), "3", "5", kind])
            status = yield client._main(reactor, options, io.StringIO(), io.StringIO())
            self.assertEqual(status, 0)

    @defer.inlineCallbacks
    def test_first_order_numbers_the_orders(self):
        factory = ExistingServerFactory()
        address = yield self.serve(factory)
        options = Options()
        options.parseOptions(["--progress", "0", "--first-order", "1000", address.host,
                              str(address.port), "3", "5", "1"])
        status = yield client._main(reactor, options, io.StringIO(), io.StringIO())
        self.assertEqual(status, 0)
        self.assertEqual(factory.book, {0: 1004, 1: 1004, 2: 1004})

    @defer.inlineCallbacks
    def test_failure_reply_on_an_open_connection_is_retried(self):
        factory = FailingOnceServerFactory()
        address = yield self.serve(factory)
        out = io.StringIO()
        options = Options()
        options.parseOptions(["--progress", "0", address.host, str(address.port), "1", "3", "1"])
        status = yield client._main(reactor, options, out, io.StringIO())
        self.assertEqual(status, 0)
        self.assertTrue(factory.failed)
        self.assertIn("failed: 0\tfailovers: 1", out.getvalue())
        self.assertEqual(factory.book, {0: 2})

    @defer.inlineCallbacks
    def test_fails_over_from_a_dead_address_and_verifies(self):
        service = start_service(self, ReplicaService(0, "tcp:0:interface=127.0.0.1", {}))
        port = yield listening_port(service.listener)
        dead = refusing_port(self)
        out, err = io.StringIO(), io.StringIO()
        options = Options()
        options.parseOptions(["--progress", "0.05", "--timeout", "1", "--verify", "-r",
                              f"127.0.0.1:{port}", "127.0.0.1", str(dead), "2", "200", "1"])
        status = yield client._main(reactor, options, out, err)
        lines = out.getvalue().splitlines()
        self.assertEqual(status, 1, "a replica --verify cannot reach is reported")
        self.assertEqual(lines[:2], [f"verify: replica 127.0.0.1:{dead} unreachable", "verify: DISAGREEMENT"])
        self.assertIn("failed: 0", lines[-2])
        self.assertNotIn("failovers: 0", lines[-2])
        self.assertIn("progress: ", err.getvalue())
        self.assertEqual(service.replica.book.records(), ((0, 199), (1, 199)))

    @defer.inlineCallbacks
    def test_request_fails_after_deadline(self):
        dead = refusing_port(self)
        session = FailoverSession([Address("127.0.0.1", dead)], 0, reactor, timeout=0.2,
                                  deadline=0.3, retry_delay=0.05)
        with self.assertRaises(error.ConnectionRefusedError):
            yield session.request(CustomerRequest(1, 1, 1))
        self.assertGreater(session.failovers, 0)
