"""
Per-connection ordering and back-pressure when the service answers later
(as the Redis store does): requests are handled one at a time in arrival
order, and a connection that pipelines too much stops being read.
"""

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from marketplace.tradechat.service import ConnectionState
from protocols.nsframe import FrameDecoder, Opcode, Status, encode_frame
from protocols.tradechat import MAX_QUEUED_REQUESTS, TradeChatServerFactory


class SlowService:
    """Answers every request only when the test says so."""

    def __init__(self):
        self.calls = []

    def connect(self, target):
        # Logged in, so that the protocol passes every opcode on.
        return ConnectionState(target, user_id=1)

    def handle(self, state, request, req_id):
        d = defer.Deferred()
        self.calls.append((req_id, d))
        return d

    def disconnect(self, state):
        return defer.succeed(None)


class PipelineTests(unittest.TestCase):
    def setUp(self):
        self.service = SlowService()
        self.clock = task.Clock()
        factory = TradeChatServerFactory(self.service, self.clock)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def responses(self):
        """The responses written, once the reactor turn in progress has ended."""
        self.clock.advance(0)
        decoder = FrameDecoder()
        decoder.receive(self.transport.value())
        return [(f.req_id, f.status) for f in decoder.frames()]

    def test_one_request_at_a_time_in_order(self):
        self.protocol.dataReceived(b"".join(encode_frame(Opcode.HEARTBEAT, n) for n in (1, 2, 3)))
        self.assertEqual([req_id for req_id, _ in self.service.calls], [1])
        self.service.calls[0][1].callback(None)
        self.assertEqual([req_id for req_id, _ in self.service.calls], [1, 2])
        self.service.calls[1][1].callback(None)
        self.service.calls[2][1].callback(None)
        self.assertEqual(self.responses(), [(1, Status.OK), (2, Status.OK), (3, Status.OK)])

    def test_failure_answers_and_moves_on(self):
        self.protocol.dataReceived(encode_frame(Opcode.HEARTBEAT, 1) + encode_frame(Opcode.HEARTBEAT, 2))
        self.service.calls[0][1].errback(RuntimeError("boom"))
        self.service.calls[1][1].callback(None)
        self.assertEqual(self.responses(), [(1, Status.INTERNAL), (2, Status.OK)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_too_many_queued_requests_pause_reading(self):
        frames = b"".join(encode_frame(Opcode.HEARTBEAT, n) for n in range(MAX_QUEUED_REQUESTS + 2))
        self.protocol.dataReceived(frames)
        self.assertEqual(self.transport.producerState, "paused")
        for n in range(MAX_QUEUED_REQUESTS + 2):
            self.service.calls[n][1].callback(None)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(len(self.responses()), MAX_QUEUED_REQUESTS + 2)

    def test_bad_body_does_not_reach_the_service(self):
        self.protocol.dataReceived(encode_frame(Opcode.DEPOSIT, 1, 0, b"\x00"))
        self.assertEqual(self.service.calls, [])
        self.assertEqual(self.responses(), [(1, Status.BAD_PACKET)])
