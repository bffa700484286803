"""
The buyer front end's composition of DB calls, over DB services whose replies
the test releases one at a time.
"""

from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.market.buyer_front import BuyerFront
from marketplace.market.errors import ClientError, ServiceUnavailable, Timeout
from marketplace.metrics import Counters
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


def reservation(state, lines=((9, 3, 2, 450),), attempt=1):
    """product-db's reply for purchase ``buyer-4:k``."""
    return {"purchase_id": "buyer-4:k", "state": state, "attempt": attempt,
            "lines": [list(line) for line in lines]}


CART = {"user_id": 4, "revision": 17, "cart": [{"item_id": 9, "quantity": 2}]}


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
        self.customer_db.answer("CartGet", CART)
        self.product_db.answer("Reserve", reservation("reserved"))
        return done

    def purchase(self):
        """A purchase authorised and waiting for its commit."""
        done = self.reserved()
        self.assertEqual(self.payments.payloads["Authorize"]["attempt"], 1)
        self.payments.answer("Authorize", {"approved": True, "reason": "approved"})
        return done


class SweepCountersTests(unittest.TestCase):
    def test_the_sweeps_count_into_the_front_ends_counters(self):
        counters = Counters()
        front = BuyerFront(None, None, None, None, task.Clock(), counters)
        self.assertIs(front.voids.counters, counters)
        self.assertIs(front.owed.counters, counters)


