"""
Listening and connecting through endpoint strings, TLS included.
"""

from __future__ import annotations

import os
import re
import socket
import ssl

from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.trial import unittest
from twisted.python import usage

from marketplace.metrics import Counters
from marketplace.net import ConnectionLimits, Listener, connect
from marketplace.sharedsocket import AdoptedListener, SharedSocket
from marketplace.options import ServiceOptions, check_client_endpoint, listen_option
from tests.support.services import listening_port, start_service
from tests.support.tls import make_tls_files
from tests.support.twistd import spawn_twistd


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Collector(protocol.Protocol):
    """Sends a greeting on connect and collects what comes back."""

    def __init__(self, greeting: bytes):
        self.greeting = greeting
        self.received = b""
        self.echoed = defer.Deferred()
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.greeting)

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= len(self.greeting) and not self.echoed.called:
            self.echoed.callback(self.received)

    def connectionLost(self, reason):
        if not self.echoed.called:
            self.echoed.errback(reason)
        self.closed.callback(None)


class ListenerTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_plain_tcp_round_trip(self):
        listener = start_service(self, Listener("tcp:0:interface=127.0.0.1",
                                                protocol.Factory.forProtocol(Echo)))
        port = yield listening_port(listener)
        self.assertEqual(listener.address, f"127.0.0.1:{port}")
        client = Collector(b"hello")
        yield connect(f"tcp:127.0.0.1:{port}", client, timeout=5)
        self.assertEqual((yield client.echoed), b"hello")
        client.transport.loseConnection()
        yield client.closed

    @defer.inlineCallbacks
    def test_stop_listening(self):
        listener = Listener("tcp:0:interface=127.0.0.1", protocol.Factory.forProtocol(Echo))
        listener.startService()
        port = yield listening_port(listener)
        yield listener.stopService()
        yield self.assertFailure(connect(f"tcp:127.0.0.1:{port}", Collector(b"x"), timeout=5),
                                 ConnectionRefusedError)


    def take_port(self):
        taken = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        return taken.getHost().port

    def test_port_in_use_fails_start(self):
        """
        As with ``strports.service``, a port in use makes ``startService``
        raise instead of leaving a running service that listens nowhere,
        and ``whenListening`` fails, before or after.
        """
        listener = Listener(f"tcp:{self.take_port()}:interface=127.0.0.1",
                            protocol.Factory.forProtocol(Echo))
        before = listener.whenListening()
        self.assertRaises(CannotListenError, listener.startService)
        self.addCleanup(listener.stopService)
        self.failureResultOf(before, CannotListenError)
        self.failureResultOf(listener.whenListening(), CannotListenError)
        self.assertIsNone(listener.port)

    @defer.inlineCallbacks
    def test_port_in_use_stops_twistd(self):
        """
        ``twistd -n branch`` on a port in use exits non-zero at startup,
        saying why, instead of running without its listener.
        """
        port = self.take_port()
        twistd = spawn_twistd(self, re.compile(rb"Address already in use"),
                              "branch", "--listen", f"tcp:{port}:interface=127.0.0.1")
        code = yield twistd.ended.addTimeout(30, reactor)
        self.assertNotIn(code, (0, None), twistd.output)
        self.assertIn(f"Couldn't listen on 127.0.0.1:{port}".encode(), twistd.output)
        self.successResultOf(twistd.seen)


class TLSTests(unittest.TestCase):
    """``ssl:`` server endpoints and ``tls:`` client endpoints with hostname checks."""

    @defer.inlineCallbacks
    def setUp(self):
        self.tls = make_tls_files(self.mktemp())
        server = (f"ssl:0:interface=127.0.0.1:privateKey={self.tls.key}:certKey={self.tls.cert}")
        listener = start_service(self, Listener(server, protocol.Factory.forProtocol(Echo)))
        self.port = yield listening_port(listener)

    @defer.inlineCallbacks
    def test_verified_round_trip(self):
        client = Collector(b"secret")
        yield connect(f"tls:localhost:{self.port}:trustRoots={self.tls.ca_dir}", client, timeout=5)
        self.assertEqual((yield client.echoed), b"secret")
        client.transport.loseConnection()
        yield client.closed

    @defer.inlineCallbacks
    def test_wrong_hostname_is_refused(self):
        client = Collector(b"secret")
        description = (f"tls:impostor.example:{self.port}:trustRoots={self.tls.ca_dir}"
                       f":endpoint=tcp\\:127.0.0.1\\:{self.port}")
        yield connect(description, client, timeout=5)
        yield self.assertFailure(client.echoed, VerificationError)
        self.assertEqual(client.received, b"")

    @defer.inlineCallbacks
    def test_untrusted_certificate_is_refused(self):
        other = make_tls_files(self.mktemp())
        client = Collector(b"secret")
        yield connect(f"tls:localhost:{self.port}:trustRoots={other.ca_dir}", client, timeout=5)
        yield self.assertFailure(client.echoed, SSL.Error)
        self.assertEqual(client.received, b"")


