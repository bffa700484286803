"""
The sweep that records the purchases whose front end could not, over a
product-db and a customer-db that answer at once.
"""

from twisted.logger import Logger
from twisted.trial import unittest

from marketplace.market import owed
from marketplace.market.errors import ClientError, ServerError, ServiceUnavailable
from tests.market.test_voids import AnsweringBackend


def committed(purchase_id, buyer_id):
    return {"purchase_id": purchase_id, "buyer_id": buyer_id, "lines": [(9, 3, 2, 450)]}


class OwedRecordSweepTests(unittest.TestCase):
    def setUp(self):
        self.log = []
        self.owed = [committed("buyer-4:k", 4), committed("buyer-5:cart-9", 5)]
        self.product_db = AnsweringBackend(self.log, {
            "OwedRecords": lambda payload: {"records": self.owed[:payload["limit"]]},
            "RecordDone": self.done})
        self.customer_db = AnsweringBackend(self.log, {"RecordOwedPurchase": {"recorded": True}})
        self.records = owed.OwedRecords(self.customer_db, self.product_db)

    def done(self, payload):
        self.owed = [o for o in self.owed if o["purchase_id"] != payload["purchase_id"]]
        return {}

    def test_each_owed_record_is_made_then_marked_done(self):
        self.successResultOf(self.records.sweep())
        self.assertEqual(self.owed, [])
        self.assertEqual(self.log, [
            ("OwedRecords", {"limit": owed.OWED_BATCH, "older_than": owed.GRACE}),
            ("RecordOwedPurchase", committed("buyer-4:k", 4)),
            ("RecordDone", {"purchase_id": "buyer-4:k"}),
            ("RecordOwedPurchase", committed("buyer-5:cart-9", 5)),
            ("RecordDone", {"purchase_id": "buyer-5:cart-9"})])

    def test_a_record_the_sweep_made_is_logged(self):
        events = []
        self.patch(owed, "log", Logger(observer=events.append))
        self.customer_db.replies["RecordOwedPurchase"] = lambda payload: {
            "recorded": payload["purchase_id"] == "buyer-5:cart-9"}
        self.successResultOf(self.records.sweep())
        self.assertEqual(self.owed, [])
        self.assertEqual([(e["purchase"], e["buyer"]) for e in events], [("buyer-5:cart-9", 5)])
        self.assertEqual(self.records.counters.snapshot(), {"sweep_records_made": 1})

    def test_a_record_not_made_stays_owed(self):
        self.customer_db.replies["RecordOwedPurchase"] = ServiceUnavailable("customer-db is down")
        self.failureResultOf(self.records.sweep(), ServiceUnavailable)
        self.assertEqual(len(self.owed), 2)

    def test_a_refused_record_stays_owed_and_the_others_are_made(self):
        def refuse_the_first(payload):
            if payload["purchase_id"] == "buyer-4:k":
                raise ClientError("'lines' must be [item_id, seller_id, quantity, price_cents] rows")
            return {"recorded": True}

        self.customer_db.replies["RecordOwedPurchase"] = refuse_the_first
        self.successResultOf(self.records.sweep())
        self.assertEqual([o["purchase_id"] for o in self.owed], ["buyer-4:k"])
        self.assertEqual(self.records.counters.snapshot(),
                         {"sweep_records_refused": 1, "sweep_records_made": 1})

    def test_a_sweep_takes_batches_up_to_its_bound(self):
        self.owed.append(committed("buyer-6:z", 6))
        self.patch(owed, "OWED_BATCH", 1)
        self.patch(owed, "BATCHES_PER_SWEEP", 2)
        self.successResultOf(self.records.sweep())
        self.assertEqual([o["purchase_id"] for o in self.owed], ["buyer-6:z"])

    def test_a_malformed_listing_fails_the_sweep(self):
        self.owed = [{"purchase_id": "buyer-4:k", "buyer_id": "four", "lines": []}]
        self.failureResultOf(self.records.sweep(), ServerError)
        self.assertNotIn("RecordOwedPurchase", [api for api, _ in self.log])
