"""
Card checks, the approval policies, and capture once per purchase key.
"""

from datetime import datetime, timezone

from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.market import validation
from marketplace.market.errors import ClientError
from marketplace.market.payments import (
    MERCHANT_ACCOUNT,
    ApprovalPolicy,
    PaymentsService,
    card_from_payload,
    luhn_valid,
)
from marketplace.store import make_store
from protocols.envelope import Request

NOW = datetime(2026, 11, 22, tzinfo=timezone.utc).timestamp()
CARD = {"name": "Bea", "card_number": "4111-1111-1111-1111",
        "expiration_date": "11/26", "security_code": "123"}


class CardTests(unittest.TestCase):
    def test_luhn(self):
        self.assertTrue(luhn_valid("4111111111111111"))
        self.assertTrue(luhn_valid("79927398713"))
        self.assertFalse(luhn_valid("79927398710"))

    def test_a_valid_card(self):
        card = card_from_payload(CARD, NOW)
        self.assertEqual((card.number, card.expiry_month, card.expiry_year), ("4111111111111111", 11, 2026))

    def test_refusals_name_the_problem(self):
        cases = [({"card_number": "4111111111111112"}, "card number"),
                 ({"card_number": "41"}, "card number"),
                 ({"expiration_date": "10/26"}, "expired"),
                 ({"expiration_date": "13/30"}, "MM/YY"),
                 ({"expiration_date": 1230}, "MM/YY"),
                 ({"security_code": "12a"}, "3 or 4 digits"),
                 ({"name": ""}, "name")]
        for change, words in cases:
            error = self.assertRaises(ClientError, card_from_payload, {**CARD, **change}, NOW)
            self.assertIn(words, error.message)


class PolicyTests(unittest.TestCase):
    def test_policies(self):
        self.assertTrue(ApprovalPolicy("all").decide("k", 10**9).approved)
        self.assertFalse(ApprovalPolicy("none").decide("k", 1).approved)
        limit = ApprovalPolicy("max:500")
        self.assertEqual([limit.decide("k", a).approved for a in (500, 501)], [True, False])

    def test_ratio_is_deterministic_per_key(self):
        policy = ApprovalPolicy("ratio:0.5")
        decisions = [policy.decide(f"key{i}", 100).approved for i in range(200)]
        self.assertEqual(decisions, [ApprovalPolicy("ratio:0.5").decide(f"key{i}", 100).approved
                                     for i in range(200)])
        self.assertTrue(60 < sum(decisions) < 140, sum(decisions))

    def test_unknown_policies_are_refused(self):
        for spec in ("some", "max:", "max:-1", "ratio:2", "ratio:x", "all:1"):
            self.assertRaises(ValueError, ApprovalPolicy, spec)


class AuthorizeTests(unittest.TestCase):
    def setUp(self):
        self.clock = clock = task.Clock()
        clock.advance(NOW)
        self.store = make_store("memory", reactor=clock)
        self.service = PaymentsService(self.store.ledger, ApprovalPolicy("max:5000"), clock)

    def authorize(self, key, amount, attempt=1, **card):
        request = Request("Authorize", None, {"purchase_id": key, "attempt": attempt,
                                              "amount_cents": amount, **CARD, **card})
        return defer.maybeDeferred(self.service.authorize, request).addCallback(lambda reply: reply[1])

    def void(self, key, amount, attempt=1):
        request = Request("Void", None, {"purchase_id": key, "attempt": attempt,
                                         "amount_cents": amount})
        return defer.maybeDeferred(self.service.void, request).addCallback(lambda reply: reply[1])

    def balance(self):
        return self.store.ledger.balance(MERCHANT_ACCOUNT)

    @defer.inlineCallbacks
    def test_approved_amounts_are_captured_once_per_key(self):
        first = yield self.authorize("p1", 1200)
        again = yield self.authorize("p1", 1200)
        self.assertEqual(first, again)
        self.assertTrue(first["approved"])
        yield self.authorize("p2", 300)
        self.assertEqual((yield self.store.ledger.balance(MERCHANT_ACCOUNT)), 1500)

    @defer.inlineCallbacks
    def test_a_total_above_the_limit_is_refused_and_not_captured(self):
        self.service = PaymentsService(self.store.ledger, ApprovalPolicy("all"), self.clock)
        error = yield self.assertFailure(
            self.authorize("p1", validation.MAX_PURCHASE_CENTS + 1), ClientError)
        self.assertIn("above the maximum", error.message)
        yield self.authorize("p2", validation.MAX_PURCHASE_CENTS)
        self.assertEqual((yield self.store.ledger.balance(MERCHANT_ACCOUNT)),
                         validation.MAX_PURCHASE_CENTS)

    @defer.inlineCallbacks
    def test_declines_and_bad_cards_capture_nothing(self):
        declined = yield self.authorize("p1", 5001)
        self.assertFalse(declined["approved"])
        yield self.assertFailure(self.authorize("p2", 10, security_code="1"), ClientError)
        free = yield self.authorize("p3", 0)
        self.assertEqual(free["captured_cents"], 0)
        yield self.authorize("p4", 1)
        self.assertEqual((yield self.store.ledger.balance(MERCHANT_ACCOUNT)), 1)

    @defer.inlineCallbacks
    def test_each_attempt_of_a_purchase_is_its_own_payment(self):
        yield self.authorize("p1", 1200, attempt=1)
        yield self.authorize("p1", 1200, attempt=1)
        yield self.authorize("p1", 1200, attempt=2)
        self.assertEqual((yield self.balance()), 2400)

    @defer.inlineCallbacks
    def test_a_void_refunds_a_payment_once(self):
        yield self.authorize("p1", 1200)
        yield self.authorize("p2", 300)
        self.assertEqual((yield self.void("p1", 1200)), {"refunded_cents": 1200})
        yield self.void("p1", 1200)
        self.assertEqual((yield self.balance()), 300)
        # A retried authorisation of the voided attempt takes nothing more.
        yield self.authorize("p1", 1200)
        self.assertEqual((yield self.balance()), 300)

    @defer.inlineCallbacks
    def test_a_payment_voided_before_it_arrives_is_never_taken(self):
        yield self.void("p1", 1200)
        late = yield self.authorize("p1", 1200)
        self.assertTrue(late["approved"])
        self.assertEqual((yield self.balance()), 0)
        yield self.authorize("p1", 1200, attempt=2)
        self.assertEqual((yield self.balance()), 1200)

    @defer.inlineCallbacks
    def test_nothing_to_void(self):
        self.assertEqual((yield self.void("p1", 0)), {"refunded_cents": 0})
        yield self.assertFailure(self.void("p1", validation.MAX_PURCHASE_CENTS + 1), ClientError)
        request = Request("Void", None, {"purchase_id": "p1", "amount_cents": 5})
        yield self.assertFailure(defer.maybeDeferred(self.service.void, request), ClientError)
