"""
The marketplace end to end through real sockets on 127.0.0.1: both front
ends, the DB services and payments, as existing clients drive them.
"""

from __future__ import annotations

import json
from decimal import Decimal

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from marketplace.market.errors import ClientError, NotFound, ServiceUnavailable
from marketplace.market.payments import MERCHANT_ACCOUNT
from marketplace.store import StoreUnavailable, make_store
from tests.market.market_harness import (
    CARD,
    Shopper,
    client,
    spawn_tac,
    start_front,
    start_market,
)
from tests.support.redis_server import start_redis

ITEM = {"item_name": "Desk lamp", "category": 3, "keywords": ["light", "desk"],
        "condition": "new", "price": 19.99, "quantity": 5}


class MarketTestCase(unittest.TestCase):
    approve = "all"

    @defer.inlineCallbacks
    def setUp(self):
        self.market = yield start_market(self, approve=self.approve)
        self.seller = yield self.new_user("seller", "sally")
        self.buyer = yield self.new_user("buyer", "bert")

    def new_user(self, role, name):
        return Shopper(client(self, self.market.ports[f"{role}-front"]), role).sign_up(name)

    @defer.inlineCallbacks
    def listed(self, **changes):
        reply = yield self.seller.call("RegisterItemForSale", {**ITEM, **changes})
        return reply["item_id"]


class SellerTests(MarketTestCase):
    @defer.inlineCallbacks
    def test_register_change_update_display(self):
        item_id = yield self.listed()
        yield self.seller.call("ChangeItemPrice", {"item_id": str(item_id), "price": "25.50"})
        reply = yield self.seller.call("UpdateUnitsForSale", {"item_id": item_id, "quantity": -2})
        self.assertEqual(reply, {"status": "success", "quantity": 3})
        items = (yield self.seller.call("DisplayItemsForSale"))["items"]
        self.assertEqual(len(items), 1)
        self.assertEqual(items[0]["price"], Decimal("25.5"))
        self.assertEqual(items[0]["price_cents"], 2550)
        self.assertEqual((items[0]["quantity"], items[0]["keywords"], items[0]["condition"]),
                         (3, ["light", "desk"], "new"))

    @defer.inlineCallbacks
    def test_validation_errors_are_clear(self):
        cases = [({"item_name": "x" * 33}, "at most 32"),
                 ({"keywords": ["a", "b", "c", "d", "e", "f"]}, "at most 5 keywords"),
                 ({"keywords": ["toolongword"]}, "1 to 8"),
                 ({"price": -1}, ">= 0"),
                 ({"price": 1.234}, "two decimal places"),
                 ({"quantity": -1}, "between 0"),
                 ({"condition": "broken"}, "new"),
                 ({"category": "abc"}, "integer")]
        for change, words in cases:
            error = yield self.assertFailure(
                self.seller.call("RegisterItemForSale", {**ITEM, **change}), ClientError)
            self.assertIn(words, error.message)

    @defer.inlineCallbacks
    def test_stock_cannot_go_negative_and_others_items_are_refused(self):
        item_id = yield self.listed()
        error = yield self.assertFailure(
            self.seller.call("UpdateUnitsForSale", {"item_id": item_id, "quantity": -6}), ClientError)
        self.assertIn("only 5", error.message)
        rival = yield self.new_user("seller", "rival")
        error = yield self.assertFailure(
            rival.call("ChangeItemPrice", {"item_id": item_id, "price": 1}), ClientError)
        self.assertIn("another seller", error.message)


