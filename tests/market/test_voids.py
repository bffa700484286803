"""
The sweep that voids the payments of lapsed reservation attempts, over a
product-db and a payments service that answer at once.
"""

from twisted.internet import defer
from twisted.trial import unittest

from marketplace.market import voids
from marketplace.market.errors import ClientError, ServiceUnavailable
from marketplace.market.validation import MAX_PURCHASE_CENTS


def lapsed(purchase_id, attempt, quantity=2, price_cents=450):
    return {"purchase_id": purchase_id, "state": "expired", "attempt": attempt,
            "lines": [[9, 3, quantity, price_cents]]}


class AnsweringBackend:
    """A DB service answering each api from ``replies`` (a callable or a value)."""

    def __init__(self, log, replies):
        self.log = log
        self.replies = replies

    def call(self, api, payload, session_id=None, idempotent=False, encoded=False):
        self.log.append((api, payload))
        reply = self.replies[api]
        if isinstance(reply, Exception):
            return defer.fail(reply)
        if callable(reply):
            return defer.maybeDeferred(reply, payload).addCallback(lambda answer: (None, answer))
        return defer.succeed((None, reply))


class VoidSweepTests(unittest.TestCase):
    def setUp(self):
        self.log = []
        self.pending = [lapsed("buyer-4:k", 1), lapsed("buyer-5:cart-9", 2),
                        lapsed("buyer-6:big", 1, quantity=11, price_cents=MAX_PURCHASE_CENTS)]
        self.product_db = AnsweringBackend(self.log, {
            "PendingVoids": lambda payload: {"voids": self.pending[:payload["limit"]]},
            "VoidDone": self.done})
        self.payments = AnsweringBackend(self.log, {"Void": {"refunded_cents": 900}})
        self.voids = voids.PaymentVoids(self.product_db, self.payments)

    def done(self, payload):
        self.pending = [v for v in self.pending
                        if (v["purchase_id"], v["attempt"]) != (payload["purchase_id"],
                                                                payload["attempt"])]
        return {}

    def test_each_pending_void_is_made_then_marked_done(self):
        self.successResultOf(self.voids.sweep())
        self.assertEqual(self.pending, [])
        calls = [(api, payload) for api, payload in self.log if api != "PendingVoids"]
        self.assertEqual(calls, [
            ("Void", {"purchase_id": "buyer-4:k", "attempt": 1, "amount_cents": 900}),
            ("VoidDone", {"purchase_id": "buyer-4:k", "attempt": 1}),
            ("Void", {"purchase_id": "buyer-5:cart-9", "attempt": 2, "amount_cents": 900}),
            ("VoidDone", {"purchase_id": "buyer-5:cart-9", "attempt": 2}),
            # Above the purchase limit: payments never captures it.
            ("VoidDone", {"purchase_id": "buyer-6:big", "attempt": 1})])

    def test_a_void_not_made_stays_pending(self):
        self.payments.replies["Void"] = ServiceUnavailable("payments is unavailable")
        self.failureResultOf(self.voids.sweep(), ServiceUnavailable)
        self.assertEqual(len(self.pending), 3)

    def test_a_refused_void_stays_pending_and_the_others_are_made(self):
        def refuse_the_first(payload):
            if payload["purchase_id"] == "buyer-4:k":
                raise ClientError("payment refused: insufficient funds")
            return {"refunded_cents": 900}

        self.payments.replies["Void"] = refuse_the_first
        self.successResultOf(self.voids.sweep())
        self.assertEqual([v["purchase_id"] for v in self.pending], ["buyer-4:k"])
        self.assertEqual(self.voids.counters.snapshot(),
                         {"sweep_voids_refused": 1, "sweep_voids_made": 2})

    def test_a_sweep_takes_batches_up_to_its_bound(self):
        self.patch(voids, "VOID_BATCH", 1)
        self.patch(voids, "BATCHES_PER_SWEEP", 2)
        self.successResultOf(self.voids.sweep())
        self.assertEqual([v["purchase_id"] for v in self.pending], ["buyer-6:big"])
