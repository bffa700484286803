"""
The test vectors in docs/protocols/*.md are what our codecs produce and
accept.  Each test reads its protocol's "Test vectors" table from the doc
itself, so a wrong byte in the doc fails here, and every row of a table must
have an expected meaning below, so no documented vector goes unchecked.
"""

from __future__ import annotations

import os
import re

from twisted.trial import unittest

from protocols import envelope, jsonframe, laptop, nsframe, peerauth, tradechat_bodies as bodies
from protocols.jsonframe import Framing
from protocols.nsframe import FLAG_OBFUSCATED, FLAG_RESPONSE, Frame, Opcode, Status

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "protocols")


def section_table(name: str, heading: str = "## Test vectors") -> dict[str, list[str]]:
    """
    The rows of the first table under C{heading} in
    C{docs/protocols/<name>.md}: first cell -> the other cells, without their
    code backticks.
    """
    with open(os.path.join(DOCS, name + ".md"), encoding="utf-8") as doc:
        text = doc.read()
    section = text.split(f"\n{heading}\n", 1)[1]
    lines = section.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2:]:  # past the header row and its rule
        if not line.startswith("|"):
            break
        cells = [_cell(cell) for cell in _split_row(line.strip())]
        rows[cells[0]] = cells[1:]
    return rows


def _split_row(line: str) -> list[str]:
    """The cells of a table row; a C{|} inside a code span belongs to its cell."""
    cells, current, in_code = [], [], False
    for char in line[1:-1]:
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append("".join(current))
            current = []
        else:
            current.append(char)
    return cells + ["".join(current)]


def _cell(text: str) -> str:
    text = text.strip()
    if text.startswith("`") and text.endswith("`"):
        return text[1:-1]
    return text.replace("`", "")


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(re.sub(r"\s+", "", text))


class VectorTableMixin:
    """
    Checks one doc's vector table: the doc and C{expected} name the same
    vectors, each vector's bytes decode to its meaning, and encoding the
    meaning gives those bytes.  A protocol's test case says how to read a
    row's bytes (C{wire}), check what they decode to (C{check_decoding}) and
    encode its meaning (C{encode}).
    """

    protocol: str
    expected: dict

    def rows(self):
        table = section_table(self.protocol)
        self.assertEqual(sorted(table), sorted(self.expected),
                         f"docs/protocols/{self.protocol}.md's vectors and this test's differ")
        return [(name, cells, self.expected[name]) for name, cells in table.items()]

    def test_each_vector_decodes_to_its_meaning(self):
        for name, cells, meaning in self.rows():
            with self.subTest(name):
                self.check_decoding(self.wire(cells), meaning)

    def test_each_vector_is_what_we_encode(self):
        for name, cells, meaning in self.rows():
            with self.subTest(name):
                self.assertEqual(self.encode(cells, meaning), self.wire(cells))


# ----------------------------------------------------------------- tradechat

NONCE = 0x9E3762017FB48664
PARAMS = bodies.AuthParams(bytes(range(16)), 1, 8, 1)
PROOF = hex_bytes("5b3081d952342162155ce0baab4a8177fa18c1dcc58d54db5da8cada194542a6")
REQUEST, RESPONSE, PUSH = "request", "response", "push"

