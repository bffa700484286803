"""
Fuzzed frames against the envelope server, in both framings.

Four layers: raw bytes (framing and the frame cap), arbitrary JSON documents
(the envelope rules), envelopes with arbitrary payloads against the real buyer
and seller front ends over the real DB services, and arbitrary payloads for
every internal api of the DB services themselves, all on the embedded store.
Everything runs synchronously over ``StringTransport``: the front ends reach
the DB services through the real codec without sockets, passwords hash on the
calling thread, and the store runs on a ``task.Clock``.  The properties:
nothing raises out of the protocol, nothing is buffered beyond the cap, every
complete frame gets exactly one well-formed reply in order, the connection
stays open, and no fuzzed input ever produces ``SERVER_ERROR`` (which would
also log a failure, which trial reports).
"""

from decimal import Decimal
import json
import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from marketplace.market.accounts import KdfCost, Passwords
from marketplace.market.buyer_front import BuyerFront
from marketplace.market.customer_db import CustomerDbService
from marketplace.market.dbservice import make_dispatch
from marketplace.market.errors import ApiError, error_for_code
from marketplace.market.payments import ApprovalPolicy, PaymentsService
from marketplace.market.product_db import ProductDbService
from marketplace.market.seller_front import SellerFront
from marketplace.metrics import Counters
from marketplace.net import Listener
from marketplace.store import make_store
from protocols.envelope import (
    ErrorReply,
    encode_error,
    encode_request,
    encode_response,
    parse_reply,
    parse_reply_encoded,
    parse_request,
)
from protocols.envelope_server import EnvelopeServerFactory
from protocols.jsonframe import Frame, FrameDecoder, Framing, detect_framing, encode_frame
from tests.support.services import listening_port, start_service

CAP = 256
DOCUMENTED_CODES = {"BAD_REQUEST", "404_NOT_FOUND", "CLIENT_ERROR", "SERVER_ERROR",
                    "SERVICE_UNAVAILABLE", "TIMEOUT", "FRAME_TOO_LARGE"}
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def connect(dispatch, max_frame=CAP):
    factory = EnvelopeServerFactory(dispatch, Counters(), max_frame=max_frame, reactor=Clock())
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def replies(transport, framing):
    """Every reply written, parsed; a malformed one raises and fails the test."""
    frames = FrameDecoder(1 << 20, framing).feed(transport.value())
    assert all(isinstance(f, Frame) for f in frames), frames
    return [parse_reply(f.data) for f in frames]


def echo(request):
    return None, {"echo": request.payload}


def chunks(data, cuts):
    edges = sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    start = 0
    for edge in edges:
        yield data[start:edge]
        start = edge


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class RawBytesTests(unittest.TestCase):
    @FUZZ
    @given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=10))
    def test_any_bytes_never_crash_or_overbuffer(self, data, cuts):
        protocol, transport = connect(echo)
        for piece in chunks(data, cuts):
            protocol.dataReceived(piece)
            self.assertLessEqual(protocol.buffered, CAP + 4)
        framing = detect_framing(data[0]) if data else Framing.LENGTH_PREFIXED
        for reply in replies(transport, framing):
            if isinstance(reply, ErrorReply):
                self.assertIn(reply.code, DOCUMENTED_CODES - {"SERVER_ERROR"})
        self.assertFalse(transport.disconnecting)

    @FUZZ
    @given(lines=st.lists(st.binary(max_size=400).map(lambda b: b.replace(b"\n", b"")),
                          max_size=8))
    def test_newline_garbage_one_reply_per_line(self, lines):
        protocol, transport = connect(echo)
        data = b"{" + b"\n{".join(lines) + b"\n"
        protocol.dataReceived(data)
        expected = len([line for line in (b"{" + b"\n{".join(lines)).split(b"\n")
                        if line.rstrip(b"\r").strip()])
        self.assertEqual(len(replies(transport, Framing.NEWLINE)), expected)
        self.assertLessEqual(protocol.buffered, CAP)

    @FUZZ
    @given(sizes=st.lists(st.integers(0, 3 * CAP), min_size=1, max_size=6),
           cuts=st.lists(st.integers(0, 5000), max_size=10))
    def test_length_prefixed_oversize_frames_skipped_in_sync(self, sizes, cuts):
        protocol, transport = connect(echo)
        data = b"".join(struct.pack(">I", n) + b"x" * n for n in sizes)
        for piece in chunks(data, cuts):
            protocol.dataReceived(piece)
            self.assertLessEqual(protocol.buffered, CAP + 4)
        codes = [r.code if isinstance(r, ErrorReply) else None
                 for r in replies(transport, Framing.LENGTH_PREFIXED)]
        self.assertEqual(codes, ["FRAME_TOO_LARGE" if n > CAP else "BAD_REQUEST" for n in sizes])