class PurchaseTests(PurchaseHarness):
    def test_the_purchase_is_recorded_once_the_stock_is_committed(self):
        done = self.purchase()
        self.assertEqual(self.log[-1], "product-db Commit")
        self.assertEqual(self.product_db.payloads["Commit"], {"purchase_id": "buyer-4:k",
                                                              "attempt": 1, "buyer_id": 4})
        self.product_db.answer("Commit", reservation("committed"))
        self.assertEqual(self.log[-1], "customer-db RecordPurchase")
        self.assertNoResult(done)
        self.customer_db.answer("RecordPurchase", {"user_id": 4, "recorded": True})
        # The record owed since the commit is made: product-db is told, and
        # the reply does not wait for that.
        self.assertEqual(self.log[-1], "product-db RecordDone")
        self.assertEqual(self.product_db.payloads["RecordDone"], {"purchase_id": "buyer-4:k"})
        _, reply = self.successResultOf(done)
        self.assertEqual((reply["status"], str(reply["total"])), ("success", "9.00"))

    def test_a_record_done_not_heard_is_left_to_the_sweep(self):
        done = self.purchase()
        self.product_db.answer("Commit", reservation("committed"))
        self.customer_db.answer("RecordPurchase", {"user_id": 4, "recorded": True})
        self.product_db.waiting.pop("RecordDone").errback(ServiceUnavailable("product-db is down"))
        _, reply = self.successResultOf(done)
        self.assertEqual(reply["status"], "success")

    def test_a_purchase_not_recorded_stays_owed(self):
        done = self.purchase()
        self.product_db.answer("Commit", reservation("committed"))
        self.customer_db.waiting.pop("RecordPurchase").errback(
            ServiceUnavailable("customer-db is unavailable"))
        self.failureResultOf(done, ServiceUnavailable)
        self.assertNotIn("product-db RecordDone", self.log)

    def test_a_total_above_the_limit_is_released_unpaid(self):
        request = Request("MakePurchase", "session", {**CARD, "idempotency_key": "k"})
        done = self.front.make_purchase(request)
        self.customer_db.answer("CartGet", CART)
        self.product_db.answer("Reserve", reservation("reserved", [(9, 3, 11, 1_000_000_000)]))
        self.assertEqual(self.log[-1], "product-db Release")
        self.assertNotIn("payments Authorize", self.log)
        self.product_db.answer("Release", reservation("released", [(9, 3, 11, 1_000_000_000)]))
        error = self.failureResultOf(done, ClientError).value
        self.assertIn("the purchase total 110000000.00 is above the maximum", error.message)

    def test_a_declined_payment_is_released(self):
        done = self.reserved()
        self.payments.answer("Authorize", {"approved": False, "reason": "policy none"})
        self.assertEqual(self.log[-1], "product-db Release")
        self.assertEqual(self.product_db.payloads["Release"], {"purchase_id": "buyer-4:k",
                                                               "attempt": 1})
        self.product_db.answer("Release", reservation("released"))
        self.assertIn("declined", self.failureResultOf(done, ClientError).value.message)

    def test_a_keyless_purchase_is_named_by_its_cart_revision(self):
        done = self.front.make_purchase(Request("MakePurchase", "session", dict(CARD)))
        self.customer_db.answer("CartGet", CART)
        self.assertEqual(self.product_db.payloads["Reserve"]["purchase_id"], "buyer-4:cart-17")
        self.product_db.waiting.pop("Reserve").errback(ServiceUnavailable("product-db is down"))
        error = self.failureResultOf(done, ServiceUnavailable).value
        self.assertEqual(error.fields["idempotency_key"], "cart-17")

    def test_an_error_before_the_cart_is_read_names_no_purchase(self):
        done = self.front.make_purchase(Request("MakePurchase", "session", dict(CARD)))
        self.customer_db.waiting.pop("CartGet").errback(ServiceUnavailable("customer-db is down"))
        self.assertEqual(self.failureResultOf(done, ServiceUnavailable).value.fields, {})

    def test_a_refused_commit_voids_the_payment_and_records_nothing(self):
        done = self.purchase()
        self.product_db.waiting.pop("Commit").errback(
            ClientError("purchase buyer-4:k is expired"))
        self.assertEqual(self.log[-1], "payments Void")
        self.assertEqual(self.payments.payloads["Void"], {"purchase_id": "buyer-4:k",
                                                          "attempt": 1, "amount_cents": 900})
        self.payments.answer("Void", {"refunded_cents": 900})
        error = self.failureResultOf(done, ClientError).value
        self.assertIn("refunded", error.message)
        self.assertNotIn("customer-db RecordPurchase", self.log)

    def test_a_void_that_cannot_be_made_now_is_left_to_the_sweep(self):
        done = self.purchase()
        self.product_db.waiting.pop("Commit").errback(ClientError("purchase buyer-4:k is expired"))
        self.payments.waiting.pop("Void").errback(ServiceUnavailable("payments is unavailable"))
        self.assertIn("purchase again", self.failureResultOf(done, ClientError).value.message)


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

    def test_a_purchase_given_up_during_authorisation_still_releases_a_declined_payment(self):
        done = self.reserved()
        done.cancel()
        self.failureResultOf(done, Timeout)
        self.payments.answer("Authorize", {"approved": False, "reason": "policy none"})
        self.assertEqual(self.log[-1], "product-db Release")

    def test_a_purchase_given_up_during_the_commit_is_still_recorded(self):
        done = self.purchase()
        done.cancel()
        self.failureResultOf(done, Timeout)
        self.product_db.answer("Commit", reservation("committed"))
        self.assertEqual(self.log[-1], "customer-db RecordPurchase")
        self.customer_db.answer("RecordPurchase", {"user_id": 4, "recorded": True})

    def test_an_authorisation_of_unknown_outcome_leaves_the_stock_to_its_lease(self):
        """
        Payments may have taken the money: released now, the stock could be
        sold again while the money stayed taken.  The reservation is left to
        a retry within its lease, or to lapse and have its payment voided.
        """
        for failure in (ServiceUnavailable("payments is unavailable"), defer.CancelledError()):
            done = self.reserved()
            self.payments.waiting.pop("Authorize").errback(failure)
            self.assertEqual(self.log[-1], "payments Authorize")
            self.failureResultOf(done, type(failure))

    def test_a_failure_nobody_awaits_is_logged(self):
        done = self.reserved()
        done.cancel()
        self.payments.waiting.pop("Authorize").errback(RuntimeError("payments reply unreadable"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.failureResultOf(done, Timeout)
