"""
The issue's reliability cases, end to end through real sockets:

- 100 buyers racing for the last units: exactly the stock is sold, and money,
  stock and history reconcile (embedded store and Redis);
- session expiry at 300 s of inactivity on a controllable clock, and a
  session used at 299 s slides;
- a front end killed (SIGKILL) and restarted mid-run loses nothing;
- DB services restarted, and Redis killed and restarted, lose nothing
  acknowledged;
- a purchase paid for while customer-db's store failed is recorded by the
  sweep (embedded store and Redis).
"""

from __future__ import annotations

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from marketplace.market.errors import ClientError, ServiceUnavailable
from marketplace.market.payments import MERCHANT_ACCOUNT
from marketplace.market.tap import KEY_PREFIX
from marketplace.market.product_db import DEFAULT_LEASE
from marketplace.market import owed
from marketplace.market.owed import OwedRecords
from marketplace.market.voids import PaymentVoids
from marketplace.store import StoreUnavailable, make_store
from tests.market.market_harness import (
    CARD,
    Market,
    Shopper,
    client,
    secret_file,
    spawn_tac,
    start_front,
    start_market,
)
from tests.support.redis_server import start_redis
from tests.support.services import start_service

BUYERS = 100
UNITS = 7
PRICE_CENTS = 1250


def lamp(quantity):
    return {"item_name": "Last lamps", "category": 1, "keywords": ["lamp"],
            "condition": "used", "price": "12.50", "quantity": quantity}


class RaceForTheLastUnits:
    @defer.inlineCallbacks
    def test_exactly_the_stock_is_sold(self):
        market = yield self.start()
        port = market.ports["buyer-front"]
        seller = yield Shopper(client(self, market.ports["seller-front"]), "seller").sign_up("seller")
        item_id = (yield seller.call("RegisterItemForSale", lamp(UNITS)))["item_id"]
        buyers = yield defer.gatherResults([
            Shopper(client(self, port, timeout=20), "buyer").sign_up(f"buyer{i}") for i in range(BUYERS)])
        yield defer.gatherResults([
            b.call("AddItemToCart", {"item_id": item_id, "quantity": 1}) for b in buyers])

        outcomes = yield defer.DeferredList(
            [b.call("MakePurchase", CARD) for b in buyers], consumeErrors=True)

        won = [result for ok, result in outcomes if ok]
        lost = [failure for ok, failure in outcomes if not ok]
        self.assertEqual(len(won), UNITS)
        self.assertEqual(len(lost), BUYERS - UNITS)
        for failure in lost:
            failure.trap(ClientError)
            self.assertIn("only 0 unit(s)", failure.value.message)
        item = yield market.store.catalog.item(item_id)
        self.assertEqual((item.quantity, item.sold), (0, UNITS))
        self.assertEqual((yield market.store.ledger.balance(MERCHANT_ACCOUNT)), UNITS * PRICE_CENTS)
        self.assertTrue((yield market.store.ledger.audit()).balanced)
        bought = 0
        for buyer in buyers:
            bought += sum(p["quantity"] for p in (yield buyer.call("GetBuyerPurchases"))["items"])
        self.assertEqual(bought, UNITS)
        self.assertEqual((yield seller.call("GetSellerRating"))["items_sold"], UNITS)


class MemoryRaceTests(RaceForTheLastUnits, unittest.TestCase):
    def start(self):
        return start_market(self)


class RedisRaceTests(RaceForTheLastUnits, unittest.TestCase):
    @defer.inlineCallbacks
    def start(self):
        redis = yield start_redis(self)
        market = yield start_market(self, store=make_store(redis.url, timeout=5.0, reactor=reactor))
        return market


