"""
The ``product-db`` service: items, stock, search and purchase reservations,
behind internal APIs that only the front ends call (they have already checked
the caller's session and pass the user id they got from customer-db).

Internal APIs (payload -> reply payload; every item is the spec's item object,
``internal.item_to_spec``):

- ``CreateItem`` {seller_id, item_name, category, keywords, condition_is_new,
  price_cents, quantity} -> item
- ``GetItem`` {item_id} -> item
- ``SellerItems`` {seller_id} -> {items}
- ``SetPrice`` {seller_id, item_id, price_cents} -> item
- ``AdjustStock`` {seller_id, item_id, change} -> {quantity}
- ``Search`` {category?, keywords?, include_out_of_stock?, offset?, limit?} -> {items, total}
- ``Reserve`` {purchase_id, lines: [[item_id, quantity], ...]} -> reservation,
  held for the service's lease (``--reservation-lease``)
- ``Commit`` {purchase_id, attempt, buyer_id?} / ``Release`` {purchase_id,
  attempt} -> reservation; a commit naming its buyer owes the purchase's
  record in customer-db until ``RecordDone``
- ``PendingVoids`` {limit?} -> {voids: [reservation, ...]}: lapsed attempts
  whose payment is still to be voided
- ``VoidDone`` {purchase_id, attempt} -> {}
- ``OwedRecords`` {limit?, older_than?} -> {records: [{purchase_id,
  buyer_id, lines}, ...]}: committed purchases at least ``older_than``
  whole seconds old (default 0) whose record is still owed
- ``RecordDone`` {purchase_id} -> {}
- ``ItemFeedback`` {item_id, buyer_id, positive} -> {counted}

Items are sent far more often than they change (every search and listing
carries up to 100), so each item's JSON is encoded once per version of the
item and item replies are assembled from those bytes (``EncodedPayload``).
"""

from __future__ import annotations

import functools

from twisted.internet import defer

from marketplace.market import search, validation
from marketplace.market.errors import ClientError
from marketplace.market.internal import item_to_spec, owed_to_payload, reservation_to_payload
from marketplace.store.market_errors import ReservationClosed
from marketplace.store.market_records import Item
from protocols.envelope import EncodedPayload, encode_json

#: Versions of items whose JSON is kept: well above the items a busy
#: catalogue's searches keep returning.
ENCODED_ITEMS = 8192


@functools.lru_cache(maxsize=ENCODED_ITEMS)
def _item_json(item: Item) -> bytes:
    """
    The item's spec JSON.  Items are immutable values, so a changed item is a
    new key and its old bytes are never served; they just age out.
    """
    return encode_json(item_to_spec(item))


def _item_payload(item: Item) -> EncodedPayload:
    return EncodedPayload(_item_json(item))


def _item_list_payload(items, total=None) -> EncodedPayload:
    """``{"items":[...]}`` and, if given, ``"total"``, laid out as ``encode_json`` would."""
    listed = b'{"items":[' + b",".join(map(_item_json, items)) + b"]"
    if total is not None:
        listed += b',"total":%d' % total
    return EncodedPayload(listed + b"}")


#: Seconds a reservation holds its stock by default (``--reservation-lease``):
#: well above the longest a purchase takes between reserving and committing
#: (an authorisation and a commit, each at most about 3 x the front ends'
#: 2-second call timeout with its retries).
DEFAULT_LEASE = 60.0


def lease_sweep_interval(lease: float) -> float:
    """How often lapsed reservations are swept: a quarter of the lease, at most 5 s."""
    return min(lease / 4, 5.0)


#: Lapsed attempts one ``PendingVoids`` reply lists at most, and owed
#: records one ``OwedRecords`` reply lists at most.
MAX_VOIDS = 100
MAX_OWED = 100
#: Reservations lapsed per store call, and calls per sweep.
LAPSE_BATCH = 100
BATCHES_PER_SWEEP = 10


