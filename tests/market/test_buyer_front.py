"""
The buyer front end's composition of DB calls, over DB services whose replies
the test releases one at a time.
"""

from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.market.buyer_front import BuyerFront
from marketplace.market.errors import ClientError, ServiceUnavailable, Timeout
from protocols.envelope import Request
from tests.market.market_harness import CARD


class HeldBackend:
    """A DB service whose every call waits until the test answers it."""

    def __init__(self, name, log):
        self.name = name
        self.log = log
        self.waiting = {}
        self.payloads = {}

    def call(self, api, payload, session_id=None, idempotent=False, encoded=False):
        d = defer.Deferred()
        self.waiting[api] = d
        self.payloads[api] = payload
        self.log.append(f"{self.name} {api}")
        return d

    def answer(self, api, payload):
        self.waiting.pop(api).callback((None, payload))


class PurchaseHarness(unittest.TestCase):
    """A buyer front end over held DB services, and a purchase of 2 units of item 9."""

    def setUp(self):
        self.log = []
        self.customer_db = HeldBackend("customer-db", self.log)
        self.product_db = HeldBackend("product-db", self.log)
        self.payments = HeldBackend("payments", self.log)
        self.front = BuyerFront(self.customer_db, self.product_db, self.payments, None, task.Clock())

    def reserved(self):
        """A purchase waiting for its authorisation (the request's Deferred)."""
        request = Request("MakePurchase", "session", {**CARD, "idempotency_key": "k"})
        done = self.front.make_purchase(request)
        self.customer_db.answer("CartGet", {"user_id": 4, "revision": 17, "cart": [{"item_id": 9, "quantity": 2}]})
        self.product_db.answer("Reserve", {"purchase_id": "buyer-4:k", "state": "reserved",
                                           "lines": [[9, 3, 2, 450]]})
        return done

    def purchase(self):
        """A purchase authorised and waiting for its commit."""
        done = self.reserved()
        self.payments.answer("Authorize", {"approved": True, "reason": "approved"})
        return done


class PurchaseTests(PurchaseHarness):
    def test_the_purchase_is_recorded_once_the_stock_is_committed(self):
        done = self.purchase()
        self.assertEqual(self.log[-1], "product-db Commit")
        self.product_db.answer("Commit", {"purchase_id": "buyer-4:k", "state": "committed",
                                          "lines": [[9, 3, 2, 450]]})
        self.assertEqual(self.log[-1], "customer-db RecordPurchase")
        self.assertNoResult(done)
        self.customer_db.answer("RecordPurchase", {"user_id": 4, "recorded": True})
        _, reply = self.successResultOf(done)
        self.assertEqual((reply["status"], str(reply["total"])), ("success", "9.00"))

    def test_a_total_above_the_limit_is_released_unpaid(self):
        request = Request("MakePurchase", "session", {**CARD, "idempotency_key": "k"})
        done = self.front.make_purchase(request)
        self.customer_db.answer("CartGet", {"user_id": 4, "revision": 17, "cart": [{"item_id": 9, "quantity": 11}]})
        self.product_db.answer("Reserve", {"purchase_id": "buyer-4:k", "state": "reserved",
                                           "lines": [[9, 3, 11, 1_000_000_000]]})
        self.assertEqual(self.log[-1], "product-db Release")
        self.assertNotIn("payments Authorize", self.log)
        self.product_db.answer("Release", {"purchase_id": "buyer-4:k", "state": "released",
                                           "lines": [[9, 3, 11, 1_000_000_000]]})
        error = self.failureResultOf(done, ClientError).value
        self.assertIn("the purchase total 110000000.00 is above the maximum", error.message)

    def test_a_keyless_purchase_is_named_by_its_cart_revision(self):
        done = self.front.make_purchase(Request("MakePurchase", "session", dict(CARD)))
        self.customer_db.answer("CartGet", {"user_id": 4, "revision": 17,
                                            "cart": [{"item_id": 9, "quantity": 2}]})
        self.assertEqual(self.product_db.payloads["Reserve"]["purchase_id"], "buyer-4:cart-17")
        self.product_db.waiting.pop("Reserve").errback(ServiceUnavailable("product-db is down"))
        error = self.failureResultOf(done, ServiceUnavailable).value
        self.assertEqual(error.fields["idempotency_key"], "cart-17")

    def test_an_error_before_the_cart_is_read_names_no_purchase(self):
        done = self.front.make_purchase(Request("MakePurchase", "session", dict(CARD)))
        self.customer_db.waiting.pop("CartGet").errback(ServiceUnavailable("customer-db is down"))
        self.assertEqual(self.failureResultOf(done, ServiceUnavailable).value.fields, {})

    def test_a_refused_commit_records_nothing(self):
        done = self.purchase()
        self.product_db.waiting.pop("Commit").errback(
            ClientError("reservation buyer-4:k was released"))
        self.failureResultOf(done, ClientError)
        self.assertNotIn("customer-db RecordPurchase", self.log)


class ShieldedPurchaseTests(PurchaseHarness):
    """
    A purchase goes on to its end when its request is cancelled (the client
    disconnected or the request timed out): the stock is released or the
    purchase recorded, never left halfway.
    """

    def test_a_cancelled_request_fails_at_once_with_the_key(self):
        done = self.reserved()
        done.cancel()
        error = self.failureResultOf(done, Timeout).value
        self.assertEqual(error.fields, {"idempotency_key": "k"})
        self.assertIn("Authorize", self.payments.waiting)

    def test_a_purchase_given_up_during_authorisation_still_releases_the_stock(self):
        done = self.reserved()
        done.cancel()
        self.failureResultOf(done, Timeout)
        self.payments.waiting.pop("Authorize").errback(ServiceUnavailable("payments is unavailable"))
        self.assertEqual(self.log[-1], "product-db Release")

    def test_a_purchase_given_up_during_the_commit_is_still_recorded(self):
        done = self.purchase()
        done.cancel()
        self.failureResultOf(done, Timeout)
        self.product_db.answer("Commit", {"purchase_id": "buyer-4:k", "state": "committed",
                                          "lines": [[9, 3, 2, 450]]})
        self.assertEqual(self.log[-1], "customer-db RecordPurchase")
        self.customer_db.answer("RecordPurchase", {"user_id": 4, "recorded": True})

    def test_any_failure_of_the_authorisation_releases_the_stock(self):
        done = self.reserved()
        self.payments.waiting.pop("Authorize").errback(defer.CancelledError())
        self.assertEqual(self.log[-1], "product-db Release")
        self.product_db.answer("Release", {"purchase_id": "buyer-4:k", "state": "released",
                                           "lines": [[9, 3, 2, 450]]})
        self.failureResultOf(done, defer.CancelledError)

    def test_a_failure_nobody_awaits_is_logged(self):
        done = self.reserved()
        done.cancel()
        self.payments.waiting.pop("Authorize").errback(RuntimeError("payments reply unreadable"))
        self.product_db.answer("Release", {"purchase_id": "buyer-4:k", "state": "released",
                                           "lines": [[9, 3, 2, 450]]})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.failureResultOf(done, Timeout)