class SessionExpiryTests(unittest.TestCase):
    """The store's clock is a task.Clock; the sockets run on the real reactor."""

    @defer.inlineCallbacks
    def test_inactivity_timeout_is_300_seconds_and_slides(self):
        clock = task.Clock()
        market = yield start_market(self, store=make_store("memory", reactor=clock))
        used = yield Shopper(client(self, market.ports["buyer-front"]), "buyer").sign_up("used")
        idle = yield Shopper(client(self, market.ports["buyer-front"]), "buyer").sign_up("idle")

        clock.advance(299)
        yield used.call("DisplayCart")
        clock.advance(1)
        error = yield self.assertFailure(idle.call("DisplayCart"), ClientError)
        self.assertIn("expired", error.message)
        yield used.call("DisplayCart")
        clock.advance(299)
        yield used.call("DisplayCart")
        clock.advance(300)
        yield self.assertFailure(used.call("DisplayCart"), ClientError)

    @defer.inlineCallbacks
    def test_the_active_cart_lives_as_long_as_its_session(self):
        clock = task.Clock()
        market = yield start_market(self, store=make_store("memory", reactor=clock))
        seller = yield Shopper(client(self, market.ports["seller-front"]), "seller").sign_up("seller")
        item_id = (yield seller.call("RegisterItemForSale", lamp(5)))["item_id"]
        buyer = yield Shopper(client(self, market.ports["buyer-front"]), "buyer").sign_up("buyer")
        yield buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 2})
        for _ in range(3):
            clock.advance(250)
            yield buyer.call("SearchItemsForSale", {"keywords": ["lamp"]})
        self.assertEqual((yield buyer.call("DisplayCart"))["cart"], [{"item_id": item_id, "quantity": 2}])


def peers(market):
    return {"customer_db": f"tcp:127.0.0.1:{market.ports['customer-db']}",
            "product_db": f"tcp:127.0.0.1:{market.ports['product-db']}",
            "payments": f"tcp:127.0.0.1:{market.ports['payments']}",
            "service_secret": market.secret_file}


class FrontEndRestartTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_killed_front_end_loses_nothing(self):
        market = yield start_market(self)
        seller = yield Shopper(client(self, market.ports["seller-front"]), "seller").sign_up("seller")
        item_id = (yield seller.call("RegisterItemForSale", lamp(5)))["item_id"]

        first = yield spawn_tac(self, "buyer-front", cheap_kdf="1", **peers(market))
        buyer = yield Shopper(client(self, first.port, timeout=10), "buyer").sign_up("buyer")
        yield buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 3})
        yield buyer.call("SaveCart")

        yield first.kill()
        yield self.assertFailure(buyer.call("DisplayCart"), ServiceUnavailable)

        second = yield spawn_tac(self, "buyer-front", cheap_kdf="1", **peers(market))
        buyer.connection = client(self, second.port, timeout=10)
        self.assertEqual((yield buyer.call("DisplayCart"))["cart"], [{"item_id": item_id, "quantity": 3}])
        yield buyer.call("MakePurchase", CARD)
        self.assertEqual((yield buyer.call("GetItem", {"item_id": item_id}))["quantity"], 2)
        self.assertEqual(len((yield buyer.call("GetBuyerPurchases"))["items"]), 1)