# name -> (frame with its plain body, kind, the body's meaning)
TRADECHAT = {
    "HELLO request, req_id 1":
        (Frame(Opcode.HELLO, 1), REQUEST, bodies.Hello()),
    "LOGIN request, req_id 2, name alice, token 0f6b7181":
        (Frame(Opcode.LOGIN, 2, body=hex_bytes("0005 616c696365 0f6b7181")), REQUEST,
         bodies.Login("alice", 0x0F6B7181)),
    "LOGIN response: user 999, balance 100000":
        (Frame(Opcode.LOGIN, 2, 0, FLAG_RESPONSE, hex_bytes("000003e7 00000000000186a0")), RESPONSE,
         bodies.LoginReply(999, 100000)),
    "TRANSFER request, req_id 7: 150 to user 212":
        (Frame(Opcode.TRANSFER, 7, body=hex_bytes("000000d4 0000000000000096")), REQUEST,
         bodies.Transfer(212, 150)),
    "WITHDRAW refused, req_id 9: INSUFFICIENT_FUNDS, balance 100150":
        (Frame(Opcode.WITHDRAW, 9, Status.INSUFFICIENT_FUNDS, FLAG_RESPONSE,
               hex_bytes("0000000000018736")), RESPONSE, 100150),
    "CHAT_BROADCAST push: room 1, from 999, hello bob":
        (Frame(Opcode.CHAT_BROADCAST, 0, body=hex_bytes("0001 000003e7 0009 68656c6c6f20626f62")),
         PUSH, bodies.ChatBroadcast(1, 999, b"hello bob")),
    "obfuscated TRANSFER, req_id 4: 48 to user 760":
        (Frame(Opcode.TRANSFER, 4, 0, FLAG_OBFUSCATED, hex_bytes("000002f8 0000000000000030")),
         REQUEST, bodies.Transfer(760, 48)),
    "HELLO response, req_id 1":
        (Frame(Opcode.HELLO, 1, 0, FLAG_RESPONSE, hex_bytes("9e3762017fb48664")), RESPONSE,
         bodies.HelloReply(NONCE)),
    "JOIN_ROOM request, req_id 3: room 1":
        (Frame(Opcode.JOIN_ROOM, 3, body=hex_bytes("0001")), REQUEST, bodies.JoinRoom(1)),
    "CHAT_SEND request, req_id 4: room 1, hello bob":
        (Frame(Opcode.CHAT_SEND, 4, body=hex_bytes("0001 0009 68656c6c6f20626f62")), REQUEST,
         bodies.ChatSend(1, b"hello bob")),
    "BALANCE refused before login, req_id 3: UNAUTHORIZED":
        (Frame(Opcode.BALANCE, 3, Status.UNAUTHORIZED, FLAG_RESPONSE), RESPONSE, None),
    "DEPOSIT request with bytes after its amount, req_id 8: 50":
        (Frame(Opcode.DEPOSIT, 8, body=hex_bytes("0000000000000032 abcd")), REQUEST, bodies.Deposit(50)),
    "JOIN_ROOM request, req_id 3: room 64":
        (Frame(Opcode.JOIN_ROOM, 3, body=hex_bytes("0040")), REQUEST, bodies.JoinRoom(64)),
    "CHAT_SEND refused, req_id 4: not a member, UNAUTHORIZED":
        (Frame(Opcode.CHAT_SEND, 4, Status.UNAUTHORIZED, FLAG_RESPONSE), RESPONSE, None),
    "TRANSFER refused, req_id 6: SELF_TRANSFER":
        (Frame(Opcode.TRANSFER, 6, Status.SELF_TRANSFER, FLAG_RESPONSE), RESPONSE, None),
    "named HELLO request, req_id 1: alice":
        (Frame(Opcode.HELLO, 1, body=hex_bytes("0005 616c696365")), REQUEST, bodies.Hello("alice")),
    "named HELLO response: nonce, Argon2id time 1, 8 KiB, 1 lane, salt 00..0f":
        (Frame(Opcode.HELLO, 1, 0, FLAG_RESPONSE, bodies.encode_hello_reply(
            bodies.HelloReply(NONCE, PARAMS))), RESPONSE, bodies.HelloReply(NONCE, PARAMS)),
    "LOGIN request with proof, req_id 2: alice, password correct horse":
        (Frame(Opcode.LOGIN, 2, body=hex_bytes("0005 616c696365 0f6b7181 0020") + PROOF), REQUEST,
         bodies.Login("alice", 0x0F6B7181, PROOF)),
    "LOGOUT request, req_id 3":
        (Frame(Opcode.LOGOUT, 3), REQUEST, bodies.Logout()),
    "LOGOUT response, req_id 3":
        (Frame(Opcode.LOGOUT, 3, 0, FLAG_RESPONSE), RESPONSE, None),
    "TXN_HISTORY request, req_id 5: limit 2, from the newest":
        (Frame(Opcode.TXN_HISTORY, 5, body=hex_bytes("0002 0000000000000000")), REQUEST,
         bodies.TxnHistory(2, 0)),
    "TXN_HISTORY response, req_id 5: two entries":
        (Frame(Opcode.TXN_HISTORY, 5, 0, FLAG_RESPONSE, bodies.encode_history([
            bodies.HistoryEntry(1027, "transfer_out", 212, -150, 99800, 1795836324000),
            bodies.HistoryEntry(1000, "open", None, 100000, 100000, 1795836316000)])),
         RESPONSE, (bodies.HistoryEntry(1027, "transfer_out", 212, -150, 99800, 1795836324000),
                    bodies.HistoryEntry(1000, "open", None, 100000, 100000, 1795836316000))),
}

