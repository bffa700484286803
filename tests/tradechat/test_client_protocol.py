"""The client protocol: req_id matching, pushes, bad input and lost connections."""

from hypothesis import given, settings, strategies as st
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from protocols import tradechat_bodies as bodies
from protocols.nsframe import (
    FLAG_OBFUSCATED, FLAG_RESPONSE, FrameDecoder, Opcode, Status, encode_frame,
)
from protocols.tradechat import TradeChatClientProtocol
from tests.tradechat.helpers import Harness


class ClientProtocolTests(unittest.TestCase):
    def setUp(self):
        self.pushes = []
        self.protocol = TradeChatClientProtocol(on_push=self.pushes.append)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def sent(self):
        decoder = FrameDecoder()
        decoder.receive(self.transport.value())
        return decoder.frames()

    def test_responses_match_requests_by_req_id(self):
        first = self.protocol.request(bodies.Balance())
        second = self.protocol.request(bodies.Balance())
        [a, b] = self.sent()
        self.protocol.dataReceived(
            encode_frame(Opcode.BALANCE, b.req_id, 0, bodies.encode_balance(2), FLAG_RESPONSE)
            + encode_frame(Opcode.BALANCE, a.req_id, 0, bodies.encode_balance(1), FLAG_RESPONSE))
        self.assertEqual(bodies.decode_balance(self.successResultOf(first).body), 1)
        self.assertEqual(bodies.decode_balance(self.successResultOf(second).body), 2)

    def test_pushes_are_delivered_and_counted(self):
        push = bodies.ChatBroadcast(1, 999, b"hello bob")
        self.protocol.dataReceived(encode_frame(Opcode.CHAT_BROADCAST, 0, 0,
                                                bodies.encode_chat_broadcast(push)))
        self.assertEqual((self.pushes, self.protocol.pushes_received), ([push], 1))

    def test_pushes_without_a_callback_are_only_counted(self):
        protocol = TradeChatClientProtocol()
        protocol.makeConnection(StringTransport())
        pending = protocol.request(bodies.Balance(), req_id=3)
        push = encode_frame(Opcode.CHAT_BROADCAST, 0, 0,
                            bodies.encode_chat_broadcast(bodies.ChatBroadcast(0, 1, b"hi")))
        protocol.dataReceived(push * 3 + encode_frame(
            Opcode.BALANCE, 3, 0, bodies.encode_balance(5), FLAG_RESPONSE) + push)
        self.assertEqual(bodies.decode_balance(self.successResultOf(pending).body), 5)
        self.assertEqual(protocol.pushes_received, 4)

    def test_obfuscating_client(self):
        protocol = TradeChatClientProtocol(obfuscate=True)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.request(bodies.Transfer(760, 48), req_id=4)
        self.assertEqual(transport.value()[32:], bytes.fromhex("a5a5a75da5a5a5a5a5a5a595"))
        self.assertEqual(transport.value()[3], FLAG_OBFUSCATED)

    def test_garbage_from_the_server_aborts(self):
        pending = self.protocol.request(bodies.Balance())
        self.protocol.dataReceived(b"garbage")
        self.assertTrue(self.transport.disconnected)
        self.protocol.connectionLost(None)
        self.failureResultOf(pending, ConnectionLost)
        self.assertTrue(self.protocol.closed)
        self.successResultOf(self.protocol.when_lost())

    def test_unmatched_response_is_ignored(self):
        self.protocol.dataReceived(encode_frame(Opcode.BALANCE, 77, Status.OK, b"", FLAG_RESPONSE))
        self.assertFalse(self.transport.disconnecting)


class IdleReadingTests(unittest.TestCase):
    """With idle_reading=False a connection is not read while idle once pushes arrive."""

    PUSH = encode_frame(Opcode.CHAT_BROADCAST, 0, 0,
                        bodies.encode_chat_broadcast(bodies.ChatBroadcast(0, 1, b"hi")))

    def setUp(self):
        self.protocol = TradeChatClientProtocol(idle_reading=False)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def reply(self, req_id: int) -> bytes:
        return encode_frame(Opcode.BALANCE, req_id, 0, bodies.encode_balance(5), FLAG_RESPONSE)

    def test_idle_connection_stops_reading_once_pushes_arrive(self):
        pending = self.protocol.request(bodies.Balance(), req_id=1)
        self.protocol.dataReceived(self.PUSH + self.reply(1))
        self.successResultOf(pending)
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.request(bodies.Balance(), req_id=2)
        self.assertEqual(self.transport.producerState, "producing")

    def test_pushes_while_a_request_is_pending_keep_it_reading(self):
        self.protocol.request(bodies.Balance(), req_id=1)
        self.protocol.dataReceived(self.PUSH * 2)
        self.assertEqual(self.transport.producerState, "producing")

    def test_connection_without_pushes_keeps_reading(self):
        pending = self.protocol.request(bodies.Balance(), req_id=1)
        self.protocol.dataReceived(self.reply(1))
        self.successResultOf(pending)
        self.assertEqual(self.transport.producerState, "producing")
        self.protocol.dataReceived(self.PUSH)
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.protocol.pushes_received, 1)

    def test_reading_while_idle_is_the_default(self):
        protocol = TradeChatClientProtocol()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(self.PUSH)
        self.assertEqual(transport.producerState, "producing")


class ServerRobustnessTests(unittest.TestCase):
    """Arbitrary input never makes the server protocol raise or log an error."""

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.one_of(
        st.binary(max_size=64),
        st.builds(lambda opcode, req_id, body: encode_frame(opcode, req_id, 0, body),
                  st.sampled_from([int(op) for op in Opcode] + [0x7777]),
                  st.integers(0, 2**64 - 1), st.binary(max_size=40)),
    ), max_size=12))
    def test_random_input(self, chunks):
        harness = Harness(compat=True)
        peer = harness.logged_in("fuzz")
        for chunk in chunks:
            peer.send_raw(chunk)
        peer.received()
        self.assertEqual(self.flushLoggedErrors(), [])