def _handshake(port: int, ca: str, ciphers: str | None = None) -> str:
    """
    A blocking TLS 1.2 handshake with 127.0.0.1:port offering only
    ``ciphers`` (OpenSSL names); the cipher agreed, or the handshake's error.
    """
    context = ssl.create_default_context(cafile=ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if ciphers is not None:
        context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.cipher()[0]
        except ssl.SSLError as error:
            return f"refused: {error.reason}"


class ForwardSecrecyTests(unittest.TestCase):
    """
    Every ``ssl:`` listener offers forward-secret suites only, whatever
    Twisted's default list: a static-RSA key exchange lets whoever later gets
    the server's key decrypt every recorded session.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.tls = make_tls_files(self.mktemp(), rsa_key=True)
        server = f"ssl:0:interface=127.0.0.1:privateKey={self.tls.key}:certKey={self.tls.cert}"
        listener = start_service(self, Listener(server, protocol.Factory.forProtocol(Echo)))
        self.port = yield listening_port(listener)

    def handshake(self, ciphers=None) -> defer.Deferred:
        return threads.deferToThread(_handshake, self.port, self.tls.ca, ciphers)

    @defer.inlineCallbacks
    def test_a_client_offering_only_static_rsa_suites_is_refused(self):
        for ciphers in ("AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "AES256-SHA256"):
            with self.subTest(ciphers=ciphers):
                outcome = yield self.handshake(ciphers)
                self.assertTrue(outcome.startswith("refused"), f"{ciphers}: {outcome}")

    @defer.inlineCallbacks
    def test_a_client_offering_ecdhe_gets_it(self):
        agreed = yield self.handshake()
        self.assertTrue(agreed.startswith("ECDHE-"), agreed)
        agreed = yield self.handshake("AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual(agreed, "ECDHE-RSA-AES128-GCM-SHA256")


class AdoptedListenerForwardSecrecyTests(ForwardSecrecyTests):
    """
    The same for a worker's listener, which accepts on the socket its
    master bound and wraps connections in TLS itself.
    """

    def setUp(self):
        self.tls = make_tls_files(self.mktemp(), rsa_key=True)
        server = f"ssl:0:interface=127.0.0.1:privateKey={self.tls.key}:certKey={self.tls.cert}"
        shared = start_service(self, SharedSocket(server, reactor))
        factory = protocol.Factory.forProtocol(Echo)
        factory.counters = Counters()
        self.port = shared.port.getHost().port
        inherited = os.dup(shared.fileno())  # the listener closes the one it adopts, as a worker
        start_service(self, AdoptedListener(inherited, server, factory, reactor))


class ExampleOptions(ServiceOptions):
    optParameters = [listen_option("tcp:7777")]


class OptionsTests(unittest.TestCase):
    def test_defaults(self):
        options = ExampleOptions()
        options.parseOptions([])
        self.assertEqual((options["listen"], options["store"], options["store-timeout"]),
                         ("tcp:7777", "memory", 2.0))

    def test_redis_store_urls(self):
        for url in ("redis://127.0.0.1:6390/2", "rediss://cache.example:6380/0?ca=/ca.pem",
                    "redis://127.0.0.1:6390/0?prefix=eu1:", "redis://h/0?prefix={eu1}:",
                    "rediss://h/0?prefix=x:&ca=/ca.pem"):
            options = ExampleOptions()
            options.parseOptions(["--store", url])
            self.assertEqual(options["store"], url)

    def test_connection_limits(self):
        options = ExampleOptions()
        options.parseOptions([])
        self.assertEqual(options.connection_limits(), ConnectionLimits(None, None))
        options = ExampleOptions()
        options.parseOptions(["--max-connections", "100", "--max-connections-per-address", "8"])
        self.assertEqual(options.connection_limits(), ConnectionLimits(100, 8))

    def test_bad_values_are_usage_errors(self):
        for arguments in (["--listen", "nonsense:1"], ["--store", "postgres://x"],
                          ["--max-connections", "0"], ["--max-connections-per-address", "x"],
                          ["--store", "redis://host:port"], ["--store", "redis://h/x"],
                          ["--store-timeout", "-1"], ["--store", "redis://h?ca=x"],
                          ["--store", "redis://h/0?prefix=a b"], ["--store", "redis://h/0?prefix=" + "p" * 65],
                          ["--listen", "ssl:9443:privateKey=/no/such/key.pem"]):
            self.assertRaises(usage.UsageError, ExampleOptions().parseOptions, arguments)

    def test_client_endpoints(self):
        check_client_endpoint("tcp:example.com:80")
        self.assertRaises(usage.UsageError, check_client_endpoint, "tcp:nohost")


class Held(protocol.Protocol):
    """A server protocol that keeps its connection until the test closes it."""

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.factory.held.append(self)
        arrivals, self.factory.arrivals = self.factory.arrivals, []
        for arrival in arrivals:
            arrival.callback(self)

    def connectionLost(self, reason):
        self.lost.callback(None)


class Quiet(protocol.Protocol):
    """A client that sends nothing and notes when the server closes."""

    def __init__(self):
        self.closed = defer.Deferred()

    def connectionLost(self, reason):
        self.closed.callback(None)


class HoldingFactory(protocol.Factory):
    protocol = Held

    def __init__(self):
        self.held = []
        self.arrivals = []

    def next_arrival(self):
        arrival = defer.Deferred()
        self.arrivals.append(arrival)
        return arrival


class ConnectionLimitTests(unittest.TestCase):
    """
    Over loopback sockets: a listener refuses what is beyond its limits,
    counts it, and takes connections again once places are free.
    """

    timeout = 10

    @defer.inlineCallbacks
    def listen(self, limits):
        self.factory = HoldingFactory()
        self.counters = Counters()
        listener = start_service(self, Listener("tcp:0:interface=127.0.0.1", self.factory,
                                                limits=limits, counters=self.counters))
        self.port = yield listening_port(listener)

    @defer.inlineCallbacks
    def open_connection(self):
        """Connect; fire with the client, once the server has or has not taken it."""
        client = Quiet()
        yield connect(f"tcp:127.0.0.1:{self.port}", client, timeout=5)
        self.addCleanup(client.transport.loseConnection)
        return client

    @defer.inlineCallbacks
    def test_listener_limit(self):
        yield self.listen(ConnectionLimits(total=2))
        yield self.open_connection()
        yield self.open_connection()
        refused = yield self.open_connection()
        yield refused.closed
        self.assertEqual(len(self.factory.held), 2)
        self.assertEqual(self.counters.counts["connections_refused.listener"], 1)
        first = self.factory.held[0]
        first.transport.loseConnection()
        yield first.lost
        arrival = self.factory.next_arrival()
        yield self.open_connection()
        yield arrival
        self.assertEqual(len(self.factory.held), 3)

    @defer.inlineCallbacks
    def test_address_limit(self):
        yield self.listen(ConnectionLimits(per_address=1))
        yield self.open_connection()
        refused = yield self.open_connection()
        yield refused.closed
        self.assertEqual(len(self.factory.held), 1)
        self.assertEqual(self.counters.counts["connections_refused.address"], 1)

    def test_stopping_finishes_disciplined_connections_and_aborts_the_rest(self):
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport
        from marketplace.net import CLOSE_GRACE, _ServingFactory

        class Finishing(Held):
            def shutdown(self):
                self.finishing = True

        factory = HoldingFactory()
        serving = _ServingFactory(factory, ConnectionLimits(), Counters())
        factory.protocol = Finishing
        gentle, stuck = serving.buildProtocol(None), serving.buildProtocol(None)
        factory.protocol = Held
        plain = serving.buildProtocol(None)
        for protocol in (gentle, stuck, plain):
            protocol.makeConnection(StringTransport())
        clock = Clock()
        finished = serving.finish_all(clock)
        self.assertTrue(gentle.finishing and stuck.finishing)
        self.assertFalse(gentle.transport.disconnected)
        self.assertTrue(plain.transport.disconnected)
        plain.connectionLost(None)
        gentle.connectionLost(None)  # it answered and closed
        self.assertNoResult(finished)
        clock.advance(CLOSE_GRACE)
        self.assertTrue(stuck.transport.disconnected)
        stuck.connectionLost(None)
        self.successResultOf(finished)
        self.assertEqual(clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_stopping_drops_the_connections_still_open(self):
        """A connection without the discipline's shutdown is dropped at once."""
        self.factory = HoldingFactory()
        listener = Listener("tcp:0:interface=127.0.0.1", self.factory)
        listener.startService()
        self.port = yield listening_port(listener)
        arrival = self.factory.next_arrival()
        client = yield self.open_connection()
        held = yield arrival
        yield listener.stopService()
        self.assertTrue(held.lost.called)
        yield client.closed

    def test_protocol_is_handed_out_unwrapped(self):
        """Half-close, TCP options and direct socket writes need the real transport."""
        from marketplace.net import _ServingFactory
        factory = HoldingFactory()
        limited = _ServingFactory(factory, ConnectionLimits(total=1), Counters())
        built = limited.buildProtocol(None)
        self.assertIsInstance(built, Held)
        self.assertIsNone(limited.buildProtocol(None))
        built.connectionLost(None)
        self.assertIsNotNone(limited.buildProtocol(None))