_RESPONSE_DECODERS = {
    Opcode.HELLO: bodies.decode_hello_reply,
    Opcode.LOGIN: bodies.decode_login_reply,
    Opcode.WITHDRAW: bodies.decode_balance,
    Opcode.TXN_HISTORY: bodies.decode_history,
}


def decode_tradechat_body(frame: Frame, kind: str):
    if kind == REQUEST:
        return bodies.decode_request(frame.opcode, frame.body)
    if kind == PUSH:
        return bodies.decode_chat_broadcast(frame.body)
    if not frame.body:
        return None
    return _RESPONSE_DECODERS[frame.opcode](frame.body)


class TradeChatVectorTests(VectorTableMixin, unittest.TestCase):
    protocol = "tradechat"
    expected = TRADECHAT

    def wire(self, cells):
        header, body = cells
        return hex_bytes(header) + hex_bytes(body)

    def check_decoding(self, wire, meaning):
        frame, kind, body = meaning
        decoder = nsframe.FrameDecoder()
        decoder.receive(wire)
        self.assertEqual(decoder.frames(), [frame])
        self.assertEqual(decode_tradechat_body(frame, kind), body)

    def encode(self, cells, meaning):
        return nsframe.encode(meaning[0])

    def test_the_login_token_and_proof(self):
        """The documented token and proof follow from the documented formulas."""
        from marketplace.tradechat.auth import derive_client_key, make_proof
        self.assertEqual(bodies.login_token("alice", NONCE), 0x0F6B7181)
        client_key = derive_client_key("correct horse", PARAMS)
        self.assertEqual(client_key.hex(),
                         "bc2a136256d0c616f609fd6ed4cf0866bf86d325c4858c1988539343fd6513a1")
        self.assertEqual(make_proof(client_key, "alice", NONCE), PROOF)


# -------------------------------------------------------------------- laptop

def _server_events(data: bytes, role: int | None = None) -> list:
    """What our server decodes from C{data} (after C{role}, when given)."""
    decoder = laptop.ServerDecoder()
    events = decoder.feed(laptop.encode_role(role)) if role is not None else []
    return events + decoder.feed(data)


def _replies(request_type: int):
    def decode(data: bytes) -> list:
        decoder = laptop.ReplyDecoder()
        decoder.expect(request_type)
        return decoder.feed(data)
    return decode


def _replica_frame(data: bytes) -> list:
    message, end = laptop.decode_replica_message(data)
    assert end == len(data), "the frame does not end where the vector does"
    return [message]


def _replica(message):
    """A replica frame's row: it decodes to C{message}, which encodes to it."""
    return _replica_frame, [message], lambda: laptop.encode_replica_message(message)


def _role_events(role):
    return [laptop.RoleDeclared(role)]


