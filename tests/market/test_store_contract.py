"""
The marketplace store domains' contract (customers and catalog): one suite,
run unchanged against the embedded store and a private redis-server.
"""

from __future__ import annotations

import random

from twisted.internet import defer
from twisted.trial import unittest

from marketplace.market.validation import ItemDraft
from marketplace.store.market_errors import (
    FeedbackAlreadyGiven,
    NotInCart,
    NotOwner,
    NotPurchased,
    ReservationClosed,
    StockTooHigh,
    StockTooLow,
    UnknownItem,
    UnknownUser,
    UsernameTaken,
)
from marketplace.store.market_records import (
    COMMITTED,
    EXPIRED,
    RELEASED,
    RESERVED,
    SUPERSEDED,
    OwedRecord,
    ReservedLine,
    RevisedCart,
)
from marketplace.store.market_interfaces import ICatalogStore
from marketplace.store.market_rules import MAX_STOCK
from marketplace.store.memory import catalog as memory_catalog
from tests.store.backends import MemoryBackend, RedisBackend


#: A lease no test outlasts.
LEASE = 3600.0


def draft(name="lamp", category=1, keywords=("light",), quantity=5, price_cents=1999, new=True):
    return ItemDraft(name, category, tuple(keywords), new, price_cents, quantity)


