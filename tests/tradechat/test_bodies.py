"""Body codecs: spec bytes, round trips of every request and reply, extensions."""

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from protocols import tradechat_bodies as bodies
from protocols.nsframe import Opcode


class SpecBodyTests(unittest.TestCase):
    def test_login_request_body(self):
        body = bytes.fromhex("0005616c6963650f6b7181")
        self.assertEqual(bodies.decode_request(Opcode.LOGIN, body), bodies.Login("alice", 0x0F6B7181))
        self.assertEqual(bodies.encode_request(bodies.Login("alice", 0x0F6B7181)), (Opcode.LOGIN, body))

    def test_login_token_is_the_spec_crc(self):
        self.assertEqual(bodies.login_token("alice", 0x9E3762017FB48664), 0x0F6B7181)

    def test_login_reply(self):
        body = bytes.fromhex("000003e700000000000186a0")
        self.assertEqual(bodies.decode_login_reply(body), bodies.LoginReply(999, 100000))
        self.assertEqual(bodies.encode_login_reply(bodies.LoginReply(999, 100000)), body)

    def test_transfer_body(self):
        body = bytes.fromhex("000000d40000000000000096")
        self.assertEqual(bodies.decode_request(Opcode.TRANSFER, body), bodies.Transfer(212, 150))

    def test_chat_broadcast(self):
        body = bytes.fromhex("0001000003e7000968656c6c6f20626f62")
        push = bodies.ChatBroadcast(1, 999, b"hello bob")
        self.assertEqual(bodies.decode_chat_broadcast(body), push)
        self.assertEqual(bodies.encode_chat_broadcast(push), body)

    def test_plain_hello_reply_is_exactly_the_nonce(self):
        self.assertEqual(bodies.encode_hello_reply(bodies.HelloReply(0x9E3762017FB48664)),
                         bytes.fromhex("9e3762017fb48664"))


REQUESTS = st.one_of(
    st.builds(bodies.Hello, st.none() | st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s)),
    st.builds(bodies.Login, st.text(min_size=1, max_size=7).filter(lambda s: "\x00" not in s),
              st.integers(0, 2**32 - 1), st.none() | st.binary(max_size=40)),
    st.just(bodies.Logout()), st.just(bodies.Heartbeat()), st.just(bodies.Balance()),
    st.builds(bodies.JoinRoom, st.integers(0, 65535)),
    st.builds(bodies.LeaveRoom, st.integers(0, 65535)),
    st.builds(bodies.ChatSend, st.integers(0, 65535), st.binary(max_size=100)),
    st.builds(bodies.Deposit, st.integers(1, 2**63 - 1)),
    st.builds(bodies.Withdraw, st.integers(1, 2**63 - 1)),
    st.builds(bodies.Transfer, st.integers(0, 2**32 - 1), st.integers(1, 2**63 - 1)),
    st.builds(bodies.TxnHistory, st.integers(1, bodies.MAX_HISTORY_LIMIT), st.integers(0, 2**64 - 1)),
)


class RoundTripTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(REQUESTS)
    def test_every_request_round_trips(self, request):
        opcode, body = bodies.encode_request(request)
        self.assertEqual(bodies.decode_request(opcode, body), request)

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(sorted(bodies._REQUEST_DECODERS)), st.binary(max_size=64))
    def test_random_bodies_raise_only_bad_body(self, opcode, body):
        try:
            bodies.decode_request(opcode, body)
        except bodies.BadBody:
            pass

    def test_history_round_trip(self):
        entries = (
            bodies.HistoryEntry(9, "transfer_out", 212, -150, 99850, 1_700_000_000_123),
            bodies.HistoryEntry(3, "deposit", None, 50, 100000, 1_700_000_000_000),
            bodies.HistoryEntry(1, "open", None, 99950, 99950, 0),
        )
        body = bodies.encode_history(entries)
        self.assertEqual(len(body), 2 + 3 * 37)
        self.assertEqual(bodies.decode_history(body), entries)

    def test_history_request_defaults_when_empty(self):
        self.assertEqual(bodies.decode_request(Opcode.TXN_HISTORY, b""), bodies.TxnHistory())

    def test_hello_reply_with_auth_parameters(self):
        reply = bodies.HelloReply(5, bodies.AuthParams(b"s" * 16, 3, 65536, 1))
        self.assertEqual(bodies.decode_hello_reply(bodies.encode_hello_reply(reply)), reply)

    def test_truncated_replies(self):
        for decode, body in ((bodies.decode_hello_reply, b"\x00"),
                             (bodies.decode_hello_reply, b"\x00" * 9),
                             (bodies.decode_login_reply, b"\x00" * 11),
                             (bodies.decode_balance, b""),
                             (bodies.decode_chat_broadcast, b"\x00" * 7),
                             (bodies.decode_chat_broadcast, b"\x00" * 7 + b"\x01"),
                             (bodies.decode_history, b"\x00\x01"),
                             (bodies.decode_history, b"\x00\x01" + b"\x00" * 8 + b"\x09" + b"\x00" * 28)):
            with self.subTest(decode=decode.__name__, body=body):
                self.assertRaises(bodies.BadBody, decode, body)

    def test_names_are_limited_to_31_bytes(self):
        # HELLO's name is an extension: one that is not valid is ignored, as
        # the existing server ignores any HELLO body.
        self.assertEqual(bodies.decode_request(Opcode.HELLO, b"\x00\x20" + b"n" * 32),
                         bodies.Hello())
        self.assertRaises(bodies.BadBody, bodies.decode_request, Opcode.LOGIN,
                          b"\x00\x02\xff\xfe\x00\x00\x00\x00")
        self.assertRaises(bodies.BadBody, bodies.decode_request, Opcode.LOGIN,
                          b"\x00\x02a\x00\x00\x00\x00\x00")

    def test_chat_message_limit_keeps_pushes_within_a_frame(self):
        body = (0).to_bytes(2, "big") + (bodies.MAX_CHAT_MESSAGE + 1).to_bytes(2, "big")
        self.assertRaises(bodies.BadBody, bodies.decode_request, Opcode.CHAT_SEND,
                          body + b"x" * (bodies.MAX_CHAT_MESSAGE + 1))


class TrailingBytesTests(unittest.TestCase):
    """
    Bytes after a request's fields are ignored, as the existing server
    ignores them; a tail that is no valid extension counts as absent.
    """

    SPEC_REQUESTS = (
        bodies.Hello(), bodies.Hello("alice"), bodies.Login("alice", 7),
        bodies.Login("alice", 7, b"p" * 32), bodies.Logout(), bodies.Heartbeat(),
        bodies.JoinRoom(5), bodies.LeaveRoom(5), bodies.ChatSend(5, b"hi"),
        bodies.Deposit(10), bodies.Withdraw(10), bodies.Transfer(212, 150), bodies.Balance(),
        bodies.TxnHistory(3, 9),
    )

    def test_every_request_with_extra_bytes_decodes_as_without(self):
        for request in self.SPEC_REQUESTS:
            opcode, body = bodies.encode_request(request)
            for tail in (b"\x00", b"\xff" * 3, b"junk after the body"):
                with self.subTest(request=request, tail=tail):
                    if isinstance(request, bodies.Hello) and request.auth_name is None:
                        # An empty HELLO followed by bytes: those bytes are the body.
                        continue
                    self.assertEqual(bodies.decode_request(opcode, body + tail), request)

    def test_a_hello_body_that_is_no_name_is_a_plain_hello(self):
        for body in (b"\x00", b"\x00\x05ab", b"\x00\x01\x00", b"\x00\x02\xff\xfe", b"\x00\x00"):
            with self.subTest(body=body):
                self.assertEqual(bodies.decode_request(Opcode.HELLO, body), bodies.Hello())

    def test_a_login_tail_that_is_no_proof_is_no_proof(self):
        _, body = bodies.encode_request(bodies.Login("alice", 7))
        for tail in (b"\x00", b"\x00\x05abc"):
            with self.subTest(tail=tail):
                self.assertEqual(bodies.decode_request(Opcode.LOGIN, body + tail),
                                 bodies.Login("alice", 7))

    def test_missing_fields_are_still_bad(self):
        for opcode, body in ((Opcode.JOIN_ROOM, b"\x00"), (Opcode.CHAT_SEND, b"\x00\x01\x00\x03ab"),
                             (Opcode.DEPOSIT, b"\x00" * 7), (Opcode.TRANSFER, b"\x00" * 11),
                             (Opcode.LOGIN, b"\x00\x01a\x00\x00\x00"),
                             (Opcode.TXN_HISTORY, b"\x00\x05")):
            with self.subTest(opcode=opcode):
                self.assertRaises(bodies.BadBody, bodies.decode_request, opcode, body)
