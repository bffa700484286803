"""
The catalogue held in this process: items, stock, search index, reservations.

Every method runs to completion before it returns, so each is atomic on the
single reactor thread.  The search index (item ids per keyword and per
category, plus the set of items in stock) keeps search cost proportional to
the matching items, not to the catalogue.
"""

from __future__ import annotations

import itertools
from collections import Counter

import attrs
from zope.interface import implementer

from marketplace.market.search import rank
from marketplace.store.market_interfaces import ICatalogStore
from marketplace.store.market_rules import check_stock
from marketplace.store.memory.answers import answers
from marketplace.store.market_errors import (
    NotOwner,
    ReservationClosed,
    StockTooLow,
    UnknownItem,
)
from marketplace.store.market_records import (
    COMMITTED,
    RELEASED,
    RESERVED,
    Item,
    Reservation,
    ReservedLine,
    SearchPage,
)

_NO_ITEMS = frozenset()


@implementer(ICatalogStore)
class MemoryCatalog:
    def __init__(self):
        self._items: dict[int, Item] = {}
        self._next_id = 1
        self._by_seller: dict[int, set[int]] = {}
        self._by_keyword: dict[str, set[int]] = {}
        self._by_category: dict[int, set[int]] = {}
        self._in_stock: set[int] = set()
        self._reservations: dict[str, Reservation] = {}
        self._voters: dict[int, set[int]] = {}

    @answers
    def create_item(self, seller_id, draft):
        item = Item(
            item_id=self._next_id, seller_id=seller_id, item_name=draft.item_name,
            category=draft.category, keywords=draft.keywords,
            condition_is_new=draft.condition_is_new, price_cents=draft.price_cents,
            quantity=draft.quantity)
        self._next_id += 1
        self._items[item.item_id] = item
        self._by_seller.setdefault(seller_id, set()).add(item.item_id)
        self._by_category.setdefault(item.category, set()).add(item.item_id)
        for word in item.keywords:
            self._by_keyword.setdefault(word, set()).add(item.item_id)
        self._set_stock(item, item.quantity)
        return item

    @answers
    def item(self, item_id):
        return self._get(item_id)

    @answers
    def items_of_seller(self, seller_id):
        return [self._items[i] for i in sorted(self._by_seller.get(seller_id, ()))]

    @answers
    def set_price(self, item_id, seller_id, price_cents):
        item = self._owned(item_id, seller_id)
        item = attrs.evolve(item, price_cents=price_cents)
        self._items[item_id] = item
        return item

    @answers
    def adjust_stock(self, item_id, seller_id, change):
        item = self._owned(item_id, seller_id)
        if item.quantity + change < 0:
            raise StockTooLow(item_id, item.quantity)
        quantity = check_stock(item_id, item.quantity + change)
        return self._set_stock(item, quantity).quantity

    @answers
    def search(self, category, keywords, include_out_of_stock, offset, limit):
        # Set intersections and counting run in C, over the items that can
        # still match: each keyword's items are first cut down to the
        # category's and to those in stock.
        required = []
        if category is not None:
            required.append(self._by_category.get(category, _NO_ITEMS))
        if not include_out_of_stock:
            required.append(self._in_stock)
        if keywords:
            matches = [self._by_keyword.get(word, _NO_ITEMS) for word in keywords]
            for allowed in required:
                matches = [found & allowed for found in matches]
            scores = Counter(itertools.chain.from_iterable(matches))
        elif required:
            scores = dict.fromkeys(required[0].intersection(*required[1:]), 0)
        else:
            scores = dict.fromkeys(self._items, 0)
        ranked = rank(scores)
        return SearchPage([self._items[i] for i in ranked[offset:offset + limit]], len(ranked))

    @answers
    def reserve(self, purchase_id, lines):
        existing = self._reservations.get(purchase_id)
        if existing is not None and existing.state != RELEASED:
            return existing
        if not lines:
            raise ReservationClosed(purchase_id, existing and existing.state)
        items = [(self._get(item_id), quantity) for item_id, quantity in lines]
        for item, quantity in items:
            if item.quantity < quantity:
                raise StockTooLow(item.item_id, item.quantity)
        reserved = []
        for item, quantity in items:
            self._set_stock(item, item.quantity - quantity)
            reserved.append(ReservedLine(item.item_id, item.seller_id, quantity, item.price_cents))
        reservation = Reservation(purchase_id, RESERVED, reserved)
        self._reservations[purchase_id] = reservation
        return reservation

    @answers
    def commit(self, purchase_id):
        reservation = self._transition(purchase_id, COMMITTED)
        if reservation.state == RESERVED:
            for line in reservation.lines:
                item = self._items[line.item_id]
                self._items[line.item_id] = attrs.evolve(item, sold=item.sold + line.quantity)
            reservation = attrs.evolve(reservation, state=COMMITTED)
            self._reservations[purchase_id] = reservation
        return reservation

    @answers
    def release(self, purchase_id):
        reservation = self._transition(purchase_id, RELEASED)
        if reservation.state == RESERVED:
            for line in reservation.lines:
                item = self._items[line.item_id]
                self._set_stock(item, item.quantity + line.quantity)
            reservation = attrs.evolve(reservation, state=RELEASED)
            self._reservations[purchase_id] = reservation
        return reservation

    @answers
    def item_feedback(self, item_id, buyer_id, positive):
        item = self._get(item_id)
        voters = self._voters.setdefault(item_id, set())
        if buyer_id in voters:
            return False
        voters.add(buyer_id)
        vote = {"pos": item.pos + 1} if positive else {"neg": item.neg + 1}
        self._items[item_id] = attrs.evolve(item, **vote)
        return True

    def _get(self, item_id) -> Item:
        try:
            return self._items[item_id]
        except KeyError:
            raise UnknownItem(f"no item with id {item_id}") from None

    def _owned(self, item_id, seller_id) -> Item:
        item = self._get(item_id)
        if item.seller_id != seller_id:
            raise NotOwner(f"item {item_id} belongs to another seller")
        return item

    def _transition(self, purchase_id, target) -> Reservation:
        """The reservation, unless it already reached the other final state."""
        reservation = self._reservations.get(purchase_id)
        if reservation is None or reservation.state not in (RESERVED, target):
            raise ReservationClosed(purchase_id, reservation and reservation.state)
        return reservation

    def _set_stock(self, item: Item, quantity: int) -> Item:
        item = attrs.evolve(item, quantity=quantity)
        self._items[item.item_id] = item
        if quantity > 0:
            self._in_stock.add(item.item_id)
        else:
            self._in_stock.discard(item.item_id)
        return item
