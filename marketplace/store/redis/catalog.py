"""
The catalogue in Redis: items as hashes, the search index as sets (one per
keyword and per seller) and sorted sets scored by item id (every item, the
items in stock, and both per category: a search without keywords reads one
page of one of them), reservations as hashes whose leases are timed by
Redis's own clock (``TIME`` in the scripts), so every product-db host sees
one deadline.  Every change is one Lua script, so stock can never be
oversold by any interleaving of front ends, and the index never disagrees
with the items: every script that puts stock back or takes the last of it
(a lapsed lease too) keeps the in-stock indexes exact.
"""

from __future__ import annotations

from zope.interface import implementer

from marketplace.store.market_errors import (
    NotOwner,
    ReservationClosed,
    StockTooHigh,
    StockTooLow,
    UnknownItem,
)
from marketplace.store.market_interfaces import ICatalogStore
from marketplace.store.market_rules import MAX_STOCK, merged_lines
from marketplace.store.market_records import (
    COMMITTED,
    EXPIRED,
    RELEASED,
    Item,
    OwedRecord,
    Reservation,
    ReservedLine,
    SearchPage,
)
from marketplace.store.redis.scripts import lua, milliseconds

def _item(item_id, flat_fields) -> Item:
    fields = dict(zip(flat_fields[::2], flat_fields[1::2]))
    return Item(
        item_id=int(item_id), seller_id=int(fields["seller"]), item_name=fields["name"],
        category=int(fields["cat"]), keywords=[w for w in fields["kw"].split(",") if w],
        condition_is_new=fields["new"] == "1", price_cents=int(fields["price"]),
        quantity=int(fields["qty"]), pos=int(fields["pos"]), neg=int(fields["neg"]),
        sold=int(fields["sold"]))


def _reserved_lines(encoded: str) -> list[ReservedLine]:
    """A reservation's lines as its hash keeps them: 'id,seller,quantity,price;...'."""
    lines = []
    for line in filter(None, encoded.split(";")):
        item_id, seller_id, quantity, price = map(int, line.split(","))
        lines.append(ReservedLine(item_id, seller_id, quantity, price))
    return lines


def _reservation(purchase_id: str, state: str, encoded: str, attempt) -> Reservation:
    return Reservation(purchase_id, state, _reserved_lines(encoded), int(attempt))


