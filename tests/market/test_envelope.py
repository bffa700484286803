"""
Tests for protocols.envelope: request parsing, reply encoding, exact money.
"""

import json
from decimal import Decimal

from twisted.trial import unittest

from protocols.envelope import (
    EncodedPayload,
    EnvelopeError,
    ErrorReply,
    Reply,
    Request,
    encode_error,
    encode_json,
    encode_request,
    encode_response,
    parse_reply,
    parse_reply_encoded,
    parse_request,
)


class ParseRequestTests(unittest.TestCase):
    def test_spec_request(self):
        data = b'{"type":"request","api":"Login","session_id":null,"payload":{"username":"ann"}}'
        self.assertEqual(parse_request(data), Request("Login", None, {"username": "ann"}))

    def test_session_id_kept_exactly(self):
        data = encode_request("Logout", "s-\u00e9", {})
        self.assertEqual(parse_request(data).session_id, "s-\u00e9")

    def test_missing_session_id_is_none(self):
        data = b'{"type":"request","api":"Login","payload":{}}'
        self.assertIsNone(parse_request(data).session_id)

    def test_fractions_are_decimal(self):
        data = b'{"type":"request","api":"X","session_id":null,"payload":{"price":10.10}}'
        price = parse_request(data).payload["price"]
        self.assertIsInstance(price, Decimal)
        self.assertEqual(price, Decimal("10.10"))

    def assertBadRequest(self, data, fragment, api=None, session_id=None):
        error = self.assertRaises(EnvelopeError, parse_request, data)
        self.assertEqual(error.code, "BAD_REQUEST")
        self.assertIn(fragment, error.message)
        self.assertEqual((error.api, error.session_id), (api, session_id))

    def test_malformed_json(self):
        self.assertBadRequest(b'{"type":', "malformed JSON")

    def test_not_utf8(self):
        self.assertBadRequest(b'{"a":"\xff"}', "not UTF-8")

    def test_nan_refused(self):
        self.assertBadRequest(b'{"a":NaN}', "malformed JSON")

    def test_deep_nesting(self):
        self.assertBadRequest(b"[" * 100000 + b"]" * 100000, "malformed JSON")

    def test_huge_integer(self):
        self.assertBadRequest(b'{"a":' + b"9" * 5000 + b"}", "malformed JSON")

    def test_not_object(self):
        self.assertBadRequest(b"[1,2]", "JSON object")

    def test_wrong_type(self):
        self.assertBadRequest(
            b'{"type":"response","api":"Login","session_id":"s1","payload":{}}',
            '"type"',
            api="Login",
            session_id="s1",
        )

    def test_missing_api(self):
        self.assertBadRequest(b'{"type":"request","payload":{}}', '"api"')

    def test_api_not_string(self):
        self.assertBadRequest(b'{"type":"request","api":7,"payload":{}}', '"api"')

    def test_missing_payload(self):
        self.assertBadRequest(b'{"type":"request","api":"Login"}', '"payload"', api="Login")

    def test_payload_not_object(self):
        self.assertBadRequest(
            b'{"type":"request","api":"Login","payload":[]}', '"payload"', api="Login"
        )

    def test_session_id_wrong_type_is_echoed_as_sent(self):
        self.assertBadRequest(
            b'{"type":"request","api":"Login","session_id":5,"payload":{}}',
            '"session_id"',
            api="Login",
            session_id=5,
        )
        self.assertBadRequest(
            b'{"type":"request","api":"Login","session_id":1.50,"payload":{}}',
            '"session_id"',
            api="Login",
            session_id=Decimal("1.50"),
        )

    def test_session_id_object_is_not_echoed(self):
        self.assertBadRequest(
            b'{"type":"request","api":"Login","session_id":{"a":[1]},"payload":{}}',
            '"session_id"',
            api="Login",
        )

    def test_lone_surrogate_in_api_is_bad_request(self):
        self.assertBadRequest(
            b'{"type":"request","api":"X\\ud800","session_id":null,"payload":{}}',
            "lone surrogate \\ud800")

    def test_lone_surrogate_in_session_id_is_bad_request(self):
        self.assertBadRequest(
            b'{"type":"request","api":"Echo","session_id":"\\udfff","payload":{}}',
            "lone surrogate \\udfff")

    def test_lone_surrogate_deep_in_payload_is_bad_request(self):
        self.assertBadRequest(
            b'{"type":"request","api":"X","payload":{"a":[{"\\ud83d x":1}]}}',
            "lone surrogate")

    def test_surrogate_pair_is_text(self):
        data = b'{"type":"request","api":"X","payload":{"name":"\\ud83d\\ude00"}}'
        self.assertEqual(parse_request(data).payload["name"], "\U0001f600")

    def test_escaped_backslash_before_u_is_text(self):
        data = b'{"type":"request","api":"X","payload":{"name":"\\\\ud800"}}'
        self.assertEqual(parse_request(data).payload["name"], "\\ud800")