class AccountTests(MarketTestCase):
    @defer.inlineCallbacks
    def test_names_unique_and_passwords_checked(self):
        connection = client(self, self.market.ports["buyer-front"])
        error = yield self.assertFailure(
            connection.call("CreateAccount", {"username": "bert", "password": "x"}), ClientError)
        self.assertIn("taken", error.message)
        error = yield self.assertFailure(
            connection.call("Login", {"username": "bert", "password": "wrong"}), ClientError)
        self.assertEqual(error.message, "wrong user name or password")
        error = yield self.assertFailure(
            connection.call("Login", {"username": "nobody", "password": "x"}), ClientError)
        self.assertEqual(error.message, "wrong user name or password")

    @defer.inlineCallbacks
    def test_password_is_stored_hashed(self):
        credentials = yield self.market.store.customers.credentials("buyer", "bert")
        self.assertTrue(credentials.password_hash.startswith("$argon2id$"))
        self.assertNotIn("secret-pass", credentials.password_hash)

    @defer.inlineCallbacks
    def test_sessions_roles_and_logout(self):
        second = yield Shopper(client(self, self.market.ports["buyer-front"]), "buyer").sign_up("bert2")
        self.assertNotEqual(second.session_id, self.buyer.session_id)
        again = Shopper(client(self, self.market.ports["buyer-front"]), "buyer")
        _, reply = yield again.connection.call("Login", {"username": "bert", "password": "secret-pass"})
        self.assertEqual(reply["buyer_id"], self.buyer.user_id)
        # A seller's session is refused by the buyer front end, and vice versa.
        wrong = Shopper(self.buyer.connection, "buyer")
        wrong.session_id = self.seller.session_id
        error = yield self.assertFailure(wrong.call("DisplayCart"), ClientError)
        self.assertIn("buyer accounts", error.message)
        yield self.buyer.call("Logout")
        error = yield self.assertFailure(self.buyer.call("DisplayCart"), ClientError)
        self.assertIn("log in", error.message)
        error = yield self.assertFailure(
            self.buyer.connection.call("DisplayCart", {}, session_id=None), ClientError)
        self.assertIn("session", error.message)

    @defer.inlineCallbacks
    def test_unknown_api(self):
        yield self.assertFailure(self.buyer.call("RegisterItemForSale", ITEM), NotFound)