@implementer(ICatalogStore)
class RedisCatalog:
    def __init__(self, connection):
        self._redis = connection
        self._prefix = connection.prefix + "catalog:"
        #: Reserved purchases scored by their lease's deadline (ms, Redis's clock).
        self._leases = self._prefix + "leases"
        #: 'attempt:purchase_id' -> lines, for each lapsed attempt whose payment is to be voided.
        self._voids = self._prefix + "voids"
        #: Committed purchases whose record in customer-db is owed, scored by
        #: the commit's time (ms, Redis's clock); the buyer and the lines are
        #: in the reservation's hash.
        self._owed = self._prefix + "owed"

    def _item_key(self, item_id) -> str:
        return f"{self._prefix}item:{item_id}"

    def _reservation_key(self, purchase_id: str) -> str:
        return f"{self._prefix}purchase:{purchase_id}"

    def create_item(self, seller_id, draft):
        return self._redis.script(lua("market_item_create"), [], [
            self._prefix, seller_id, draft.item_name, draft.category, ",".join(draft.keywords),
            int(draft.condition_is_new), draft.price_cents, draft.quantity], durable=True,
            parse=lambda reply: _item(*reply))

    def item(self, item_id):
        def parse(fields):
            if not fields:
                raise UnknownItem(f"no item with id {item_id}")
            return _item(item_id, _flat(fields))
        return self._redis.command("hgetall", self._item_key(item_id), parse=parse)

    def items_of_seller(self, seller_id):
        return self._redis.script(
            lua("market_seller_items"), [f"{self._prefix}seller:{seller_id}"], [self._prefix],
            parse=lambda rows: [_item(item_id, fields) for item_id, fields in rows])

    def set_price(self, item_id, seller_id, price_cents):
        return self._update(item_id, seller_id, "price", price_cents).addCallback(
            lambda fields: _item(item_id, fields))

    def adjust_stock(self, item_id, seller_id, change):
        return self._update(item_id, seller_id, "qty", change).addCallback(
            lambda fields: _item(item_id, fields).quantity)

    def search(self, category, keywords, include_out_of_stock, offset, limit):
        # The page's last index is worked out here: Lua numbers above 10**14
        # would reach Redis written as floats.
        return self._redis.script(lua("market_search"), [], [
            self._prefix, "" if category is None else category, int(include_out_of_stock),
            offset, offset + limit - 1, *keywords],
            parse=lambda reply: SearchPage(
                [_item(item_id, fields) for item_id, fields in reply[1:]], int(reply[0])))

    def reserve(self, purchase_id, lines, lease):
        merged = merged_lines(lines)
        ids = [item_id for item_id, _ in merged]
        args = [self._prefix, purchase_id, milliseconds(lease),
                *(value for line in merged for value in line)]

        def parse(reply):
            if reply[0] == "unknown":
                raise UnknownItem(f"no item with id {reply[1]}")
            if reply[0] == "low":
                raise StockTooLow(int(reply[1]), int(reply[2]))
            if reply[0] == "closed":
                raise ReservationClosed(purchase_id, reply[1] or None)
            return _reservation(purchase_id, *reply[1:])
        return self._redis.script(
            lua("market_lease_reserve"),
            [self._reservation_key(purchase_id), self._leases, self._voids, *map(self._item_key, ids)], args,
            durable=True, parse=parse)

    def commit(self, purchase_id, attempt, buyer_id=None):
        return self._settle(purchase_id, COMMITTED, attempt, "" if buyer_id is None else buyer_id)

    def release(self, purchase_id, attempt):
        return self._settle(purchase_id, RELEASED, attempt)

    def expire_leases(self, limit):
        return self._redis.script(lua("market_lease_expire"), [self._leases, self._voids],
                                  [self._prefix, limit], durable=True, parse=int)

    def pending_voids(self, limit):
        def parse(flat):
            voids = []
            for field, lines in zip(flat[::2], flat[1::2]):
                attempt, _, purchase_id = field.partition(":")
                voids.append(_reservation(purchase_id, EXPIRED, lines, attempt))
            return voids
        return self._redis.execute("HRANDFIELD", self._voids, limit, "WITHVALUES", parse=parse)

    def void_done(self, purchase_id, attempt):
        return self._redis.execute("HDEL", self._voids, f"{attempt}:{purchase_id}",
                                   parse=lambda _: None)

    def owed_records(self, limit, older_than):
        def parse(flat):
            return [OwedRecord(purchase_id, int(buyer_id), _reserved_lines(lines))
                    for purchase_id, buyer_id, lines in zip(flat[::3], flat[1::3], flat[2::3])]
        return self._redis.script(lua("market_lease_owed"), [self._owed],
                                  [self._prefix, limit, round(older_than * 1000)], parse=parse)

    def record_done(self, purchase_id):
        return self._redis.execute("ZREM", self._owed, purchase_id, parse=lambda _: None)

    def item_feedback(self, item_id, buyer_id, positive):
        def parse(counted):
            if counted == -1:
                raise UnknownItem(f"no item with id {item_id}")
            return counted == 1
        return self._redis.script(
            lua("market_item_feedback"),
            [self._item_key(item_id), f"{self._prefix}voters:{item_id}"],
            [buyer_id, "pos" if positive else "neg"], parse=parse)

    def _update(self, item_id, seller_id, field, value):
        def parse(reply):
            if reply[0] == "unknown":
                raise UnknownItem(f"no item with id {item_id}")
            if reply[0] == "owner":
                raise NotOwner(f"item {item_id} belongs to another seller")
            if reply[0] == "low":
                raise StockTooLow(item_id, int(reply[1]))
            if reply[0] == "high":
                raise StockTooHigh(item_id, MAX_STOCK)
            return reply[1]
        return self._redis.script(lua("market_item_update"), [self._item_key(item_id)],
                                  [item_id, seller_id, field, value, MAX_STOCK, self._prefix], durable=True,
                                  parse=parse)

    def _settle(self, purchase_id, target, attempt, buyer_id=""):
        def parse(reply):
            if reply[0] == "closed":
                raise ReservationClosed(purchase_id, reply[1] or None)
            return _reservation(purchase_id, *reply[1:])
        return self._redis.script(
            lua("market_lease_settle"),
            [self._reservation_key(purchase_id), self._leases, self._voids, self._owed],
            [self._prefix, purchase_id, target, attempt, buyer_id], durable=True, parse=parse)


def _flat(fields) -> list:
    """txredisapi answers HGETALL with a dict; the scripts answer with a flat list."""
    if isinstance(fields, dict):
        return [value for pair in fields.items() for value in pair]
    return list(fields)