class LeaseTests(unittest.TestCase):
    """
    Purchases that outlive their reservation's lease: the stock comes back on
    sale, the payment is voided, and the buyer can buy again -- no stock
    without money, no money without stock.  The store's clock is a
    task.Clock, which product-db's lease sweep runs on too.
    """

    @defer.inlineCallbacks
    def start(self):
        """The market, a lamp with 5 in stock, and the item's id."""
        self.clock = task.Clock()
        self.store = make_store("memory", reactor=self.clock)
        self.market = yield start_market(self, store=self.store, lease_clock=self.clock)
        seller = yield Shopper(client(self, self.market.ports["seller-front"]), "seller").sign_up(
            "seller")
        return (yield seller.call("RegisterItemForSale", lamp(5)))["item_id"]

    @defer.inlineCallbacks
    def buyer_of(self, item_id, port):
        """A buyer on the front end at ``port`` with 2 lamps in the cart."""
        buyer = yield Shopper(client(self, port, timeout=10), "buyer").sign_up("buyer")
        yield buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 2})
        return buyer

    @defer.inlineCallbacks
    def test_a_front_end_killed_mid_purchase_holds_neither_stock_nor_money(self):
        item_id = yield self.start()
        store, market, clock = self.store, self.market, self.clock
        doomed = yield spawn_tac(self, "buyer-front", cheap_kdf="1", **peers(market))
        buyer = yield self.buyer_of(item_id, doomed.port)

        # product-db holds the commit: the front end has reserved and been paid.
        committing = defer.Deferred()
        commit = store.catalog.commit
        store.catalog.commit = lambda *attempt, **buyer: committing.callback(attempt) or defer.Deferred()
        buyer.call("MakePurchase", CARD).addErrback(lambda _: None)
        yield committing.addTimeout(10, reactor)
        store.catalog.commit = commit
        self.assertEqual((yield store.catalog.item(item_id)).quantity, 3)
        self.assertEqual((yield store.ledger.balance(MERCHANT_ACCOUNT)), 2 * PRICE_CENTS)
        yield doomed.kill()

        clock.advance(DEFAULT_LEASE)
        self.assertEqual((yield store.catalog.item(item_id)).quantity, 5)
        voids = PaymentVoids(market.db_client(self, "product-db"),
                             market.db_client(self, "payments"))
        yield voids.sweep()
        self.assertEqual((yield store.ledger.balance(MERCHANT_ACCOUNT)), 0)
        self.assertEqual((yield store.catalog.pending_voids(10)), [])
        self.assertTrue((yield store.ledger.audit()).balanced)

        # The same session and cart, bought again through a live front end:
        # the same purchase, as its next attempt, charged once.
        buyer.connection = client(self, market.ports["buyer-front"])
        yield buyer.call("MakePurchase", CARD)
        item = yield store.catalog.item(item_id)
        self.assertEqual((item.quantity, item.sold), (3, 2))
        self.assertEqual((yield store.ledger.balance(MERCHANT_ACCOUNT)), 2 * PRICE_CENTS)
        self.assertEqual(len((yield buyer.call("GetBuyerPurchases"))["items"]), 1)

    @defer.inlineCallbacks
    def test_a_commit_after_the_lease_fails_and_keeps_no_money(self):
        item_id = yield self.start()
        store, clock = self.store, self.clock
        buyer = yield self.buyer_of(item_id, self.market.ports["buyer-front"])

        commit = store.catalog.commit

        def late_commit(*attempt, **buyer):
            clock.advance(DEFAULT_LEASE)
            return commit(*attempt, **buyer)

        store.catalog.commit = late_commit
        error = yield self.assertFailure(buyer.call("MakePurchase", CARD), ClientError)
        store.catalog.commit = commit
        self.assertIn("any charge for it is refunded", error.message)
        self.assertEqual((yield store.ledger.balance(MERCHANT_ACCOUNT)), 0)
        self.assertEqual((yield store.catalog.item(item_id)).quantity, 5)
        self.assertEqual((yield buyer.call("GetBuyerPurchases"))["items"], [])
        self.assertEqual((yield buyer.call("DisplayCart"))["cart"],
                         [{"item_id": item_id, "quantity": 2}])
        yield buyer.call("MakePurchase", CARD)
        self.assertEqual((yield store.ledger.balance(MERCHANT_ACCOUNT)), 2 * PRICE_CENTS)


class PurchaseRecordSweep:
    """
    A purchase committed and paid for while customer-db's store failed is
    recorded by the buyer front ends' sweep once its grace has passed, and
    the buyer's retry then completes it, charged once.
    """

    @defer.inlineCallbacks
    def test_a_purchase_its_front_end_could_not_record_is_recorded_by_the_sweep(self):
        store, market = yield self.start()
        seller = yield Shopper(client(self, market.ports["seller-front"]), "seller").sign_up("seller")
        item_id = (yield seller.call("RegisterItemForSale", lamp(5)))["item_id"]
        buyer = yield Shopper(client(self, market.ports["buyer-front"], timeout=10), "buyer").sign_up(
            "buyer")
        yield buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 2})

        record = store.customers.record_purchase
        store.customers.record_purchase = lambda *purchase: defer.fail(
            StoreUnavailable("Redis is restarting"))
        yield self.assertFailure(buyer.call("MakePurchase", CARD), ServiceUnavailable)
        store.customers.record_purchase = record
        self.assertEqual((yield store.ledger.balance(MERCHANT_ACCOUNT)), 2 * PRICE_CENTS)
        self.assertEqual((yield buyer.call("GetBuyerPurchases"))["items"], [])

        records = OwedRecords(market.db_client(self, "customer-db"),
                              market.db_client(self, "product-db"))
        yield records.sweep()
        self.assertEqual((yield buyer.call("GetBuyerPurchases"))["items"], [])
        self.let_the_grace_pass()
        yield records.sweep()
        self.assertEqual(len((yield buyer.call("GetBuyerPurchases"))["items"]), 1)
        self.assertEqual((yield store.catalog.owed_records(10, 0)), [])
        profile = yield store.customers.profile("buyer", buyer.user_id)
        self.assertEqual(profile.items_bought, 2)

        # The cart still holds what was bought, until the buyer's retry,
        # which completes the same purchase, charged once.
        self.assertEqual((yield buyer.call("DisplayCart"))["cart"],
                         [{"item_id": item_id, "quantity": 2}])
        yield buyer.call("MakePurchase", CARD)
        self.assertEqual((yield buyer.call("DisplayCart"))["cart"], [])
        self.assertEqual((yield store.ledger.balance(MERCHANT_ACCOUNT)), 2 * PRICE_CENTS)
        self.assertEqual(len((yield buyer.call("GetBuyerPurchases"))["items"]), 1)