class BuyerTests(MarketTestCase):
    @defer.inlineCallbacks
    def test_search_and_get_item(self):
        lamp = yield self.listed()
        desk = yield self.listed(item_name="Desk", keywords=["desk"])
        yield self.listed(item_name="Gone", keywords=["light", "desk"], quantity=0)
        reply = yield self.buyer.call("SearchItemsForSale", {"category": 3, "keywords": ["Desk", "light"]})
        self.assertEqual([i["item_id"] for i in reply["items"]], [lamp, desk])
        reply = yield self.buyer.call("SearchItemsForSale", {"keywords": ["light"],
                                                             "include_out_of_stock": True})
        self.assertEqual((reply["total"], reply["items"][-1]["item_name"]), (2, "Gone"))
        error = yield self.assertFailure(
            self.buyer.call("SearchItemsForSale", {"include_out_of_stock": "yes"}), ClientError)
        self.assertIn("true or false", error.message)
        item = yield self.buyer.call("GetItem", {"item_id": str(lamp)})
        self.assertEqual((item["item_name"], item["price"], item["seller_id"]),
                         ("Desk lamp", Decimal("19.99"), self.seller.user_id))
        yield self.assertFailure(self.buyer.call("GetItem", {"item_id": 999}), ClientError)

    @defer.inlineCallbacks
    def test_cart_rules(self):
        item_id = yield self.listed()
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 3})
        error = yield self.assertFailure(
            self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 3}), ClientError)
        self.assertIn("only 2", error.message)
        yield self.assertFailure(
            self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 0}), ClientError)
        reply = yield self.buyer.call("RemoveItemFromCart", {"item_id": item_id, "quantity": 1})
        self.assertEqual(reply["quantity"], 2)
        self.assertEqual((yield self.buyer.call("DisplayCart"))["cart"],
                         [{"item_id": item_id, "quantity": 2}])

    @defer.inlineCallbacks
    def test_saved_cart_survives_logout_and_other_sessions_keep_theirs(self):
        item_id = yield self.listed()
        other = Shopper(client(self, self.market.ports["buyer-front"]), "buyer")
        _, reply = yield other.connection.call("Login", {"username": "bert", "password": "secret-pass"})
        other.session_id = reply["session_id"]
        yield other.call("AddItemToCart", {"item_id": item_id, "quantity": 1})
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 2})
        yield self.buyer.call("SaveCart")
        yield self.buyer.call("Logout")
        self.assertEqual((yield other.call("DisplayCart"))["cart"], [{"item_id": item_id, "quantity": 1}])
        later = Shopper(client(self, self.market.ports["buyer-front"]), "buyer")
        _, reply = yield later.connection.call("Login", {"username": "bert", "password": "secret-pass"})
        later.session_id = reply["session_id"]
        self.assertEqual((yield later.call("DisplayCart"))["cart"], [{"item_id": item_id, "quantity": 2}])
        yield later.call("ClearCart")
        self.assertEqual((yield later.call("DisplayCart"))["cart"], [])

    @defer.inlineCallbacks
    def test_a_bought_saved_cart_is_not_restored_and_charged_again(self):
        item_id = yield self.listed()
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 2})
        yield self.buyer.call("SaveCart")
        yield self.buyer.call("MakePurchase", CARD)
        yield self.buyer.call("Logout")
        yield self.buyer.log_in_again()
        self.assertEqual((yield self.buyer.call("DisplayCart"))["cart"], [])
        error = yield self.assertFailure(self.buyer.call("MakePurchase", CARD), ClientError)
        self.assertIn("empty", error.message)
        self.assertEqual((yield self.market.store.ledger.balance(MERCHANT_ACCOUNT)), 2 * 1999)
        self.assertEqual(len((yield self.buyer.call("GetBuyerPurchases"))["items"]), 1)

    @defer.inlineCallbacks
    def test_purchase_history_feedback_and_ratings(self):
        item_id = yield self.listed()
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 2})
        error = yield self.assertFailure(
            self.buyer.call("ProvideFeedback", {"item_id": item_id, "thumbs_up": True}), ClientError)
        self.assertIn("bought", error.message)
        reply = yield self.buyer.call("MakePurchase", {**CARD, "idempotency_key": "order-1"})
        self.assertEqual((reply["status"], reply["total"]), ("success", Decimal("39.98")))
        self.assertEqual((yield self.buyer.call("DisplayCart"))["cart"], [])
        self.assertEqual((yield self.buyer.call("GetItem", {"item_id": item_id}))["quantity"], 3)
        purchases = (yield self.buyer.call("GetBuyerPurchases"))["items"]
        self.assertEqual([(p["item_id"], p["quantity"]) for p in purchases], [(item_id, 2)])
        # The existing server's shape: an ISO 8601 string, not POSIX seconds.
        self.assertRegex(purchases[0]["purchased_at"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
        yield self.buyer.call("ProvideFeedback", {"item_id": item_id, "is_positive": True})
        error = yield self.assertFailure(
            self.buyer.call("ProvideFeedback", {"item_id": item_id, "thumbs_up": False}), ClientError)
        self.assertIn("already", error.message)
        rating = yield self.buyer.call("GetSellerRating", {"seller_id": self.seller.user_id})
        self.assertEqual(rating["feedback"], {"pos": 1, "neg": 0})
        own = yield self.seller.call("GetSellerRating")
        self.assertEqual((own["rating"], own["pos"], own["neg"], own["items_sold"]), (1.0, 1, 0, 2))
        item = yield self.buyer.call("GetItem", {"item_id": item_id})
        self.assertEqual(item["feedback"], {"pos": 1, "neg": 0})

    @defer.inlineCallbacks
    def test_retried_purchase_is_charged_once(self):
        item_id = yield self.listed()
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 1})
        first = yield self.buyer.call("MakePurchase", {**CARD, "idempotency_key": "k1"})
        again = yield self.buyer.call("MakePurchase", {**CARD, "idempotency_key": "k1"})
        self.assertEqual(first, again)
        self.assertEqual((yield self.market.store.ledger.balance(MERCHANT_ACCOUNT)), 1999)
        self.assertEqual((yield self.buyer.call("GetItem", {"item_id": item_id}))["quantity"], 4)
        self.assertEqual(len((yield self.buyer.call("GetBuyerPurchases"))["items"]), 1)

    @defer.inlineCallbacks
    def test_a_keyless_purchase_retried_after_failing_past_the_charge_is_charged_once(self):
        item_id = yield self.listed()
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 1})
        customers = self.market.store.customers
        record = customers.record_purchase
        customers.record_purchase = lambda *args: defer.fail(StoreUnavailable("store is down"))
        yield self.assertFailure(self.buyer.call("MakePurchase", CARD), ServiceUnavailable)
        self.assertEqual((yield self.market.store.ledger.balance(MERCHANT_ACCOUNT)), 1999)
        customers.record_purchase = record
        reply = yield self.buyer.call("MakePurchase", CARD)
        self.assertEqual(reply["status"], "success")
        self.assertEqual((yield self.market.store.ledger.balance(MERCHANT_ACCOUNT)), 1999)
        self.assertEqual((yield self.buyer.call("GetItem", {"item_id": item_id}))["quantity"], 4)
        self.assertEqual(len((yield self.buyer.call("GetBuyerPurchases"))["items"]), 1)
        self.assertEqual((yield self.buyer.call("DisplayCart"))["cart"], [])

    @defer.inlineCallbacks
    def test_bad_cards_are_refused_before_reserving(self):
        item_id = yield self.listed()
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 1})
        for change, words in [({"card_number": "4111111111111112"}, "card number"),
                              ({"expiration_date": "01/20"}, "expired"),
                              ({"security_code": "12"}, "3 or 4 digits")]:
            error = yield self.assertFailure(
                self.buyer.call("MakePurchase", {**CARD, **change}), ClientError)
            self.assertIn(words, error.message)
        error = yield self.assertFailure(self.buyer.call("MakePurchase", {}), ClientError)
        self.assertIn("missing field", error.message)
        self.assertEqual((yield self.buyer.call("GetItem", {"item_id": item_id}))["quantity"], 5)

    @defer.inlineCallbacks
    def test_empty_cart_cannot_be_bought(self):
        error = yield self.assertFailure(self.buyer.call("MakePurchase", CARD), ClientError)
        self.assertIn("empty", error.message)