class CustomersContract:
    @defer.inlineCallbacks
    def test_user_names_are_unique_per_role(self):
        customers = self.store.customers
        alice = yield customers.create_user("buyer", "alice", "hash-a")
        yield self.assertFailure(customers.create_user("buyer", "alice", "other"), UsernameTaken)
        seller_alice = yield customers.create_user("seller", "alice", "hash-s")
        bob = yield customers.create_user("buyer", "bob", "hash-b")
        self.assertNotEqual(alice, bob)
        self.assertEqual((yield customers.credentials("buyer", "alice")).password_hash, "hash-a")
        self.assertEqual((yield customers.credentials("seller", "alice")).user_id, seller_alice)
        yield self.assertFailure(customers.credentials("buyer", "nobody"), UnknownUser)

    @defer.inlineCallbacks
    def test_password_hash_is_replaced_only_if_unchanged(self):
        customers = self.store.customers
        alice = yield customers.create_user("buyer", "alice", "weak")
        self.assertFalse((yield customers.replace_password_hash("buyer", alice, "other", "strong")))
        self.assertEqual((yield customers.credentials("buyer", "alice")).password_hash, "weak")
        self.assertTrue((yield customers.replace_password_hash("buyer", alice, "weak", "strong")))
        self.assertEqual((yield customers.credentials("buyer", "alice")).password_hash, "strong")
        yield self.assertFailure(
            customers.replace_password_hash("seller", alice, "strong", "x"), UnknownUser)

    @defer.inlineCallbacks
    def test_profile(self):
        customers = self.store.customers
        seller = yield customers.create_user("seller", "sam", "h")
        profile = yield customers.profile("seller", seller)
        self.assertEqual((profile.username, profile.pos, profile.neg, profile.items_sold), ("sam", 0, 0, 0))
        yield self.assertFailure(customers.profile("seller", seller + 100), UnknownUser)
        yield self.assertFailure(customers.profile("buyer", seller), UnknownUser)

    @defer.inlineCallbacks
    def test_cart_add_is_limited_by_stock(self):
        customers = self.store.customers
        self.assertEqual((yield customers.cart_add("s1", 7, 2, 5, 300)), 2)
        self.assertEqual((yield customers.cart_add("s1", 7, 3, 5, 300)), 5)
        refused = yield self.assertFailure(customers.cart_add("s1", 7, 1, 5, 300), StockTooLow)
        self.assertEqual(refused.available, 0)
        refused = yield self.assertFailure(customers.cart_add("s1", 7, 9, 6, 300), StockTooLow)
        self.assertEqual(refused.available, 1)
        yield customers.cart_add("s1", 8, 1, 1, 300)
        self.assertEqual((yield customers.cart("s1")), {7: 5, 8: 1})

    @defer.inlineCallbacks
    def test_cart_remove(self):
        customers = self.store.customers
        yield customers.cart_add("s1", 7, 4, 10, 300)
        self.assertEqual((yield customers.cart_remove("s1", 7, 1, 300)), 3)
        refused = yield self.assertFailure(customers.cart_remove("s1", 7, 4, 300), NotInCart)
        self.assertEqual(refused.in_cart, 3)
        self.assertEqual((yield customers.cart_remove("s1", 7, 3, 300)), 0)
        self.assertEqual((yield customers.cart("s1")), {})
        yield self.assertFailure(customers.cart_remove("s1", 9, 1, 300), NotInCart)

    @defer.inlineCallbacks
    def test_carts_are_per_session(self):
        customers = self.store.customers
        yield customers.cart_add("s1", 7, 1, 10, 300)
        yield customers.cart_add("s2", 8, 2, 10, 300)
        yield customers.cart_drop("s1")
        self.assertEqual((yield customers.cart("s1")), {})
        self.assertEqual((yield customers.cart("s2")), {8: 2})
        yield customers.cart_clear("s2")
        self.assertEqual((yield customers.cart("s2")), {})

    @defer.inlineCallbacks
    def test_saved_cart_is_restored_into_a_later_session(self):
        customers = self.store.customers
        yield customers.cart_add("s1", 7, 2, 10, 300)
        yield customers.cart_save("s1", 42)
        yield customers.cart_add("s1", 8, 1, 10, 300)
        yield customers.cart_restore("s2", 42, 300)
        self.assertEqual((yield customers.cart("s2")), {7: 2})
        self.assertEqual((yield customers.cart("s1")), {7: 2, 8: 1})
        yield customers.cart_clear("s3")
        yield customers.cart_save("s3", 42)
        yield customers.cart_restore("s4", 42, 300)
        self.assertEqual((yield customers.cart("s4")), {})

    @defer.inlineCallbacks
    def test_every_change_gives_a_cart_a_revision_no_cart_had(self):
        customers = self.store.customers
        buyer = yield customers.create_user("buyer", "bea", "h")
        self.assertEqual((yield customers.revised_cart("s1")), RevisedCart({}, 0))
        seen = []

        @defer.inlineCallbacks
        def revision_of(session_id, lines):
            cart = yield customers.revised_cart(session_id)
            self.assertEqual(cart.lines, lines)
            self.assertNotIn(cart.revision, seen)
            seen.append(cart.revision)

        yield customers.cart_add("s1", 7, 2, 10, 300)
        yield revision_of("s1", {7: 2})
        yield customers.cart_add("s2", 7, 2, 10, 300)
        yield revision_of("s2", {7: 2})
        yield customers.cart_add("s1", 8, 1, 10, 300)
        yield revision_of("s1", {7: 2, 8: 1})
        yield customers.cart_remove("s1", 8, 1, 300)
        yield revision_of("s1", {7: 2})
        yield customers.cart_save("s1", buyer)
        yield customers.cart_touch("s1", 300)
        self.assertEqual((yield customers.revised_cart("s1")).revision, seen[-1])
        yield customers.cart_restore("s3", buyer, 300)
        yield revision_of("s3", {7: 2})
        yield customers.record_purchase("p1", buyer, "s1", [ReservedLine(7, 1, 1, 5)], 1.0)
        yield revision_of("s1", {7: 1})
        yield customers.record_purchase("p2", buyer, "s1", [ReservedLine(7, 1, 1, 5)], 1.0)
        self.assertEqual((yield customers.revised_cart("s1")), RevisedCart({}, 0))
        # Emptied and filled again, as it was: still a new revision.
        yield customers.cart_add("s1", 7, 1, 10, 300)
        yield revision_of("s1", {7: 1})
        yield customers.cart_clear("s1")
        yield customers.cart_add("s1", 7, 1, 10, 300)
        yield revision_of("s1", {7: 1})
        self.assertEqual((yield customers.cart("s1")), {7: 1})

    @defer.inlineCallbacks
    def test_active_cart_expires_unless_used(self):
        customers = self.store.customers
        ttl = self.short_ttl
        yield customers.cart_add("kept", 7, 1, 10, ttl)
        yield customers.cart_add("idle", 7, 1, 10, ttl)
        yield self.let_time_pass(ttl * 0.6)
        yield customers.cart_touch("kept", ttl)
        yield self.let_time_pass(ttl * 0.6)
        self.assertEqual((yield customers.cart("kept")), {7: 1})
        self.assertEqual((yield customers.cart("idle")), {})

    @defer.inlineCallbacks
    def test_purchase_is_recorded_once(self):
        customers = self.store.customers
        buyer = yield customers.create_user("buyer", "bea", "h")
        seller = yield customers.create_user("seller", "sol", "h")
        yield customers.cart_add("s1", 7, 3, 10, 300)
        yield customers.cart_add("s1", 8, 1, 10, 300)
        lines = [ReservedLine(7, seller, 2, 150), ReservedLine(8, seller, 1, 99)]
        self.assertTrue((yield customers.record_purchase("p1", buyer, "s1", lines, 1000.5)))
        self.assertFalse((yield customers.record_purchase("p1", buyer, "s1", lines, 1001.0)))
        self.assertEqual((yield customers.cart("s1")), {7: 1})
        history = yield customers.purchases(buyer, 10)
        self.assertEqual([(p.item_id, p.quantity, p.price_cents, p.purchased_at, p.purchase_id)
                          for p in history],
                         [(8, 1, 99, 1000.5, "p1"), (7, 2, 150, 1000.5, "p1")])
        self.assertEqual(len((yield customers.purchases(buyer, 1))), 1)
        self.assertEqual((yield customers.profile("buyer", buyer)).items_bought, 3)
        self.assertEqual((yield customers.profile("seller", seller)).items_sold, 3)

    @defer.inlineCallbacks
    def test_a_purchase_takes_what_it_bought_out_of_the_saved_cart(self):
        customers = self.store.customers
        buyer = yield customers.create_user("buyer", "bea", "h")
        yield customers.cart_add("s1", 7, 3, 10, 300)
        yield customers.cart_add("s1", 8, 1, 10, 300)
        yield customers.cart_save("s1", buyer)
        lines = [ReservedLine(7, 1, 2, 150), ReservedLine(8, 1, 1, 99)]
        yield customers.record_purchase("p1", buyer, "s1", lines, 1.0)
        yield customers.cart_restore("s2", buyer, 300)
        self.assertEqual((yield customers.cart("s2")), {7: 1})
        yield customers.record_purchase("p2", buyer, "s2", [ReservedLine(7, 1, 1, 150)], 2.0)
        yield customers.cart_restore("s3", buyer, 300)
        self.assertEqual((yield customers.cart("s3")), {})

    @defer.inlineCallbacks
    def test_a_purchase_recorded_without_a_session_leaves_the_active_cart_to_a_retry(self):
        customers = self.store.customers
        buyer = yield customers.create_user("buyer", "bea", "h")
        seller = yield customers.create_user("seller", "sol", "h")
        yield customers.cart_add("s1", 7, 3, 10, 300)
        yield customers.cart_save("s1", buyer)
        lines = [ReservedLine(7, seller, 2, 150)]
        self.assertTrue((yield customers.record_purchase("p1", buyer, None, lines, 5.0)))
        self.assertFalse((yield customers.record_purchase("p1", buyer, None, lines, 5.5)))
        self.assertEqual((yield customers.cart("s1")), {7: 3})
        yield customers.cart_restore("s2", buyer, 300)
        self.assertEqual((yield customers.cart("s2")), {7: 1})
        # The buyer's retry in the session that bought: the active cart, once.
        self.assertFalse((yield customers.record_purchase("p1", buyer, "s1", lines, 6.0)))
        self.assertEqual((yield customers.cart("s1")), {7: 1})
        self.assertFalse((yield customers.record_purchase("p1", buyer, "s1", lines, 7.0)))
        self.assertEqual((yield customers.cart("s1")), {7: 1})
        self.assertFalse((yield customers.record_purchase("p1", buyer, None, lines, 8.0)))
        history = yield customers.purchases(buyer, 10)
        self.assertEqual([(p.purchase_id, p.item_id, p.quantity, p.purchased_at) for p in history],
                         [("p1", 7, 2, 5.0)])
        self.assertEqual((yield customers.profile("buyer", buyer)).items_bought, 2)
        self.assertEqual((yield customers.profile("seller", seller)).items_sold, 2)

    @defer.inlineCallbacks
    def test_feedback_once_per_bought_item(self):
        customers = self.store.customers
        buyer = yield customers.create_user("buyer", "bea", "h")
        seller = yield customers.create_user("seller", "sol", "h")
        yield self.assertFailure(customers.record_feedback(buyer, 7, seller, True), NotPurchased)
        yield customers.record_purchase("p1", buyer, "s1", [ReservedLine(7, seller, 1, 5)], 1.0)
        yield customers.record_feedback(buyer, 7, seller, False)
        again = yield self.assertFailure(customers.record_feedback(buyer, 7, seller, True),
                                         FeedbackAlreadyGiven)
        self.assertFalse(again.positive)
        profile = yield customers.profile("seller", seller)
        self.assertEqual((profile.pos, profile.neg), (0, 1))


