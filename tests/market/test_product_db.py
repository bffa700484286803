"""
product-db's item replies: the spec's item objects, encoded once per version
of an item, byte for byte what encoding the objects would give.
"""

from twisted.internet import task
from twisted.trial import unittest

from marketplace.market.dbservice import make_dispatch
from marketplace.market.errors import ClientError
from marketplace.market.internal import item_to_spec
from marketplace.market.product_db import ProductDbService
from marketplace.market.validation import MAX_EXACT
from marketplace.store import make_store
from marketplace.store.market_rules import MAX_STOCK
from protocols.envelope import EncodedPayload, Request, encode_json

LAMP = {"item_name": "Lamp", "category": 2, "keywords": ["lamp", "desk"],
        "condition_is_new": True, "price_cents": 450, "quantity": 3}


class ItemRepliesTests(unittest.TestCase):
    def setUp(self):
        self.store = make_store("memory", reactor=task.Clock())
        self.dispatch = make_dispatch(ProductDbService(self.store.catalog).dispatch_table())

    def call(self, api, **payload):
        _, reply = self.successResultOf(self.dispatch(Request(api, None, payload)))
        self.assertIsInstance(reply, EncodedPayload)
        return reply

    def stored(self, item_id):
        return item_to_spec(self.successResultOf(self.store.catalog.item(item_id)))

    def test_replies_are_the_encoded_spec_items(self):
        for seller_id in (1, 1, 2):
            self.call("CreateItem", seller_id=seller_id, **LAMP)
        self.assertEqual(self.call("GetItem", item_id=2), encode_json(self.stored(2)))
        self.assertEqual(self.call("SellerItems", seller_id=1),
                         encode_json({"items": [self.stored(1), self.stored(2)]}))
        self.assertEqual(self.call("Search", keywords=["desk"], limit=2),
                         encode_json({"items": [self.stored(1), self.stored(2)], "total": 3}))
        self.assertEqual(self.call("SellerItems", seller_id=9), b'{"items":[]}')

    def test_a_changed_item_is_encoded_again(self):
        self.call("CreateItem", seller_id=1, **LAMP)
        self.call("GetItem", item_id=1)
        self.call("Search", keywords=["lamp"])
        self.call("SetPrice", seller_id=1, item_id=1, price_cents=1999)
        self.assertIn(b'"price":19.99,"price_cents":1999', self.call("GetItem", item_id=1))
        self.assertIn(b'"price":19.99,', self.call("Search", keywords=["lamp"]))



class StockLimitTests(unittest.TestCase):
    def test_stock_above_the_limit_is_a_client_error(self):
        catalog = make_store("memory", reactor=task.Clock()).catalog
        dispatch = make_dispatch(ProductDbService(catalog).dispatch_table())
        self.successResultOf(dispatch(Request(
            "CreateItem", None, {**LAMP, "seller_id": 1, "quantity": MAX_STOCK})))
        failure = self.failureResultOf(dispatch(Request(
            "AdjustStock", None, {"seller_id": 1, "item_id": 1, "change": 1})), ClientError)
        self.assertEqual(failure.value.message,
                         f"item 1: at most {MAX_STOCK} unit(s) may be in stock")


class LeaseTests(unittest.TestCase):
    """Reserve holds stock for the service's lease; lapsed attempts are listed for voiding."""

    def setUp(self):
        self.clock = task.Clock()
        self.store = make_store("memory", reactor=self.clock)
        self.service = ProductDbService(self.store.catalog, lease=30.0)
        self.dispatch = make_dispatch(self.service.dispatch_table())
        self.call("CreateItem", seller_id=1, **LAMP)

    def call(self, api, **payload):
        return self.successResultOf(self.dispatch(Request(api, None, payload)))[1]

    def test_a_reservation_lapses_after_the_lease_and_its_void_is_listed(self):
        reserved = self.call("Reserve", purchase_id="p", lines=[[1, 2]])
        self.assertEqual((reserved["state"], reserved["attempt"]), ("reserved", 1))
        self.clock.advance(29)
        self.successResultOf(self.service.expire_leases())
        self.assertEqual(self.call("PendingVoids")["voids"], [])
        self.clock.advance(1)
        self.successResultOf(self.service.expire_leases())
        self.assertEqual(self.successResultOf(self.store.catalog.item(1)).quantity, 3)
        self.assertEqual(self.call("PendingVoids", limit=5)["voids"], [
            {"purchase_id": "p", "state": "expired", "attempt": 1, "lines": [(1, 1, 2, 450)]}])
        failure = self.failureResultOf(self.dispatch(Request(
            "Commit", None, {"purchase_id": "p", "attempt": 1})), ClientError)
        self.assertEqual(failure.value.message, "purchase p is expired")
        self.call("VoidDone", purchase_id="p", attempt=1)
        self.assertEqual(self.call("PendingVoids")["voids"], [])

    def test_commit_and_release_name_an_attempt(self):
        self.call("Reserve", purchase_id="p", lines=[[1, 1]])
        for api in ("Commit", "Release", "VoidDone"):
            failure = self.failureResultOf(self.dispatch(Request(
                api, None, {"purchase_id": "p"})), ClientError)
            self.assertEqual(failure.value.message, "missing field 'attempt'")
        self.assertEqual(self.call("Commit", purchase_id="p", attempt=1)["state"], "committed")

    def test_a_commit_naming_its_buyer_owes_the_record_until_it_is_done(self):
        for purchase in ("p", "q"):
            self.call("Reserve", purchase_id=purchase, lines=[[1, 1]])
        self.call("Commit", purchase_id="p", attempt=1, buyer_id=7)
        self.clock.advance(10)
        self.call("Commit", purchase_id="q", attempt=1, buyer_id=8)
        owed = {"purchase_id": "p", "buyer_id": 7, "lines": [(1, 1, 1, 450)]}
        self.assertEqual(self.call("OwedRecords", older_than=10)["records"], [owed])
        self.assertEqual(self.call("OwedRecords", limit=1)["records"], [owed])
        self.assertEqual(len(self.call("OwedRecords")["records"]), 2)
        self.call("RecordDone", purchase_id="p")
        self.assertEqual([r["purchase_id"] for r in self.call("OwedRecords")["records"]], ["q"])

    def test_owed_record_calls_check_their_fields(self):
        self.call("Reserve", purchase_id="p", lines=[[1, 1]])
        for api, payload, message in [
                ("Commit", {"purchase_id": "p", "attempt": 1, "buyer_id": "seven"},
                 "'buyer_id' must be an integer"),
                ("OwedRecords", {"limit": 0}, "'limit' must be between 1 and 100"),
                ("OwedRecords", {"older_than": -1},
                 f"'older_than' must be between 0 and {MAX_EXACT}"),
                ("RecordDone", {}, "missing field 'purchase_id'")]:
            failure = self.failureResultOf(self.dispatch(Request(api, None, payload)), ClientError)
            self.assertEqual(failure.value.message, message)
        self.assertEqual(self.call("OwedRecords")["records"], [])
