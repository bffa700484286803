"""
The catalogue held in this process: items, stock, search index, reservations.

Every method runs to completion before it returns, so each is atomic on the
single reactor thread.  Reservation leases run on the store's clock (a
``task.Clock`` in tests).  The search index (item ids per keyword and per
category, plus the set of items in stock) keeps search cost proportional to
the matching items, not to the catalogue; searches without keywords read one
page of a list of ids kept in order (every item, the items in stock, and
both per category), so their cost is their page's.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import Counter, defaultdict

import attrs
from zope.interface import implementer

from marketplace.store.market_interfaces import ICatalogStore
from marketplace.store.market_rules import check_stock, merged_lines, rank
from marketplace.store.memory.answers import answers
from marketplace.store.market_errors import (
    NotOwner,
    ReservationClosed,
    StockTooLow,
    UnknownItem,
)
from marketplace.store.market_records import (
    COMMITTED,
    EXPIRED,
    RELEASED,
    RESERVED,
    SUPERSEDED,
    Item,
    OwedRecord,
    Reservation,
    ReservedLine,
    SearchPage,
)

_NO_ITEMS = frozenset()


class _IdOrder:
    """Item ids in increasing order: a page is a slice."""

    __slots__ = ("ids",)

    def __init__(self):
        self.ids: list[int] = []

    def add(self, item_id: int) -> None:
        at = bisect.bisect_left(self.ids, item_id)
        # bisect_left gives at <= len(ids) and ids[at] >= item_id, so `>=`, `<=` and `>` are
        # the same tests; an id here is the item's own int object, so `is` is as well.
        if at == len(self.ids) or self.ids[at] != item_id:  # equivalent: Eq_GtE, NotEq_Gt, NotEq_IsNot
            self.ids.insert(at, item_id)

    def discard(self, item_id: int) -> None:
        at = bisect.bisect_left(self.ids, item_id)
        # As in add: `!=`, `<=` and `is` are the same tests here.
        if at < len(self.ids) and self.ids[at] == item_id:  # equivalent: Lt_NotEq, Eq_LtE, Eq_Is
            del self.ids[at]


@implementer(ICatalogStore)
class MemoryCatalog:
    def __init__(self, clock):
        self._clock = clock
        self._items: dict[int, Item] = {}
        self._next_id = 1
        self._by_seller: dict[int, set[int]] = {}
        self._by_keyword: dict[str, set[int]] = {}
        self._by_category: dict[int, set[int]] = {}
        self._in_stock: set[int] = set()
        # (category or None, in stock only) -> ids in order; see ``_ordered``
        self._ordered: dict[tuple[int | None, bool], _IdOrder] = defaultdict(_IdOrder)
        self._reservations: dict[str, Reservation] = {}
        # Reserved purchases' deadlines, and a heap of (deadline, purchase,
        # attempt) to find the lapsed ones in order; settled entries stay in
        # the heap until they come up and are skipped.
        self._deadlines: dict[str, float] = {}
        self._leases: list[tuple[float, str, int]] = []
        self._voids: dict[tuple[str, int], Reservation] = {}
        # purchase -> (commit time, its record owed to customer-db), in commit order
        self._owed: dict[str, tuple[float, OwedRecord]] = {}
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
        self._ordered[None, False].add(item.item_id)
        self._ordered[item.category, False].add(item.item_id)
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
        if not keywords:
            ordered = self._ordered.get((category, not include_out_of_stock))
            if ordered is None:
                return SearchPage([], 0)
            return SearchPage([self._items[i] for i in ordered.ids[offset:offset + limit]],
                              len(ordered.ids))
        required = []
        if category is not None:
            required.append(self._by_category.get(category, _NO_ITEMS))
        if not include_out_of_stock:
            required.append(self._in_stock)
        matches = [self._by_keyword.get(word, _NO_ITEMS) for word in keywords]
        for allowed in required:
            matches = [found & allowed for found in matches]
        ranked = rank(Counter(itertools.chain.from_iterable(matches)))
        return SearchPage([self._items[i] for i in ranked[offset:offset + limit]], len(ranked))

    @answers
    def reserve(self, purchase_id, lines, lease):
        existing = self._live(purchase_id)
        if existing is not None and existing.state in (RESERVED, COMMITTED):
            return existing
        if not lines:
            raise ReservationClosed(purchase_id, existing and existing.state)
        items = [(self._get(item_id), quantity) for item_id, quantity in merged_lines(lines)]
        for item, quantity in items:
            if item.quantity < quantity:
                raise StockTooLow(item.item_id, item.quantity)
        reserved = []
        for item, quantity in items:
            self._set_stock(item, item.quantity - quantity)
            reserved.append(ReservedLine(item.item_id, item.seller_id, quantity, item.price_cents))
        attempt = existing.attempt + 1 if existing is not None else 1
        reservation = Reservation(purchase_id, RESERVED, reserved, attempt)
        self._reservations[purchase_id] = reservation
        deadline = self._clock.seconds() + lease
        self._deadlines[purchase_id] = deadline
        heapq.heappush(self._leases, (deadline, purchase_id, attempt))
        return reservation

    # A state is always one of market_records' constants, and "reserved" sorts
    # after every other: `is` and `>=` are the same tests as `==` here.
    @answers
    def commit(self, purchase_id, attempt, buyer_id=None):
        reservation = self._settling(self._live(purchase_id), purchase_id, attempt, COMMITTED)
        if reservation.state == RESERVED:  # equivalent: Eq_Is, Eq_GtE
            for line in reservation.lines:
                item = self._items[line.item_id]
                self._items[line.item_id] = attrs.evolve(item, sold=item.sold + line.quantity)
            reservation = self._end_lease(reservation, COMMITTED)
            if buyer_id is not None:
                self._owed[purchase_id] = (self._clock.seconds(),
                                           OwedRecord(purchase_id, buyer_id, reservation.lines))
        return reservation

    @answers
    def release(self, purchase_id, attempt):
        reservation = self._settling(
            self._reservations.get(purchase_id), purchase_id, attempt, RELEASED)
        if reservation.state == RESERVED:  # equivalent: Eq_Is, Eq_GtE
            self._restock(reservation)
            reservation = self._end_lease(reservation, RELEASED)
        return reservation

    @answers
    def expire_leases(self, limit):
        now, lapsed = self._clock.seconds(), 0
        # lapsed counts up by one from 0: for a limit >= 0 (a batch size), != is the same test.
        while self._leases and self._leases[0][0] <= now and lapsed < limit:  # equivalent: Lt_NotEq
            _, purchase_id, attempt = heapq.heappop(self._leases)
            reservation = self._reservations[purchase_id]
            # An entry's attempt is never past the reservation's (the same int object when
            # equal): `<=` and `is` are the same tests.
            if (reservation.state == RESERVED  # equivalent: Eq_Is, Eq_GtE
                    and reservation.attempt == attempt):  # equivalent: Eq_LtE, Eq_Is
                self._lapse(reservation)
                lapsed += 1
        return lapsed

    @answers
    def pending_voids(self, limit):
        return list(itertools.islice(self._voids.values(), limit))

    @answers
    def void_done(self, purchase_id, attempt):
        self._voids.pop((purchase_id, attempt), None)

    @answers
    def owed_records(self, limit, older_than):
        cutoff = self._clock.seconds() - older_than
        # In commit order, so the due ones come first.
        due = itertools.takewhile(lambda entry: entry[0] <= cutoff, self._owed.values())
        return [owed for _, owed in itertools.islice(due, limit)]

    @answers
    def record_done(self, purchase_id):
        self._owed.pop(purchase_id, None)

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

    def _live(self, purchase_id) -> Reservation | None:
        """The purchase's reservation, lapsed first if its lease ran out unswept."""
        reservation = self._reservations.get(purchase_id)
        if (reservation is not None and reservation.state == RESERVED  # equivalent: Eq_Is, Eq_GtE
                and self._deadlines[purchase_id] <= self._clock.seconds()):
            reservation = self._lapse(reservation)
        return reservation

    @staticmethod
    def _settling(reservation, purchase_id, attempt, target) -> Reservation:
        """The attempt's reservation, unless it ended otherwise than ``target``."""
        if reservation is None:
            raise ReservationClosed(purchase_id, None)
        if reservation.attempt != attempt:
            raise ReservationClosed(purchase_id, SUPERSEDED)
        if reservation.state not in (RESERVED, target):
            raise ReservationClosed(purchase_id, reservation.state)
        return reservation

    def _lapse(self, reservation) -> Reservation:
        self._restock(reservation)
        reservation = self._end_lease(reservation, EXPIRED)
        self._voids[reservation.purchase_id, reservation.attempt] = reservation
        return reservation

    def _end_lease(self, reservation, state) -> Reservation:
        """Settle a reserved attempt; its entry in ``_leases`` is skipped when it comes up."""
        del self._deadlines[reservation.purchase_id]
        reservation = attrs.evolve(reservation, state=state)
        self._reservations[reservation.purchase_id] = reservation
        return reservation

    def _restock(self, reservation) -> None:
        for line in reservation.lines:
            item = self._items[line.item_id]
            self._set_stock(item, item.quantity + line.quantity)

    def _set_stock(self, item: Item, quantity: int) -> Item:
        item = attrs.evolve(item, quantity=quantity)
        self._items[item.item_id] = item
        if quantity > 0:  # equivalent: Gt_NotEq -- stock is never negative
            self._in_stock.add(item.item_id)
            self._ordered[None, True].add(item.item_id)
            self._ordered[item.category, True].add(item.item_id)
        else:
            self._in_stock.discard(item.item_id)
            self._ordered[None, True].discard(item.item_id)
            self._ordered[item.category, True].discard(item.item_id)
        return item