_LEGACY = laptop.LegacyEntry(0, -1, 0, laptop.OPCODE_SET_LAST_ORDER, 1, 0)
_APPEND = laptop.AppendEntries(3, 0, 41, 3, 40, 7, (
    laptop.Entry(3, laptop.OPCODE_SET_LAST_ORDER, 5, 2), laptop.Entry(3, laptop.OPCODE_NOOP, 0, 0)))
_SNAPSHOT = laptop.InstallSnapshot(3, 0, 200000, 3, 9, 3, 2, ((7, 4),))

def _customer_request(request):
    """A customer request's row, as our server decodes it on a customer connection."""
    return ((lambda data: _server_events(data, laptop.ROLE_CUSTOMER)[1:]), [request],
            lambda: laptop.encode_request(request))


def _order_reply(*fields):
    reply = laptop.OrderReply(*fields)
    return _replies(laptop.TYPE_ORDER), [reply], lambda: laptop.encode_order_reply(reply)


def _record_reply(*fields):
    reply = laptop.RecordReply(*fields)
    return _replies(laptop.TYPE_READ), [reply], lambda: laptop.encode_record_reply(reply)


# name -> (decode(bytes) -> events, expected events, encode() -> bytes)
LAPTOP = {
    "customer role":
        (_server_events, _role_events(0), lambda: laptop.encode_role(laptop.ROLE_CUSTOMER)),
    "order request": _customer_request(laptop.CustomerRequest(1, 0, laptop.TYPE_ORDER)),
    "order reply": _order_reply(1, 0, 1, 0, 0),
    "read request": _customer_request(laptop.CustomerRequest(1, -1, laptop.TYPE_READ)),
    "read reply": _record_reply(1, 2),
    "read request, unknown customer": _customer_request(laptop.CustomerRequest(2, -1, laptop.TYPE_READ)),
    "read reply, no record": _record_reply(laptop.NO_VALUE, laptop.NO_VALUE),
    "legacy replication role":
        (_server_events, _role_events(1), lambda: laptop.encode_role(laptop.ROLE_LEGACY_REPLICATION)),
    "legacy entry":
        (lambda data: _server_events(data, laptop.ROLE_LEGACY_REPLICATION)[1:], [_LEGACY],
         lambda: laptop.encode_legacy_entry(_LEGACY)),
    "legacy ack":
        (lambda data: [int.from_bytes(data, "big", signed=True)], [1],
         lambda: laptop.encode_legacy_ack(1)),
    "failed order reply": _order_reply(laptop.NO_VALUE, 3, 1, 2, 1),
    "failed read reply": _record_reply(laptop.NO_VALUE, laptop.READ_FAILED),
    "replica link role":
        (_server_events, _role_events(2), lambda: laptop.encode_role(laptop.ROLE_REPLICA)),
    "Hello": _replica(laptop.Hello(1)),
    "AppendEntries": _replica(_APPEND),
    "AppendReply, success": _replica(laptop.AppendReply(3, 1, True, 43, 7)),
    "AppendReply, failure": _replica(laptop.AppendReply(3, 1, False, 12, 7)),
    "VoteRequest, pre-vote": _replica(laptop.VoteRequest(4, 2, 43, 3, True)),
    "VoteReply, pre-vote granted": _replica(laptop.VoteReply(4, 0, True, True)),
    "InstallSnapshot, last chunk": _replica(_SNAPSHOT),
    "SnapshotReply": _replica(laptop.SnapshotReply(3, 1, 200000, 2, 9)),
    "ForwardRequest": _replica(laptop.ForwardRequest(17, 5, 3, 1)),
    "ForwardReply, ok": _replica(laptop.ForwardReply(17, laptop.FORWARD_OK, -1, 0)),
    "ForwardReply, retry elsewhere": _replica(laptop.ForwardReply(18, laptop.FORWARD_RETRY, -1, -1)),
}