class EncodeTests(unittest.TestCase):
    def test_lone_surrogate_is_written_as_its_escape(self):
        encoded = encode_json({"api": "X\ud800"})
        self.assertEqual(encoded, b'{"api":"X\\ud800"}')
        self.assertEqual(json.loads(encoded), {"api": "X\ud800"})

    def test_response_bytes(self):
        self.assertEqual(
            encode_response("Login", "abc", {"buyer_id": 3}),
            b'{"type":"response","api":"Login","session_id":"abc","payload":{"buyer_id":3}}',
        )

    def test_error_bytes(self):
        self.assertEqual(
            encode_error("GetItem", None, "CLIENT_ERROR", "no such item"),
            b'{"type":"error","api":"GetItem","session_id":null,'
            b'"error":{"code":"CLIENT_ERROR","message":"no such item"}}',
        )

    def test_error_fields_sit_beside_code_and_message(self):
        self.assertEqual(
            encode_error("MakePurchase", None, "SERVICE_UNAVAILABLE", "down",
                         {"idempotency_key": "k", "code": "ignored"}),
            b'{"type":"error","api":"MakePurchase","session_id":null,"error":'
            b'{"idempotency_key":"k","code":"SERVICE_UNAVAILABLE","message":"down"}}',
        )
        reply = parse_reply(encode_error("X", None, "CLIENT_ERROR", "no", {"extra": 1}))
        self.assertEqual(reply, ErrorReply("X", None, "CLIENT_ERROR", "no"))

    def test_utf8_not_escaped(self):
        self.assertIn("caf\u00e9".encode(), encode_json({"name": "caf\u00e9"}))

    def test_decimal_written_exactly(self):
        encoded = encode_json({"price": Decimal("19.99"), "total": Decimal("30.00")})
        self.assertEqual(encoded, b'{"price":19.99,"total":30}')

    def test_decimal_round_trips_through_parse(self):
        for text in ("0.01", "12345678901.23", "0.1", "1E+2"):
            value = Decimal(text)
            parsed = json.loads(encode_json([value]), parse_float=Decimal)[0]
            self.assertEqual(parsed, value)

    def test_long_decimal_written_exactly(self):
        value = Decimal("94863039530270.63")
        self.assertEqual(encode_json({"price": value, "n": Decimal("1.5")}),
                         b'{"price":94863039530270.63,"n":1.5}')
        self.assertEqual(json.loads(encode_json([Decimal("0.12345678901234567890")]),
                                    parse_float=Decimal), [Decimal("0.12345678901234567890")])

    def test_huge_exponents_stay_compact_and_exact(self):
        for text in ("1E+999999999", "-2.5E-999999999", "1E+18"):
            encoded = encode_json([Decimal(text)])
            self.assertLess(len(encoded), 40)
            self.assertEqual(json.loads(encoded, parse_float=Decimal), [Decimal(text)])

    def test_nan_refused(self):
        self.assertRaises(ValueError, encode_json, [Decimal("NaN")])
        self.assertRaises(ValueError, encode_json, [float("inf")])

    def test_no_raw_newline(self):
        self.assertNotIn(b"\n", encode_json({"text": "a\nb"}))


class ParseReplyTests(unittest.TestCase):
    def test_response(self):
        self.assertEqual(
            parse_reply(encode_response("Login", "s", {"seller_id": 1})),
            Reply("Login", "s", {"seller_id": 1}),
        )

    def test_error(self):
        self.assertEqual(
            parse_reply(encode_error("Login", None, "CLIENT_ERROR", "bad password")),
            ErrorReply("Login", None, "CLIENT_ERROR", "bad password"),
        )

    def test_garbage(self):
        for data in (b"nope", b"[]", b'{"type":"response"}', b'{"type":"error","error":{}}'):
            self.assertRaises(EnvelopeError, parse_reply, data)


class EncodedPayloadTests(unittest.TestCase):
    """A payload passed on without decoding goes out exactly as if it had been."""

    PAYLOAD = {"items": [{"name": "l\u00e4mp", "price": Decimal("4.50")}], "total": 1}

    def test_reply_with_encoded_payload_is_byte_identical(self):
        encoded = EncodedPayload(encode_json(self.PAYLOAD))
        for session_id in (None, "s-1"):
            self.assertEqual(encode_response("Search", session_id, encoded),
                             encode_response("Search", session_id, self.PAYLOAD))

    def test_our_replies_are_passed_on_undecoded(self):
        frame = encode_response("Search", None, self.PAYLOAD)
        reply = parse_reply_encoded(frame, "Search")
        self.assertIsInstance(reply.payload, EncodedPayload)
        self.assertEqual(encode_response("SearchItemsForSale", None, reply.payload),
                         encode_response("SearchItemsForSale", None, self.PAYLOAD))

    def test_other_layouts_are_decoded_and_encoded_again(self):
        frame = b'{"payload":{"total":1},"api":"Search","type":"response","session_id":null}'
        reply = parse_reply_encoded(frame, "Search")
        self.assertEqual((reply.payload, type(reply.payload)), (b'{"total":1}', EncodedPayload))

    def test_errors_stay_errors(self):
        frame = encode_error("Search", None, "CLIENT_ERROR", "no")
        self.assertEqual(parse_reply_encoded(frame, "Search"),
                         ErrorReply("Search", None, "CLIENT_ERROR", "no"))
        self.assertRaises(EnvelopeError, parse_reply_encoded, b"nope", "Search")