class CatalogContract:
    @defer.inlineCallbacks
    def test_items_get_distinct_ids_and_round_trip(self):
        catalog = self.store.catalog
        first = yield catalog.create_item(3, draft(name="Lamp Deluxe", keywords=("light", "desk")))
        second = yield catalog.create_item(3, draft(price_cents=0, quantity=0, new=False))
        self.assertNotEqual(first.item_id, second.item_id)
        fetched = yield catalog.item(first.item_id)
        self.assertEqual(fetched, first)
        self.assertEqual((fetched.item_name, fetched.keywords, fetched.price_cents, fetched.seller_id),
                         ("Lamp Deluxe", ("light", "desk"), 1999, 3))
        self.assertFalse((yield catalog.item(second.item_id)).condition_is_new)
        yield self.assertFailure(catalog.item(second.item_id + 100), UnknownItem)

    @defer.inlineCallbacks
    def test_item_ids_count_from_one(self):
        catalog = self.store.catalog
        ids = []
        for _ in range(3):
            ids.append((yield catalog.create_item(3, draft())).item_id)
        self.assertEqual(ids, [1, 2, 3])

    @defer.inlineCallbacks
    def test_a_page_starts_at_its_offset_and_holds_its_limit(self):
        catalog = self.store.catalog
        ids = []
        for _ in range(10):
            ids.append((yield catalog.create_item(3, draft())).item_id)
        for keywords in ((), ("light",)):
            page = yield catalog.search(None, keywords, False, 3, 5)
            self.assertEqual(([i.item_id for i in page.items], page.total), (ids[3:8], 10))

    @defer.inlineCallbacks
    def test_every_call_answers_a_deferred(self):
        """Results and refusals alike, as every backend does."""
        catalog = self.store.catalog
        self.assertTrue(ICatalogStore.providedBy(catalog))
        created = catalog.create_item(1, draft())
        self.assertIsInstance(created, defer.Deferred)
        item = yield created
        calls = [catalog.item(item.item_id), catalog.item(item.item_id + 9),
                 catalog.items_of_seller(1), catalog.set_price(item.item_id, 1, 5),
                 catalog.adjust_stock(item.item_id, 1, 1), catalog.search(None, (), True, 0, 5),
                 catalog.reserve("p", [(item.item_id, 1)], LEASE), catalog.commit("p", 1),
                 catalog.release("q", 1), catalog.expire_leases(5), catalog.pending_voids(5),
                 catalog.void_done("p", 1), catalog.item_feedback(item.item_id, 5, True)]
        for call in calls:
            self.assertIsInstance(call, defer.Deferred)
        yield defer.DeferredList(calls, consumeErrors=True)

    @defer.inlineCallbacks
    def test_each_attempt_is_numbered_one_more(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=4))
        for attempt in (1, 2, 3):
            reservation = yield catalog.reserve("p", [(item.item_id, 1)], LEASE)
            self.assertEqual(reservation.attempt, attempt)
            yield catalog.release("p", attempt)

    @defer.inlineCallbacks
    def test_sold_units_add_up(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=4))
        for purchase in ("p1", "p2"):
            yield catalog.reserve(purchase, [(item.item_id, 1)], LEASE)
            yield catalog.commit(purchase, 1)
        self.assertEqual((yield catalog.item(item.item_id)).sold, 2)

    @defer.inlineCallbacks
    def test_a_search_of_an_empty_category_finds_nothing(self):
        catalog = self.store.catalog
        yield catalog.create_item(3, draft(category=1))
        for in_stock_only in (True, False):
            page = yield catalog.search(9, (), not in_stock_only, 0, 10)
            self.assertEqual((list(page.items), page.total), ([], 0))

    @defer.inlineCallbacks
    def test_items_of_seller(self):
        catalog = self.store.catalog
        mine = []
        for quantity in (0, 1, 2):
            mine.append((yield catalog.create_item(1, draft(quantity=quantity))).item_id)
        yield catalog.create_item(2, draft())
        self.assertEqual([i.item_id for i in (yield catalog.items_of_seller(1))], mine)
        self.assertEqual((yield catalog.items_of_seller(99)), [])

    @defer.inlineCallbacks
    def test_only_the_owner_changes_an_item(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft())
        self.assertEqual((yield catalog.set_price(item.item_id, 1, 250)).price_cents, 250)
        yield self.assertFailure(catalog.set_price(item.item_id, 2, 1), NotOwner)
        yield self.assertFailure(catalog.adjust_stock(item.item_id, 2, 1), NotOwner)
        # Sellers with lower ids and owners with ids past any small-int cache alike.
        yield self.assertFailure(catalog.set_price(item.item_id, 0, 1), NotOwner)
        theirs = yield catalog.create_item(1000, draft())
        self.assertEqual((yield catalog.set_price(theirs.item_id, int("1000"), 7)).price_cents, 7)
        yield self.assertFailure(catalog.set_price(item.item_id + 9, 1, 1), UnknownItem)
        self.assertEqual((yield catalog.item(item.item_id)).price_cents, 250)

    @defer.inlineCallbacks
    def test_stock_never_goes_below_zero(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=2))
        self.assertEqual((yield catalog.adjust_stock(item.item_id, 1, 3)), 5)
        self.assertEqual((yield catalog.adjust_stock(item.item_id, 1, -3)), 2)
        self.assertEqual((yield catalog.adjust_stock(item.item_id, 1, 3)), 5)
        page = yield catalog.search(None, (), False, 0, 10)
        self.assertEqual([i.item_id for i in page.items], [item.item_id])
        refused = yield self.assertFailure(catalog.adjust_stock(item.item_id, 1, -6), StockTooLow)
        self.assertEqual(refused.available, 5)
        self.assertEqual((yield catalog.adjust_stock(item.item_id, 1, -5)), 0)
        page = yield catalog.search(None, ("light",), False, 0, 10)
        self.assertEqual(page.total, 0)
        yield catalog.adjust_stock(item.item_id, 1, 1)
        page = yield catalog.search(None, ("light",), False, 0, 10)
        self.assertEqual([i.item_id for i in page.items], [item.item_id])

    @defer.inlineCallbacks
    def test_stock_never_goes_above_the_limit(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=MAX_STOCK - 1))
        self.assertEqual((yield catalog.adjust_stock(item.item_id, 1, 1)), MAX_STOCK)
        refused = yield self.assertFailure(catalog.adjust_stock(item.item_id, 1, MAX_STOCK),
                                           StockTooHigh)
        self.assertEqual(refused.limit, MAX_STOCK)
        yield self.assertFailure(catalog.adjust_stock(item.item_id, 1, 1), StockTooHigh)
        self.assertEqual((yield catalog.item(item.item_id)).quantity, MAX_STOCK)

    @defer.inlineCallbacks
    def test_searches_without_keywords_page_in_id_order_as_stock_changes(self):
        catalog = self.store.catalog
        ids = []
        for n in range(12):
            ids.append((yield catalog.create_item(1, draft(category=1 + n % 2, quantity=n % 3))).item_id)

        @defer.inlineCallbacks
        def found(category, include_out_of_stock, offset=0, limit=100):
            page = yield catalog.search(category, (), include_out_of_stock, offset, limit)
            return [i.item_id for i in page.items], page.total

        in_stock = [i for n, i in enumerate(ids) if n % 3]
        self.assertEqual((yield found(None, False)), (in_stock, 8))
        self.assertEqual((yield found(None, True, 3, 4)), (ids[3:7], 12))
        self.assertEqual((yield found(2, False)), ([i for i in in_stock if ids.index(i) % 2], 4))
        self.assertEqual((yield found(2, True, 1, 2)), (ids[3:6:2], 6))
        self.assertEqual((yield found(None, False, 2 ** 53 - 1, 100)), ([], 8))
        # Stock leaves and comes back by reservation, release and adjustment.
        yield catalog.reserve("p1", [(ids[1], 1)], LEASE)
        yield catalog.adjust_stock(ids[0], 1, 5)
        yield catalog.adjust_stock(ids[2], 1, -2)
        self.assertEqual((yield found(None, False, 0, 3)), ([ids[0], ids[4], ids[5]], 7))
        self.assertEqual((yield found(1, False)), ([ids[0], ids[4], ids[8], ids[10]], 4))
        yield catalog.release("p1", 1)
        self.assertEqual((yield found(2, False, 0, 2)), ([ids[1], ids[5]], 4))

    @defer.inlineCallbacks
    def test_stock_of_a_lapsed_lease_is_back_in_searches_without_keywords(self):
        catalog = self.store.catalog
        swept = yield catalog.create_item(1, draft(category=1, quantity=2))
        late = yield catalog.create_item(1, draft(category=2, quantity=1))
        # "a-..." lapses first: deadlines that tie are taken in purchase id order.
        yield catalog.reserve("a-swept", [(swept.item_id, 2)], self.short_ttl)
        yield catalog.reserve("b-committed-late", [(late.item_id, 1)], self.short_ttl)

        @defer.inlineCallbacks
        def in_stock(category):
            page = yield catalog.search(category, (), False, 0, 10)
            return [i.item_id for i in page.items], page.total

        for category in (None, 1, 2):
            self.assertEqual((yield in_stock(category)), ([], 0))
        yield self.let_time_pass(self.short_ttl * 1.5)
        # The sweep puts the first back on sale ...
        self.assertEqual((yield catalog.expire_leases(1)), 1)
        self.assertEqual((yield in_stock(None)), ([swept.item_id], 1))
        self.assertEqual((yield in_stock(1)), ([swept.item_id], 1))
        self.assertEqual((yield in_stock(2)), ([], 0))
        # ... and a commit that comes too late lapses the other then and there.
        yield self.assertFailure(catalog.commit("b-committed-late", 1), ReservationClosed)
        self.assertEqual((yield in_stock(None)), ([swept.item_id, late.item_id], 2))
        self.assertEqual((yield in_stock(2)), ([late.item_id], 1))

    @defer.inlineCallbacks
    def test_search_ranks_by_matching_keywords_then_id(self):
        catalog = self.store.catalog
        one = yield catalog.create_item(1, draft(keywords=("red",)))
        two = yield catalog.create_item(1, draft(keywords=("red", "big")))
        other_category = yield catalog.create_item(1, draft(category=2, keywords=("red", "big")))
        three = yield catalog.create_item(1, draft(keywords=("red", "big", "soft")))
        sold_out = yield catalog.create_item(1, draft(keywords=("red", "big", "soft"), quantity=0))
        also_one = yield catalog.create_item(1, draft(keywords=("soft",)))
        yield catalog.create_item(1, draft(keywords=("blue",)))
        page = yield catalog.search(1, ("red", "big", "soft"), False, 0, 10)
        self.assertEqual([i.item_id for i in page.items],
                         [three.item_id, two.item_id, one.item_id, also_one.item_id])
        self.assertEqual(page.total, 4)
        page = yield catalog.search(1, ("red", "big", "soft"), True, 1, 2)
        self.assertEqual([i.item_id for i in page.items], [sold_out.item_id, two.item_id])
        self.assertEqual(page.total, 5)
        page = yield catalog.search(None, ("big",), False, 0, 10)
        self.assertEqual([i.item_id for i in page.items],
                         [two.item_id, other_category.item_id, three.item_id])
        page = yield catalog.search(2, (), False, 0, 10)
        self.assertEqual([i.item_id for i in page.items], [other_category.item_id])
        everything = yield catalog.search(None, (), True, 0, 100)
        self.assertEqual(everything.total, 7)
        self.assertIn(sold_out.item_id, [i.item_id for i in everything.items])
        self.assertEqual((yield catalog.search(None, ("nothing",), True, 0, 10)).total, 0)

    @defer.inlineCallbacks
    def test_every_page_of_a_keyword_search_follows_the_ranking_rule(self):
        """
        A random catalogue searched with random queries: each page is the
        slice of the whole ranking that the rule gives, worked out here from
        the items created, whatever the scores the page straddles.
        """
        catalog = self.store.catalog
        rng = random.Random(5)
        vocabulary = ("red", "big", "soft", "old", "fast")
        created = []
        for _ in range(60):
            item = yield catalog.create_item(1, draft(
                category=rng.randrange(1, 4), keywords=rng.sample(vocabulary, rng.randrange(1, 4)),
                quantity=rng.choice((0, 1, 5))))
            created.append(item)
        for _ in range(40):
            category = rng.choice((None, 1, 2, 3))
            keywords = tuple(rng.sample(vocabulary, rng.randrange(1, 6)))
            include_out_of_stock = rng.random() < 0.5
            offset, limit = rng.randrange(0, 30), rng.randrange(1, 25)
            scores = {item.item_id: len(set(keywords) & set(item.keywords)) for item in created
                      if (category is None or item.category == category)
                      and (include_out_of_stock or item.quantity > 0)}
            ranking = sorted((item_id for item_id, score in scores.items() if score),
                             key=lambda item_id: (-scores[item_id], item_id))
            page = yield catalog.search(category, keywords, include_out_of_stock, offset, limit)
            query = (category, keywords, include_out_of_stock, offset, limit)
            self.assertEqual([item.item_id for item in page.items],
                             ranking[offset:offset + limit], query)
            self.assertEqual(page.total, len(ranking), query)

    @defer.inlineCallbacks
    def test_reserve_takes_all_lines_or_none(self):
        catalog = self.store.catalog
        plenty = yield catalog.create_item(1, draft(quantity=10, price_cents=100))
        scarce = yield catalog.create_item(2, draft(quantity=1, price_cents=50))
        refused = yield self.assertFailure(
            catalog.reserve("p1", [(plenty.item_id, 3), (scarce.item_id, 2)], LEASE), StockTooLow)
        self.assertEqual((refused.item_id, refused.available), (scarce.item_id, 1))
        self.assertEqual((yield catalog.item(plenty.item_id)).quantity, 10)
        yield self.assertFailure(catalog.reserve("p1", [(plenty.item_id + 99, 1)], LEASE), UnknownItem)
        reservation = yield catalog.reserve("p1", [(plenty.item_id, 3), (scarce.item_id, 1)], LEASE)
        self.assertEqual(reservation.state, RESERVED)
        self.assertEqual(reservation.total_cents, 350)
        self.assertEqual(set(reservation.lines), {
            ReservedLine(plenty.item_id, 1, 3, 100), ReservedLine(scarce.item_id, 2, 1, 50)})
        self.assertEqual((yield catalog.item(scarce.item_id)).quantity, 0)
        again = yield catalog.reserve("p1", [(plenty.item_id, 5)], LEASE)
        self.assertEqual(again, reservation)
        self.assertEqual((yield catalog.item(plenty.item_id)).quantity, 7)

    @defer.inlineCallbacks
    def test_lines_naming_one_item_are_reserved_together(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=3, price_cents=100))
        refused = yield self.assertFailure(
            catalog.reserve("p1", [(item.item_id, 2), (item.item_id, 2)], LEASE), StockTooLow)
        self.assertEqual((refused.item_id, refused.available), (item.item_id, 3))
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 3)
        reservation = yield catalog.reserve("p2", [(item.item_id, 1), (item.item_id, 2)], LEASE)
        self.assertEqual(reservation.lines, (ReservedLine(item.item_id, 1, 3, 100),))
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 0)

    @defer.inlineCallbacks
    def test_release_and_commit_are_idempotent_and_final(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=4))
        yield catalog.reserve("p1", [(item.item_id, 3)], LEASE)
        released = yield catalog.release("p1", 1)
        self.assertEqual(released.state, RELEASED)
        yield catalog.release("p1", 1)
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 4)
        yield self.assertFailure(catalog.commit("p1", 1), ReservationClosed)
        again = yield catalog.reserve("p1", [(item.item_id, 1)], LEASE)
        self.assertEqual((again.state, again.attempt), (RESERVED, 2))
        refused = yield self.assertFailure(catalog.commit("p1", 1), ReservationClosed)
        self.assertEqual(refused.state, SUPERSEDED)
        # An attempt that was never made is no more the current one.
        refused = yield self.assertFailure(catalog.commit("p1", 3), ReservationClosed)
        self.assertEqual(refused.state, SUPERSEDED)
        committed = yield catalog.commit("p1", 2)
        self.assertEqual((committed.state, committed.attempt), (COMMITTED, 2))
        yield catalog.commit("p1", 2)
        yield self.assertFailure(catalog.release("p1", 2), ReservationClosed)
        stored = yield catalog.item(item.item_id)
        self.assertEqual((stored.quantity, stored.sold), (3, 1))
        self.assertEqual((yield catalog.reserve("p1", [], LEASE)).state, COMMITTED)
        yield self.assertFailure(catalog.reserve("unknown", [], LEASE), ReservationClosed)
        yield self.assertFailure(catalog.commit("unknown", 1), ReservationClosed)
        self.assertEqual((yield catalog.pending_voids(10)), [])

    @defer.inlineCallbacks
    def test_a_reservation_lapses_when_its_lease_runs_out(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=5, price_cents=100))
        yield catalog.reserve("lapses", [(item.item_id, 3)], self.short_ttl)
        yield catalog.reserve("kept", [(item.item_id, 1)], self.short_ttl * 10)
        yield catalog.reserve("paid", [(item.item_id, 1)], self.short_ttl)
        yield catalog.commit("paid", 1)
        self.assertEqual((yield catalog.expire_leases(10)), 0)
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 0)
        yield self.let_time_pass(self.short_ttl * 1.5)
        self.assertEqual((yield catalog.expire_leases(10)), 1)
        self.assertEqual((yield catalog.expire_leases(10)), 0)
        stored = yield catalog.item(item.item_id)
        self.assertEqual((stored.quantity, stored.sold), (3, 1))
        refused = yield self.assertFailure(catalog.commit("lapses", 1), ReservationClosed)
        self.assertEqual(refused.state, EXPIRED)
        self.assertEqual((yield catalog.commit("kept", 1)).state, COMMITTED)
        voids = yield catalog.pending_voids(10)
        self.assertEqual([(v.purchase_id, v.attempt, v.state, v.total_cents) for v in voids],
                         [("lapses", 1, EXPIRED, 300)])
        # The purchase may be made again, as its next attempt; the lapsed
        # attempt's void stays pending until it is done.
        again = yield catalog.reserve("lapses", [(item.item_id, 3)], LEASE)
        self.assertEqual((again.state, again.attempt), (RESERVED, 2))
        self.assertEqual(len((yield catalog.pending_voids(10))), 1)
        done = catalog.void_done("lapses", 1)
        self.assertIsInstance(done, defer.Deferred)
        yield done
        yield catalog.void_done("lapses", 1)
        self.assertEqual((yield catalog.pending_voids(10)), [])
        self.assertEqual((yield catalog.commit("lapses", 2)).state, COMMITTED)

    @defer.inlineCallbacks
    def test_a_commit_after_the_lease_fails_though_nothing_swept(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=2))
        yield catalog.reserve("late", [(item.item_id, 2)], self.short_ttl)
        yield self.let_time_pass(self.short_ttl * 1.5)
        refused = yield self.assertFailure(catalog.commit("late", 1), ReservationClosed)
        self.assertEqual(refused.state, EXPIRED)
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 2)
        self.assertEqual([v.purchase_id for v in (yield catalog.pending_voids(10))], ["late"])
        # A lapsed attempt is not released either: its units are back already.
        yield self.assertFailure(catalog.release("late", 1), ReservationClosed)
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 2)

    @defer.inlineCallbacks
    def test_a_commit_naming_its_buyer_owes_the_purchase_record_until_done(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(4, draft(quantity=5, price_cents=250))
        for purchase in ("first", "second", "unnamed", "released"):
            yield catalog.reserve(purchase, [(item.item_id, 1)], LEASE)
        yield catalog.commit("first", 1, buyer_id=7)
        yield catalog.commit("first", 1, buyer_id=7)
        yield catalog.commit("unnamed", 1)
        yield catalog.release("released", 1)
        yield self.let_time_pass(self.short_ttl)
        yield catalog.commit("second", 1, buyer_id=8)
        line = ReservedLine(item.item_id, 4, 1, 250)
        listed = catalog.owed_records(10, 0)
        self.assertIsInstance(listed, defer.Deferred)
        self.assertEqual((yield listed),
                         [OwedRecord("first", 7, [line]), OwedRecord("second", 8, [line])])
        # Only those committed at least that long ago, at most that many.
        due = yield catalog.owed_records(10, self.short_ttl / 2)
        self.assertEqual([owed.purchase_id for owed in due], ["first"])
        self.assertEqual(len((yield catalog.owed_records(1, 0))), 1)
        done = catalog.record_done("first")
        self.assertIsInstance(done, defer.Deferred)
        yield done
        yield catalog.record_done("first")
        # A commit retried after its record was made owes nothing again.
        yield catalog.commit("first", 1, buyer_id=7)
        self.assertEqual([owed.purchase_id for owed in (yield catalog.owed_records(10, 0))],
                         ["second"])

    @defer.inlineCallbacks
    def test_lapsing_is_bounded_per_call(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft(quantity=5))
        for i in range(5):
            yield catalog.reserve(f"p{i}", [(item.item_id, 1)], self.short_ttl)
        yield self.let_time_pass(self.short_ttl * 1.5)
        self.assertEqual((yield catalog.expire_leases(2)), 2)
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 2)
        self.assertEqual((yield catalog.expire_leases(10)), 3)
        self.assertEqual(len((yield catalog.pending_voids(3))), 3)
        self.assertEqual(len((yield catalog.pending_voids(10))), 5)

    @defer.inlineCallbacks
    def test_concurrent_reservations_never_oversell(self):
        stores = yield self.make_clients(4)
        item = yield stores[0].catalog.create_item(1, draft(quantity=5))
        attempts = [stores[i % 4].catalog.reserve(f"p{i}", [(item.item_id, 2)], LEASE)
                    for i in range(12)]
        results = yield defer.DeferredList(attempts, consumeErrors=True)
        won = [r for ok, r in results if ok]
        lost = [r for ok, r in results if not ok]
        self.assertEqual(len(won), 2)
        self.assertTrue(all(f.check(StockTooLow) for f in lost))
        self.assertEqual((yield stores[0].catalog.item(item.item_id)).quantity, 1)

    @defer.inlineCallbacks
    def test_item_feedback_counted_once_per_buyer(self):
        catalog = self.store.catalog
        item = yield catalog.create_item(1, draft())
        self.assertTrue((yield catalog.item_feedback(item.item_id, 5, True)))
        self.assertFalse((yield catalog.item_feedback(item.item_id, 5, False)))
        self.assertTrue((yield catalog.item_feedback(item.item_id, 6, False)))
        stored = yield catalog.item(item.item_id)
        self.assertEqual((stored.pos, stored.neg), (1, 1))
        for buyer, positive in [(7, True), (8, True), (9, False)]:
            yield catalog.item_feedback(item.item_id, buyer, positive)
        stored = yield catalog.item(item.item_id)
        self.assertEqual((stored.pos, stored.neg), (3, 2))
        yield self.assertFailure(catalog.item_feedback(item.item_id + 9, 5, True), UnknownItem)