class LaptopVectorTests(VectorTableMixin, unittest.TestCase):
    protocol = "laptop"
    expected = LAPTOP

    def wire(self, cells):
        return hex_bytes(cells[0])

    def check_decoding(self, wire, meaning):
        decode, events, _ = meaning
        self.assertEqual(decode(wire), events)

    def encode(self, cells, meaning):
        return meaning[2]()


# -------------------------------------------------------------------- market

_FRAMINGS = {"length-prefixed": Framing.LENGTH_PREFIXED, "newline": Framing.NEWLINE}

# name -> the envelope the row's JSON is
MARKET = {
    "GetItem request": envelope.Request("GetItem", None, {"item_id": 1}),
    "the same request, typed": envelope.Request("GetItem", None, {"item_id": 1}),
    "CreateAccount response": envelope.Reply("CreateAccount", None, {"buyer_id": 1}),
    "unknown api": envelope.ErrorReply("Fly", None, "404_NOT_FOUND", "unknown api 'Fly'"),
    "not JSON": envelope.ErrorReply(
        None, None, "BAD_REQUEST", "malformed JSON: Expecting value: line 1 column 1 (char 0)"),
}


def _encode_envelope(value) -> bytes:
    if isinstance(value, envelope.Request):
        return envelope.encode_request(value.api, value.session_id, value.payload)
    if isinstance(value, envelope.Reply):
        return envelope.encode_response(value.api, value.session_id, value.payload)
    return envelope.encode_error(value.api, value.session_id, value.code, value.message)


class MarketVectorTests(VectorTableMixin, unittest.TestCase):
    protocol = "market"
    expected = MARKET

    def wire(self, cells):
        framing, prefix, text = cells
        return hex_bytes(prefix) + text.encode("utf-8") + (b"\n" if framing == "newline" else b"")

    def check_decoding(self, wire, meaning):
        [frame] = jsonframe.FrameDecoder().feed(wire)
        if isinstance(meaning, envelope.Request):
            self.assertEqual(envelope.parse_request(frame.data), meaning)
        else:
            self.assertEqual(envelope.parse_reply(frame.data), meaning)

    def encode(self, cells, meaning):
        framing = _FRAMINGS[cells[0]]
        self.assertIs(jsonframe.detect_framing(self.wire(cells)[0]), framing)
        return jsonframe.encode_frame(framing, _encode_envelope(meaning))


# ------------------------------------------------------------------ peerauth

PEERAUTH_SECRET = b"correct horse battery staple"
PEERAUTH = {"laptop-replica": b"laptop-replica", "market-service": b"market-service"}


class PeerAuthVectorTests(VectorTableMixin, unittest.TestCase):
    """Both ends of the handshake, on the documented nonces, say and accept the documented bytes."""

    protocol = "peerauth"
    expected = PEERAUTH

    def wire(self, cells):
        return [hex_bytes(cell) for cell in cells]

    def check_decoding(self, wire, label):
        challenge, answer, confirmation = wire
        acceptor = peerauth.Acceptor(PEERAUTH_SECRET, label, bytes([0x11]) * 32)
        acceptor.start()
        self.assertEqual(acceptor.receive(answer), peerauth.Step(send=confirmation, done=True))
        connector = peerauth.Connector(PEERAUTH_SECRET, label, bytes([0x22]) * 32)
        self.assertEqual(connector.receive(challenge), peerauth.Step(send=answer))
        self.assertEqual(connector.receive(confirmation), peerauth.Step(done=True))

    def encode(self, cells, label):
        acceptor = peerauth.Acceptor(PEERAUTH_SECRET, label, bytes([0x11]) * 32)
        connector = peerauth.Connector(PEERAUTH_SECRET, label, bytes([0x22]) * 32)
        challenge = acceptor.start()
        answer = connector.receive(challenge).send
        return [challenge, answer, acceptor.receive(answer).send]
