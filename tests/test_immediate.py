"""
L{protocols.immediate.ImmediateWriter} over a real (non-blocking) socket
pair: what the kernel takes leaves at once, the rest goes to the transport,
and nothing is ever sent past bytes the transport still holds.
"""

import socket

from twisted.internet.interfaces import ISSLTransport, ISystemHandle, ITCPTransport
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer

from protocols.immediate import HIGH_WATER, ImmediateWriter, plain_tcp_socket

BIG = 4 * 1024 * 1024
"""More than a socket pair's kernel buffers hold."""


@implementer(ITCPTransport, ISystemHandle)
class SocketTransport(StringTransport):
    """A transport that buffers like Twisted's and has a real socket as its handle."""

    def __init__(self, handle) -> None:
        super().__init__()
        self.handle = handle

    def getHandle(self):
        return self.handle


@implementer(ISSLTransport)
class TLSSocketTransport(SocketTransport):
    """The same, over TLS: its socket carries ciphertext."""


class Producer:
    def resumeProducing(self):
        pass

    def pauseProducing(self):
        pass

    def stopProducing(self):
        pass


def receive_all(sock) -> bytes:
    """Everything the peer socket can read now."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(1024 * 1024)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class ImmediateWriterTests(unittest.TestCase):
    def setUp(self):
        self.ours, self.peer = socket.socketpair()
        for sock in (self.ours, self.peer):
            sock.setblocking(False)
            self.addCleanup(sock.close)
        self.transport = SocketTransport(self.ours)
        self.writer = ImmediateWriter(self.transport)
        self.writer.register_producer(Producer())

    def test_plain_tcp_registers_a_pull_producer(self):
        self.assertTrue(self.writer.immediate)
        self.assertFalse(self.transport.streaming)

    def test_write_leaves_at_once(self):
        self.writer.write(b"hello")
        self.assertEqual(receive_all(self.peer), b"hello")
        self.assertEqual(self.transport.value(), b"")

    def test_rest_goes_to_the_transport_and_later_writes_queue_behind_it(self):
        data = bytes(range(256)) * (BIG // 256)
        self.writer.write(data)
        sent = receive_all(self.peer)
        self.assertTrue(0 < len(sent) < len(data))
        self.writer.write(b"tail")
        self.assertEqual(receive_all(self.peer), b"")
        self.assertEqual(sent + self.transport.value(), data + b"tail")

    def test_writes_leave_at_once_again_once_the_transport_drained(self):
        self.writer.write(b"x" * BIG)
        receive_all(self.peer)
        self.transport.clear()
        self.writer.drained()
        self.writer.write(b"again")
        self.assertEqual(receive_all(self.peer), b"again")
        self.assertEqual(self.transport.value(), b"")

    def test_output_held_past_the_high_water_mark_pauses(self):
        self.writer.write(b"x" * BIG)
        self.assertGreater(len(self.transport.value()), HIGH_WATER)
        self.assertTrue(self.writer.paused)
        self.writer.write(b"y" * 10)
        self.writer.write(b"z" * 5)
        self.assertEqual(self.writer.backlog, 15)
        self.writer.drained()
        self.assertEqual((self.writer.paused, self.writer.backlog), (False, 0))

    def test_queued_is_what_the_transport_holds_until_it_drains(self):
        self.writer.write(b"sent at once")
        self.assertEqual(self.writer.queued, 0)
        self.writer.write(b"x" * BIG)
        held = len(self.transport.value())
        self.assertEqual(self.writer.queued, held)
        self.writer.write(b"y" * 10)
        self.assertEqual(self.writer.queued, held + 10)
        self.writer.drained()
        self.assertEqual(self.writer.queued, 0)

    def test_little_held_output_does_not_pause(self):
        self.writer.write(b"x" * BIG)
        receive_all(self.peer)
        self.transport.clear()
        self.writer.drained()
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for _ in range(BIG // 4096):  # fill the kernel buffers, then hold a little
            self.writer.write(b"x" * 4096)
            if self.transport.value():
                break
        self.assertTrue(0 < len(self.transport.value()) <= 4096)
        self.assertFalse(self.writer.paused)

    def test_failing_socket_leaves_the_data_to_the_transport(self):
        self.peer.close()
        self.writer.write(b"lost")
        self.assertEqual(self.transport.value(), b"lost")

    def test_release_unregisters_the_producer(self):
        self.writer.release()
        self.assertIsNone(self.transport.producer)


class BufferedWriterTests(unittest.TestCase):
    """Transports that must not be written to at once keep Twisted's path."""

    def buffered_writer(self, transport) -> ImmediateWriter:
        """A writer over C{transport}, checked to be on the buffered path."""
        writer = ImmediateWriter(transport)
        writer.register_producer(Producer())
        self.assertFalse(writer.immediate)
        self.assertTrue(transport.streaming)
        return writer

    def test_tls_transport_is_never_written_at_once(self):
        ours, peer = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        peer.setblocking(False)
        transport = TLSSocketTransport(ours)
        self.assertIsNone(plain_tcp_socket(transport))
        self.buffered_writer(transport).write(b"secret")
        self.assertEqual(transport.value(), b"secret")
        self.assertEqual(receive_all(peer), b"")

    def test_transport_without_a_socket(self):
        transport = StringTransport()
        self.buffered_writer(transport).write(b"data")
        self.assertEqual(transport.value(), b"data")

    def test_streaming_pause_counts_the_backlog_until_drained(self):
        transport = StringTransport()
        writer = self.buffered_writer(transport)
        writer.write(b"before")
        writer.pause()
        writer.write(b"12345")
        self.assertEqual((writer.paused, writer.backlog), (True, 5))
        self.assertEqual(writer.queued, HIGH_WATER + 5)
        writer.drained()
        self.assertEqual((writer.paused, writer.backlog, writer.queued), (False, 0, 0))
        self.assertEqual(transport.value(), b"before12345")