class MemoryPurchaseRecordSweepTests(PurchaseRecordSweep, unittest.TestCase):
    """The embedded store on a task.Clock, so the grace passes at once."""

    @defer.inlineCallbacks
    def start(self):
        self.clock = task.Clock()
        store = make_store("memory", reactor=self.clock)
        market = yield start_market(self, store=store, lease_clock=self.clock)
        return store, market

    def let_the_grace_pass(self):
        self.clock.advance(owed.GRACE)


class RedisPurchaseRecordSweepTests(PurchaseRecordSweep, unittest.TestCase):
    """A private redis-server, whose clock the grace is measured on: the sweep's grace is cut."""

    @defer.inlineCallbacks
    def start(self):
        redis = yield start_redis(self)
        store = make_store(redis.url, timeout=5.0, reactor=reactor)
        market = yield start_market(self, store=store)
        return store, market

    def let_the_grace_pass(self):
        self.patch(owed, "GRACE", 0)


class DbServiceRestartOnRedisTests(unittest.TestCase):
    """The DB services run as their own processes on a Redis store."""

    @defer.inlineCallbacks
    def start_db_processes(self, redis, market, ports=None):
        children = {}
        for role in ("customer-db", "product-db", "payments"):
            port = ports[role] if ports else 0
            children[role] = yield spawn_tac(self, role, port, store=redis.url,
                                             service_secret=market.secret_file)
        return children

    @defer.inlineCallbacks
    def test_restarts_lose_nothing_acknowledged(self):
        redis = yield start_redis(self, appendonly=True)
        store = make_store(redis.url, timeout=2.0, reactor=reactor, key_prefix=KEY_PREFIX)
        start_service(self, store)
        market = Market(store, secret_file(self))
        children = yield self.start_db_processes(redis, market)
        market.ports.update({role: child.port for role, child in children.items()})
        buyer_port = yield start_front(self, market, "buyer")
        seller_port = yield start_front(self, market, "seller")

        seller = yield Shopper(client(self, seller_port), "seller").sign_up("seller")
        item_id = (yield seller.call("RegisterItemForSale", lamp(10)))["item_id"]
        buyer = yield Shopper(client(self, buyer_port, timeout=10), "buyer").sign_up("buyer")
        yield buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 2})
        yield buyer.call("MakePurchase", {**CARD, "idempotency_key": "first"})
        yield buyer.call("AddItemToCart", {"item_id": item_id, "quantity": 3})
        yield buyer.call("SaveCart")

        # Every DB service process and Redis itself are killed; all come back.
        for child in children.values():
            yield child.kill()
        yield self.assertFailure(buyer.call("DisplayCart"), ServiceUnavailable)
        yield redis.kill()
        yield redis.restart()
        yield self.start_db_processes(redis, market, market.ports)

        cart = yield self.eventually(lambda: buyer.call("DisplayCart"))
        self.assertEqual(cart["cart"], [{"item_id": item_id, "quantity": 3}])
        self.assertEqual((yield buyer.call("GetItem", {"item_id": item_id}))["quantity"], 8)
        self.assertEqual(len((yield buyer.call("GetBuyerPurchases"))["items"]), 1)
        again = yield buyer.call("MakePurchase", {**CARD, "idempotency_key": "first"})
        self.assertEqual(again["total"], 25)
        balance = yield self.eventually(lambda: store.ledger.balance(MERCHANT_ACCOUNT))
        self.assertEqual(balance, 2 * PRICE_CENTS)
        relogin = Shopper(client(self, buyer_port), "buyer")
        _, reply = yield relogin.connection.call("Login", {"username": "buyer", "password": "secret-pass"})
        self.assertEqual(reply["buyer_id"], buyer.user_id)

    @defer.inlineCallbacks
    def eventually(self, call, attempts=10):
        """
        Retry ``call`` while connections to the restarted processes are
        re-established: each attempt is bounded by its own timeout.
        """
        for _ in range(attempts):
            try:
                result = yield call()
            except (ServiceUnavailable, StoreUnavailable):
                continue
            return result
        raise AssertionError("the services did not recover")
