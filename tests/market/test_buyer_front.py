"""
The buyer front end's composition of DB calls, over DB services whose replies
the test releases one at a time.
"""

from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.market.buyer_front import BuyerFront
from marketplace.market.errors import ClientError
from protocols.envelope import Request
from tests.market.market_harness import CARD


class HeldBackend:
    """A DB service whose every call waits until the test answers it."""

    def __init__(self, name, log):
        self.name = name
        self.log = log
        self.waiting = {}

    def call(self, api, payload, session_id=None, idempotent=False, encoded=False):
        d = defer.Deferred()
        self.waiting[api] = d
        self.log.append(f"{self.name} {api}")
        return d

    def answer(self, api, payload):
        self.waiting.pop(api).callback((None, payload))


class PurchaseTests(unittest.TestCase):
    def setUp(self):
        self.log = []
        self.customer_db = HeldBackend("customer-db", self.log)
        self.product_db = HeldBackend("product-db", self.log)
        self.payments = HeldBackend("payments", self.log)
        self.front = BuyerFront(self.customer_db, self.product_db, self.payments, None, task.Clock())

    def purchase(self):
        request = Request("MakePurchase", "session", {**CARD, "idempotency_key": "k"})
        done = self.front.make_purchase(request)
        self.customer_db.answer("CartGet", {"user_id": 4, "cart": [{"item_id": 9, "quantity": 2}]})
        self.product_db.answer("Reserve", {"purchase_id": "buyer-4:k", "state": "reserved",
                                           "lines": [[9, 3, 2, 450]]})
        self.payments.answer("Authorize", {"approved": True, "reason": "approved"})
        return done

    def test_the_purchase_is_recorded_once_the_stock_is_committed(self):
        done = self.purchase()
        self.assertEqual(self.log[-1], "product-db Commit")
        self.product_db.answer("Commit", {"purchase_id": "buyer-4:k", "state": "committed",
                                          "lines": [[9, 3, 2, 450]]})
        self.assertEqual(self.log[-1], "customer-db RecordPurchase")
        self.assertNoResult(done)
        self.customer_db.answer("RecordPurchase", {"user_id": 4, "recorded": True})
        _, reply = self.successResultOf(done)
        self.assertEqual((reply["status"], str(reply["total"])), ("ok", "9.00"))

    def test_a_refused_commit_records_nothing(self):
        done = self.purchase()
        self.product_db.waiting.pop("Commit").errback(
            ClientError("reservation buyer-4:k was released"))
        self.failureResultOf(done, ClientError)
        self.assertNotIn("customer-db RecordPurchase", self.log)