class DeclinedPaymentTests(MarketTestCase):
    approve = "none"

    @defer.inlineCallbacks
    def test_declined_payment_releases_the_reservation(self):
        item_id = yield self.listed()
        yield self.buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 5})
        error = yield self.assertFailure(self.buyer.call("MakePurchase", CARD), ClientError)
        self.assertIn("declined", error.message)
        self.assertEqual((yield self.buyer.call("GetItem", {"item_id": item_id}))["quantity"], 5)
        self.assertEqual((yield self.buyer.call("DisplayCart"))["cart"], [{"item_id": item_id, "quantity": 5}])
        self.assertEqual((yield self.buyer.call("GetBuyerPurchases"))["items"], [])


class _LineClient(protocol.Protocol):
    def __init__(self):
        self.received = b""
        self.lines = defer.Deferred()
        self.expected = 0

    def dataReceived(self, data):
        self.received += data
        if self.received.count(b"\n") >= self.expected and not self.lines.called:
            self.lines.callback([json.loads(line) for line in self.received.splitlines()])


class TelnetFramingTests(MarketTestCase):
    @defer.inlineCallbacks
    def test_newline_json_session_against_a_front_end(self):
        """What a person at ``nc`` sees: one JSON reply per line, errors included."""
        connection = _LineClient()
        connection.expected = 3
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.market.ports["buyer-front"])
        yield connectProtocol(endpoint, connection)
        self.addCleanup(connection.transport.loseConnection)
        connection.transport.write(
            b'{"type":"request","api":"Login","session_id":null,'
            b'"payload":{"username":"bert","password":"secret-pass"}}\n'
            b'{"type":"request","api":"Nope","session_id":null,"payload":{}}\n'
            b'not json\n')
        login, unknown, garbage = yield connection.lines.addTimeout(10, reactor)
        self.assertEqual(login["type"], "response")
        self.assertEqual(login["session_id"], login["payload"]["session_id"])
        self.assertEqual(unknown["error"]["code"], "404_NOT_FOUND")
        self.assertEqual(garbage["error"]["code"], "BAD_REQUEST")



class DbServiceOutageTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_down_db_service_is_reported_and_recovered_from(self):
        market = yield start_market(self)
        product_db = yield spawn_tac(self, "product-db", service_secret=market.secret_file)
        market.ports["product-db"] = product_db.port
        buyer_port = yield start_front(self, market, "buyer")
        buyer = yield Shopper(client(self, buyer_port), "buyer").sign_up("bert")
        yield buyer.call("SearchItemsForSale", {})

        yield product_db.kill()
        error = yield self.assertFailure(buyer.call("SearchItemsForSale", {}), ServiceUnavailable)
        self.assertIn("product-db", error.message)
        self.assertEqual((yield buyer.call("DisplayCart"))["cart"], [])

        yield spawn_tac(self, "product-db", market.ports["product-db"],
                        service_secret=market.secret_file)
        self.assertEqual((yield buyer.call("SearchItemsForSale", {}))["items"], [])


class ForeignSessionIdOnRedisTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_session_id_naming_another_key_is_an_invalid_session(self):
        redis = yield start_redis(self)
        market = yield start_market(self, store=make_store(redis.url, timeout=5.0, reactor=reactor))
        buyer = yield Shopper(client(self, market.ports["buyer-front"]), "buyer").sign_up("bert")
        for foreign in ("user:buyer:1", f"user:buyer:{buyer.user_id}"):
            buyer.session_id = foreign
            error = yield self.assertFailure(buyer.call("DisplayCart"), ClientError)
            self.assertIn("invalid or expired session", error.message)
        # trial fails the test if anything was logged as an error