class ProductDbService:
    def __init__(self, catalog, lease: float = DEFAULT_LEASE):
        self._catalog = catalog
        self._lease = lease

    def dispatch_table(self) -> dict:
        return {
            "CreateItem": self.create_item,
            "GetItem": self.get_item,
            "SellerItems": self.seller_items,
            "SetPrice": self.set_price,
            "AdjustStock": self.adjust_stock,
            "Search": self.search,
            "Reserve": self.reserve,
            "Commit": self.commit,
            "Release": self.release,
            "PendingVoids": self.pending_voids,
            "VoidDone": self.void_done,
            "OwedRecords": self.owed_records,
            "RecordDone": self.record_done,
            "ItemFeedback": self.item_feedback,
        }

    @defer.inlineCallbacks
    def expire_leases(self):
        """
        Lapse the reservations whose lease ran out (run every few seconds):
        their units go back on sale even if nobody comes back for them.
        """
        for _ in range(BATCHES_PER_SWEEP):
            lapsed = yield self._catalog.expire_leases(LAPSE_BATCH)
            if lapsed < LAPSE_BATCH:
                return

    @defer.inlineCallbacks
    def create_item(self, request):
        payload = request.payload
        seller_id = validation.user_id(payload, "seller_id")
        draft = validation.item_draft_from_internal(payload)
        item = yield self._catalog.create_item(seller_id, draft)
        return None, _item_payload(item)

    @defer.inlineCallbacks
    def get_item(self, request):
        item = yield self._catalog.item(validation.item_id(request.payload))
        return None, _item_payload(item)

    @defer.inlineCallbacks
    def seller_items(self, request):
        seller_id = validation.user_id(request.payload, "seller_id")
        items = yield self._catalog.items_of_seller(seller_id)
        return None, _item_list_payload(items)

    @defer.inlineCallbacks
    def set_price(self, request):
        payload = request.payload
        item = yield self._catalog.set_price(
            validation.item_id(payload), validation.user_id(payload, "seller_id"),
            validation.internal_price_cents(payload))
        return None, _item_payload(item)

    @defer.inlineCallbacks
    def adjust_stock(self, request):
        payload = request.payload
        quantity = yield self._catalog.adjust_stock(
            validation.item_id(payload), validation.user_id(payload, "seller_id"),
            validation.stock_change(payload, "change"))
        return None, {"quantity": quantity}

    @defer.inlineCallbacks
    def search(self, request):
        payload = request.payload
        category = payload.get("category")
        if category is not None:
            category = validation.category(category)
        keywords = validation.keywords(payload.get("keywords"))
        include_out_of_stock = ("include_out_of_stock" in payload
                                and validation.boolean(payload, "include_out_of_stock"))
        offset, limit = search.page_bounds(payload)
        page = yield self._catalog.search(category, keywords, include_out_of_stock, offset, limit)
        return None, _item_list_payload(page.items, page.total)

    @defer.inlineCallbacks
    def reserve(self, request):
        payload = request.payload
        purchase_id = validation.text(payload, "purchase_id", max_length=200)
        lines = validation.required(payload, "lines")
        if not isinstance(lines, list):
            raise ClientError("'lines' must be a list of [item_id, quantity] pairs")
        pairs = []
        for line in lines:
            if not isinstance(line, list) or len(line) != 2:
                raise ClientError("'lines' must be a list of [item_id, quantity] pairs")
            pairs.append((validation.integer(line[0], "item_id", 1),
                          validation.integer(line[1], "quantity", 1)))
        try:
            reservation = yield self._catalog.reserve(purchase_id, pairs, self._lease)
        except ReservationClosed:
            raise ClientError("the cart is empty") from None
        return None, reservation_to_payload(reservation)

    @defer.inlineCallbacks
    def commit(self, request):
        payload = request.payload
        buyer_id = validation.user_id(payload, "buyer_id") if "buyer_id" in payload else None
        reservation = yield self._catalog.commit(*_attempt_of(payload), buyer_id=buyer_id)
        return None, reservation_to_payload(reservation)

    @defer.inlineCallbacks
    def release(self, request):
        reservation = yield self._catalog.release(*_attempt_of(request.payload))
        return None, reservation_to_payload(reservation)

    @defer.inlineCallbacks
    def pending_voids(self, request):
        limit = validation.integer(request.payload.get("limit", MAX_VOIDS), "limit", 1, MAX_VOIDS)
        voids = yield self._catalog.pending_voids(limit)
        return None, {"voids": [reservation_to_payload(v) for v in voids]}

    @defer.inlineCallbacks
    def void_done(self, request):
        yield self._catalog.void_done(*_attempt_of(request.payload))
        return None, {}

    @defer.inlineCallbacks
    def owed_records(self, request):
        payload = request.payload
        limit = validation.integer(payload.get("limit", MAX_OWED), "limit", 1, MAX_OWED)
        older_than = validation.integer(payload.get("older_than", 0), "older_than")
        owed = yield self._catalog.owed_records(limit, older_than)
        return None, {"records": [owed_to_payload(record) for record in owed]}

    @defer.inlineCallbacks
    def record_done(self, request):
        yield self._catalog.record_done(
            validation.text(request.payload, "purchase_id", max_length=200))
        return None, {}

    @defer.inlineCallbacks
    def item_feedback(self, request):
        payload = request.payload
        counted = yield self._catalog.item_feedback(
            validation.item_id(payload), validation.user_id(payload, "buyer_id"),
            validation.boolean(payload, "positive"))
        return None, {"counted": counted}


def _attempt_of(payload: dict) -> tuple[str, int]:
    """The ``purchase_id`` and ``attempt`` naming one attempt of a purchase."""
    return (validation.text(payload, "purchase_id", max_length=200),
            validation.integer(validation.required(payload, "attempt"), "attempt", 1))