class MarketStoreContract(CustomersContract, CatalogContract):
    """Everything both backends must do alike."""


class MemoryMarketStoreTests(MarketStoreContract, MemoryBackend, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_search_without_keywords_does_the_work_of_its_page(self):
        catalog = self.store.catalog
        for n in range(30):
            yield catalog.create_item(1, draft(category=1 + n % 3))
        # A page is a slice of ids kept in order: nothing is ranked.
        self.patch(memory_catalog, "rank", lambda scores: self.fail(f"ranked {len(scores)} items"))
        for category in (None, 2):
            page = yield catalog.search(category, (), False, 2, 5)
            self.assertEqual(len(page.items), 5)


class MemoryIdOrderTests(MemoryBackend, unittest.TestCase):
    def test_ordered_pages_hold_past_small_ints(self):
        """
        A catalogue of more than 256 items (past CPython's cache of small
        ints) keeps its in-stock order as stock runs out and comes back.
        """
        catalog = self.store.catalog
        ids = [self.successResultOf(catalog.create_item(1, draft())).item_id for _ in range(300)]
        for item_id in (ids[-1], ids[150]):
            self.successResultOf(catalog.adjust_stock(item_id, 1, -5))
            self.successResultOf(catalog.adjust_stock(item_id, 1, 5))
        self.successResultOf(catalog.create_item(1, draft(quantity=0)))
        page = self.successResultOf(catalog.search(None, (), False, 0, 400))
        self.assertEqual(([i.item_id for i in page.items], page.total), (ids, 300))


    def test_an_item_already_out_of_stock_leaves_the_others_in_their_order(self):
        catalog = self.store.catalog
        gone = self.successResultOf(catalog.create_item(1, draft(quantity=0)))
        kept = self.successResultOf(catalog.create_item(1, draft(quantity=5)))
        self.successResultOf(catalog.adjust_stock(gone.item_id, 1, 0))
        page = self.successResultOf(catalog.search(None, (), False, 0, 10))
        self.assertEqual([i.item_id for i in page.items], [kept.item_id])


class MemoryLeaseTimingTests(MemoryBackend, unittest.TestCase):
    """Leases on the embedded store's clock, to the tick."""

    @defer.inlineCallbacks
    def setUp(self):
        yield MemoryBackend.setUp(self)
        self.catalog = self.store.catalog
        self.item = yield self.catalog.create_item(1, draft(quantity=400))

    def reserve(self, purchase, lease):
        return self.successResultOf(self.catalog.reserve(purchase, [(self.item.item_id, 1)], lease))

    def test_a_lease_lapses_at_its_deadline(self):
        self.reserve("a-swept", 10)
        self.reserve("b-late", 10)
        self.let_time_pass(10)
        self.assertEqual(self.successResultOf(self.catalog.expire_leases(1)), 1)
        self.failureResultOf(self.catalog.commit("b-late", 1), ReservationClosed)

    def test_the_earliest_deadline_lapses_first(self):
        self.reserve("short", 10)
        self.reserve("long", 100)
        self.let_time_pass(20)
        self.assertEqual(self.successResultOf(self.catalog.expire_leases(10)), 1)
        self.assertEqual(self.successResultOf(self.catalog.commit("long", 1)).state, COMMITTED)

    def test_an_older_attempts_deadline_does_not_lapse_the_current_one(self):
        self.reserve("p", 10)
        self.successResultOf(self.catalog.release("p", 1))
        self.reserve("p", 100)
        self.let_time_pass(20)
        self.assertEqual(self.successResultOf(self.catalog.expire_leases(10)), 0)
        self.assertEqual(self.successResultOf(self.catalog.commit("p", 2)).state, COMMITTED)

    def test_large_attempts_and_limits_are_compared_by_value(self):
        """Past CPython's cache of small ints, as numbers from the wire are."""
        for attempt in range(1, 258):
            self.reserve("p", LEASE)
            self.successResultOf(self.catalog.release("p", attempt))
        self.assertEqual(self.reserve("p", LEASE).attempt, 258)
        self.assertEqual(self.successResultOf(self.catalog.commit("p", int("258"))).state,
                         COMMITTED)
        for n in range(301):
            self.reserve(f"due{n}", 10)
        self.let_time_pass(10)
        self.assertEqual(self.successResultOf(self.catalog.expire_leases(int("300"))), 300)


class RedisMarketStoreTests(MarketStoreContract, RedisBackend, unittest.TestCase):
    store_timeout = 2.0

    @defer.inlineCallbacks
    def commands_run(self, operation):
        """C{operation()}'s result, the Redis commands it ran (a script's included), and INFO."""
        redis = self.store.connection
        yield operation()  # the script is cached in Redis from here on
        yield redis.command("execute_command", "CONFIG", "RESETSTAT")
        result = yield operation()
        stats = yield redis.command("execute_command", "INFO", "commandstats")
        calls = sum(int(line.split("calls=")[1].split(",")[0])
                    for line in stats.splitlines()
                    if line.startswith("cmdstat_") and not line.startswith("cmdstat_config"))
        return result, calls, stats

    @defer.inlineCallbacks
    def test_a_search_without_keywords_does_the_work_of_its_page(self):
        catalog = self.store.catalog
        for n in range(300):
            yield catalog.create_item(1, draft(category=1 + n % 3))
        for category in (None, 2):
            page, calls, stats = yield self.commands_run(
                lambda: catalog.search(category, (), False, 20, 5))
            self.assertEqual(len(page.items), 5)
            # the script itself, one range and one count, one read per item
            self.assertLessEqual(calls, 1 + 2 + 5, stats)

    @defer.inlineCallbacks
    def test_a_keyword_search_asks_the_index_about_its_candidates_at_once(self):
        """A common keyword's items are cut down to the index in one call, not one call per item."""
        catalog = self.store.catalog
        for n in range(300):
            yield catalog.create_item(1, draft(category=1 + n % 3, keywords=("common",)))
        page, calls, stats = yield self.commands_run(
            lambda: catalog.search(2, ("common",), False, 0, 5))
        self.assertEqual((len(page.items), page.total), (5, 100))
        # the script, the keyword's set intersected with the index, one read per item
        self.assertLessEqual(calls, 1 + 1 + 5, stats)
