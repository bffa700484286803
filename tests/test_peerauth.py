"""
Tests for L{protocols.peerauth} and L{marketplace.peersecret}: the shared
secret handshake of links between our own processes.
"""

import os

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer

from marketplace.peersecret import is_loopback_client_endpoint, is_loopback_endpoint, load_secret
from protocols.peerauth import (
    MAGIC,
    Acceptor,
    AuthenticatingFactory,
    AuthenticationFailed,
    Connector,
    connecting,
)

SECRET = b"0123456789abcdef0123456789abcdef"
LABEL = b"test-link"


def run_handshake(acceptor, connector):
    """Both sides' bytes exchanged whole; returns the last steps of each."""
    challenge = acceptor.start()
    answer = connector.receive(challenge)
    accepted = acceptor.receive(answer.send)
    confirmed = connector.receive(accepted.send)
    return accepted, confirmed


class HandshakeTests(unittest.TestCase):
    def test_same_secret_authenticates_both_ends(self):
        accepted, confirmed = run_handshake(Acceptor(SECRET, LABEL), Connector(SECRET, LABEL))
        self.assertTrue(accepted.done)
        self.assertTrue(confirmed.done)

    def test_wrong_secret_is_refused_by_the_acceptor(self):
        acceptor = Acceptor(SECRET, LABEL)
        answer = Connector(b"x" * 32, LABEL).receive(acceptor.start())
        self.assertRaises(AuthenticationFailed, acceptor.receive, answer.send)

    def test_an_acceptor_without_the_secret_is_refused_by_the_connector(self):
        impostor = Acceptor(b"y" * 32, LABEL)
        connector = Connector(SECRET, LABEL)
        answer = connector.receive(impostor.start())
        # The impostor cannot check the answer; it sends what it can.
        self.assertRaises(AuthenticationFailed, connector.receive, b"\0" * 32)
        self.assertFalse(connector.done)
        self.assertTrue(answer.send)

    def test_proof_is_bound_to_the_label(self):
        acceptor = Acceptor(SECRET, b"laptop-replica")
        answer = Connector(SECRET, b"market-service").receive(acceptor.start())
        self.assertRaises(AuthenticationFailed, acceptor.receive, answer.send)

    def test_recorded_answer_cannot_be_replayed(self):
        first = Acceptor(SECRET, LABEL)
        recorded = Connector(SECRET, LABEL).receive(first.start()).send
        first.receive(recorded)
        second = Acceptor(SECRET, LABEL)
        second.start()
        self.assertRaises(AuthenticationFailed, second.receive, recorded)

    def test_a_greeting_without_magic_is_refused(self):
        self.assertRaises(AuthenticationFailed, Connector(SECRET, LABEL).receive, b"X" * 36)

    def test_bytes_one_at_a_time_and_leftover(self):
        acceptor, connector = Acceptor(SECRET, LABEL), Connector(SECRET, LABEL)
        answer = b""
        for byte in acceptor.start():
            answer += connector.receive(bytes([byte])).send
        step = None
        for byte in answer + b"app":
            step = acceptor.receive(bytes([byte]))
            if step.done:
                break
        leftover = acceptor.receive(b"more")
        self.assertEqual(leftover.leftover, b"more")
        self.assertTrue(step.done)
        self.assertEqual(MAGIC, acceptor.start()[:4])

    def test_leftover_after_the_last_proof(self):
        acceptor, connector = Acceptor(SECRET, LABEL), Connector(SECRET, LABEL)
        answer = connector.receive(acceptor.start())
        accepted = acceptor.receive(answer.send + b"hello")
        self.assertEqual(accepted.leftover, b"hello")
        confirmed = connector.receive(accepted.send + b"world")
        self.assertEqual(confirmed.leftover, b"world")

    def test_short_secret_is_refused(self):
        self.assertRaises(ValueError, Acceptor, b"short", LABEL)


@implementer(IHalfCloseableProtocol)
class Recorder(Protocol):
    def __init__(self):
        self.received = b""
        self.made = False
        self.read_closed = False
        self.lost = False

    def connectionMade(self):
        self.made = True

    def dataReceived(self, data):
        self.received += data

    def readConnectionLost(self):
        self.read_closed = True

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.lost = True


def pump(one, one_transport, other, other_transport):
    """Move bytes both ways until neither side has anything to send."""
    while one_transport.value() or other_transport.value():
        data, _ = one_transport.value(), one_transport.clear()
        if data:
            other.dataReceived(data)
        data, _ = other_transport.value(), other_transport.clear()
        if data:
            one.dataReceived(data)


class AuthenticatingProtocolTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.refusals = []
        self.server_inner = Recorder()

        class Wrapped:
            def doStart(self):
                pass

            def doStop(self):
                pass

            def buildProtocol(inner_self, addr):
                return self.server_inner

        self.factory = AuthenticatingFactory(Wrapped(), SECRET, LABEL, self.clock, 5.0,
                                             self.refusals.append)

    def connect(self, secret=SECRET):
        server = self.factory.buildProtocol(None)
        server_transport = StringTransport()
        server.makeConnection(server_transport)
        client_inner = Recorder()
        client = connecting(client_inner, secret, LABEL, self.clock, 5.0)
        client_transport = StringTransport()
        client.makeConnection(client_transport)
        return server, server_transport, client, client_transport, client_inner

    def test_inner_protocols_start_after_the_handshake(self):
        server, st, client, ct, client_inner = self.connect()
        self.assertFalse(self.server_inner.made)
        ready = []
        client.whenAuthenticated().addCallback(ready.append)
        pump(server, st, client, ct)
        self.assertTrue(self.server_inner.made)
        self.assertEqual(ready, [client_inner])
        self.assertIs(self.server_inner.transport, st)
        client_inner.transport.write(b"request")
        server.dataReceived(ct.value())
        self.assertEqual(self.server_inner.received, b"request")
        server.readConnectionLost()
        self.assertTrue(self.server_inner.read_closed)
        self.assertTrue(IHalfCloseableProtocol.providedBy(server))
        self.assertEqual(self.refusals, [])

    def test_preamble_goes_before_the_handshake(self):
        """A port serving several kinds of connection reads which kind first."""
        client = connecting(Recorder(), SECRET, LABEL, self.clock, 5.0, preamble=b"ROLE")
        transport = StringTransport()
        client.makeConnection(transport)
        self.assertEqual(transport.value(), b"ROLE")
        acceptor = Acceptor(SECRET, LABEL)
        transport.clear()
        client.dataReceived(acceptor.start())
        self.assertTrue(acceptor.receive(transport.value()).done)

    def test_wrong_secret_is_refused_counted_and_aborted(self):
        server, st, client, ct, client_inner = self.connect(secret=b"z" * 32)
        failures = []
        client.whenAuthenticated().addErrback(failures.append)
        server.dataReceived(b"")
        client.dataReceived(st.value())
        server.dataReceived(ct.value())
        self.assertEqual(self.refusals, ["wrong proof of the shared secret"])
        self.assertTrue(st.disconnecting or st.disconnected)
        self.assertFalse(self.server_inner.made)
        client.connectionLost()
        self.assertEqual(len(failures), 1)
        self.assertFalse(client_inner.made)

    def test_silent_peer_times_out(self):
        server, st, *_ = self.connect()
        self.clock.advance(5.0)
        self.assertEqual(self.refusals, ["handshake timed out"])
        self.assertTrue(st.disconnecting or st.disconnected)
        server.connectionLost()
        self.assertFalse(self.server_inner.lost)


class SecretFileTests(unittest.TestCase):
    def write(self, content, mode=0o600):
        path = self.mktemp()
        with open(path, "wb") as file:
            file.write(content)
        os.chmod(path, mode)
        return path

    def test_reads_and_strips(self):
        self.assertEqual(load_secret(self.write(b"  " + SECRET + b"\n")), SECRET)

    def test_refuses_a_file_others_can_read(self):
        error = self.assertRaises(ValueError, load_secret, self.write(SECRET, 0o644))
        self.assertIn("chmod 600", str(error))

    def test_refuses_a_short_secret(self):
        error = self.assertRaises(ValueError, load_secret, self.write(b"short\n"))
        self.assertIn("fewer than 16", str(error))

    def test_refuses_a_missing_file(self):
        error = self.assertRaises(ValueError, load_secret, self.mktemp())
        self.assertIn("cannot read", str(error))


    def test_refuses_what_is_not_a_regular_file_without_reading_it(self):
        """A FIFO (or a device such as /dev/zero) would block or never end: refused at once."""
        path = self.mktemp()
        os.mkfifo(path, 0o600)
        error = self.assertRaises(ValueError, load_secret, path)
        self.assertIn("not a regular file", str(error))

    def test_refuses_an_overlong_file(self):
        error = self.assertRaises(ValueError, load_secret, self.write(SECRET * 1000))
        self.assertIn("more than", str(error))


class LoopbackTests(unittest.TestCase):
    def test_loopback_endpoints(self):
        for description in ("tcp:7000:interface=127.0.0.1", r"tcp:0:interface=\:\:1",
                            "unix:/tmp/some.sock", "tcp:7000:interface=127.0.0.2"):
            self.assertTrue(is_loopback_endpoint(description), description)

    def test_endpoints_beyond_loopback(self):
        for description in ("tcp:7000", "tcp:7000:interface=0.0.0.0",
                            "tcp:7000:interface=10.0.0.5", "nonsense:1"):
            self.assertFalse(is_loopback_endpoint(description), description)

    def test_client_endpoints(self):
        """Where a link connects to: this machine only, or anywhere else."""
        for description in ("tcp:127.0.0.1:7000", "tcp:localhost:7000", "unix:/tmp/some.sock",
                            "tls:127.0.0.1:7000"):
            self.assertTrue(is_loopback_client_endpoint(description), description)
        for description in ("tcp:hostB:7000", "tcp:10.0.0.5:7000", "tls:example.com:443",
                            "nonsense:1"):
            self.assertFalse(is_loopback_client_endpoint(description), description)