class EnvelopeFuzzTests(unittest.TestCase):
    @FUZZ
    @given(documents=st.lists(json_values, min_size=1, max_size=6), newline=st.booleans())
    def test_any_json_one_reply_each_in_order(self, documents, newline):
        protocol, transport = connect(echo, max_frame=1 << 16)
        framing = Framing.NEWLINE if newline else Framing.LENGTH_PREFIXED
        bodies = [json.dumps(doc, default=str).encode() for doc in documents]
        protocol.dataReceived(b"".join(encode_frame(framing, body) for body in bodies))
        self.assertEqual(len(replies(transport, framing)), len(bodies))
        self.assertFalse(transport.disconnecting)

    @FUZZ
    @given(api=st.text(max_size=10), session_id=st.none() | st.text(max_size=10),
           payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
    def test_valid_envelopes_reach_dispatch_unchanged(self, api, session_id, payload):
        seen = []
        protocol, transport = connect(lambda request: seen.append(request) or (None, {}),
                                      max_frame=1 << 16)
        protocol.dataReceived(encode_frame(Framing.LENGTH_PREFIXED,
                                           encode_request(api, session_id, payload)))
        [reply] = replies(transport, Framing.LENGTH_PREFIXED)
        if api:
            self.assertEqual([(r.api, r.session_id, r.payload) for r in seen],
                             [(api, session_id, payload)])
        else:
            self.assertEqual((seen, reply.code), ([], "BAD_REQUEST"))


class DirectClient:
    """
    ``ServiceClient.call`` straight into a service's dispatch through the real
    codec, so requests and replies are exactly what the wire would carry.
    A failure that is not an ``ApiError`` is passed on raw, so it surfaces as
    the front end's ``SERVER_ERROR`` and fails the test.
    """

    def __init__(self, dispatch):
        self.dispatch = dispatch

    def call(self, api, payload, session_id=None, idempotent=False, encoded=False):
        request = parse_request(encode_request(api, session_id, payload))
        d = defer.maybeDeferred(self.dispatch, request)

        def replied(result):
            frame = encode_response(api, *result)
            reply = parse_reply_encoded(frame, api) if encoded else parse_reply(frame)
            return reply.session_id, reply.payload

        def refused(failure):
            failure.trap(ApiError)
            error = failure.value
            reply = parse_reply(encode_error(api, session_id, error.code, error.message))
            raise error_for_code(reply.code, reply.message)

        return d.addCallbacks(replied, refused)


SPEC_FIELDS = ("username", "password", "item_id", "quantity", "price", "item_name", "category",
               "keywords", "condition", "seller_id", "thumbs_up", "is_positive", "name",
               "card_number", "expiration_date", "security_code", "offset", "limit",
               "include_out_of_stock", "idempotency_key")
BUYER_APIS = ("CreateAccount", "Login", "Logout", "SearchItemsForSale", "GetItem",
              "AddItemToCart", "RemoveItemFromCart", "SaveCart", "ClearCart", "DisplayCart",
              "ProvideFeedback", "GetSellerRating", "GetBuyerPurchases", "MakePurchase")
SELLER_APIS = ("CreateAccount", "Login", "Logout", "GetSellerRating", "RegisterItemForSale",
               "ChangeItemPrice", "UpdateUnitsForSale", "DisplayItemsForSale")

field_values = (
    json_values
    | st.integers(-3, 12)
    | st.sampled_from(["1", "new", "used", "4111111111111111", "12/99", "123", "ann", "pw"])
    | st.decimals(min_value=-5, max_value=100, places=2)
    | st.sampled_from([Decimal("1E+30"), Decimal("-1E+400"), Decimal("9007199254740.99")])
    | st.lists(st.sampled_from(["red", "mug", "toolongword", "", "UP"]), max_size=7)
)
payloads = st.dictionaries(st.sampled_from(SPEC_FIELDS), field_values, max_size=6)


def db_tables(clock):
    """The three DB services' handler tables over one embedded store."""
    store = make_store("memory", reactor=clock)
    return {
        "customer-db": CustomerDbService(store.sessions, store.customers, clock,
                                         300.0).dispatch_table(),
        "product-db": ProductDbService(store.catalog).dispatch_table(),
        "payments": PaymentsService(store.ledger, ApprovalPolicy("all"), clock).dispatch_table(),
    }


def assert_clean_replies(testcase, dispatch, calls, newline):
    """One well-formed reply per call, never SERVER_ERROR, connection still open."""
    protocol, transport = connect(dispatch, max_frame=1 << 16)
    framing = Framing.NEWLINE if newline else Framing.LENGTH_PREFIXED
    protocol.dataReceived(b"".join(
        encode_frame(framing, encode_request(api, session_id, payload))
        for api, session_id, payload in calls))
    answers = replies(transport, framing)
    testcase.assertEqual(len(answers), len(calls))
    for call, reply in zip(calls, answers):
        if isinstance(reply, ErrorReply):
            testcase.assertNotEqual(reply.code, "SERVER_ERROR", (call, reply))
            testcase.assertIn(reply.code, DOCUMENTED_CODES)
    testcase.assertFalse(transport.disconnecting)


class FrontEndFuzzTests(unittest.TestCase):
    """Arbitrary payloads against the real front ends: always a clean reply."""

    def setUp(self):
        clock = Clock()
        clock.advance(1_800_000_000)
        tables = db_tables(clock)
        customers, products, payments = (DirectClient(make_dispatch(tables[name]))
                                         for name in ("customer-db", "product-db", "payments"))
        passwords = Passwords(KdfCost(time_cost=1, memory_kib=64), defer.maybeDeferred)
        self.fronts = {
            "buyer": make_dispatch(BuyerFront(customers, products, payments, passwords,
                                              clock).dispatch_table()),
            "seller": make_dispatch(SellerFront(customers, products, passwords).dispatch_table()),
        }
        self.sessions = {}
        for role, dispatch in self.fronts.items():
            protocol, transport = connect(dispatch, max_frame=1 << 16)
            for api, payload in (("CreateAccount", {"username": role, "password": "pw-pw-pw"}),
                                 ("Login", {"username": role, "password": "pw-pw-pw"})):
                protocol.dataReceived(encode_frame(Framing.LENGTH_PREFIXED,
                                                   encode_request(api, None, payload)))
            self.sessions[role] = replies(transport, Framing.LENGTH_PREFIXED)[-1].session_id
        self.assertTrue(all(self.sessions.values()), self.sessions)

    def check(self, role, calls, newline):
        calls = [(api, self.sessions[role] if use_session else None, payload)
                 for api, use_session, payload in calls]
        assert_clean_replies(self, self.fronts[role], calls, newline)

    @FUZZ
    @given(calls=st.lists(st.tuples(st.sampled_from(BUYER_APIS), st.booleans(), payloads),
                          min_size=1, max_size=6), newline=st.booleans())
    def test_buyer_front(self, calls, newline):
        self.check("buyer", calls, newline)

    @FUZZ
    @given(calls=st.lists(st.tuples(st.sampled_from(SELLER_APIS), st.booleans(), payloads),
                          min_size=1, max_size=6), newline=st.booleans())
    def test_seller_front(self, calls, newline):
        self.check("seller", calls, newline)


INTERNAL_FIELDS = ("username", "password_hash", "role", "user_id", "seller_id", "buyer_id",
                   "item_id", "quantity", "price_cents", "item_name", "category", "keywords",
                   "condition_is_new", "purchase_id", "amount_cents", "reservation_id", "lines",
                   "items", "thumbs_up", "offset", "limit", "name", "card_number",
                   "expiration_date", "security_code", "include_out_of_stock")


class DbServiceFuzzTests(unittest.TestCase):
    """
    Arbitrary payloads for every internal api of every DB service (the api
    names come from their own tables): a confused or hostile caller gets
    clean errors too.
    """

    def setUp(self):
        clock = Clock()
        clock.advance(1_800_000_000)
        self.tables = db_tables(clock)
        self.dispatch = {name: make_dispatch(table) for name, table in self.tables.items()}

    @FUZZ
    @given(data=st.data(), newline=st.booleans())
    def test_db_services(self, data, newline):
        service = data.draw(st.sampled_from(sorted(self.tables)))
        calls = data.draw(st.lists(st.tuples(
            st.sampled_from(sorted(self.tables[service])),
            st.none() | st.text(max_size=6),
            st.dictionaries(st.sampled_from(INTERNAL_FIELDS), field_values, max_size=6)),
            min_size=1, max_size=6))
        assert_clean_replies(self, self.dispatch[service], calls, newline)


class _Collector(Protocol):
    """Raw TCP client: sends bytes, collects replies until ``expected`` frames arrived."""

    def __init__(self, framing, expected):
        self.decoder = FrameDecoder(1 << 20, framing)
        self.expected = expected
        self.frames = []
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.frames += self.decoder.feed(data)
        if len(self.frames) >= self.expected and not self.done.called:
            self.done.callback(self.frames)


class RealSocketTests(unittest.TestCase):
    """Volumes of garbage over real sockets: answered in order, service still serving."""

    timeout = 30

    @defer.inlineCallbacks
    def pipeline(self, framing, bodies):
        listener = Listener("tcp:0:interface=127.0.0.1",
                            EnvelopeServerFactory(echo, Counters(), max_frame=CAP))
        start_service(self, listener)
        port = yield listening_port(listener)
        collector = _Collector(framing, len(bodies))
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), collector)
        self.addCleanup(collector.transport.loseConnection)
        collector.transport.write(b"".join(encode_frame(framing, body) for body in bodies))
        frames = yield collector.done
        return [parse_reply(frame.data) for frame in frames]

    @defer.inlineCallbacks
    def test_thousands_of_pipelined_frames_both_framings(self):
        rng = random.Random(5)
        garbage = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, CAP)))
                   for _ in range(1500)]
        valid = encode_request("Echo", None, {"n": 1})
        for framing in (Framing.LENGTH_PREFIXED, Framing.NEWLINE):
            bodies = [b"{" + body.replace(b"\n", b"") for body in garbage] + [valid]
            answers = yield self.pipeline(framing, bodies)
            self.assertEqual(len(answers), len(bodies))
            self.assertTrue(all(isinstance(a, ErrorReply) and a.code == "BAD_REQUEST"
                                for a in answers[:-1]))
            self.assertEqual(answers[-1].payload, {"echo": {"n": 1}})
