"""
The ``product-db`` service: items, stock, search and purchase reservations,
behind internal APIs that only the front ends call (they have already checked
the caller's session and pass the user id they got from customer-db).

Internal APIs (payload -> reply payload; items as ``internal.item_to_payload``):

- ``CreateItem`` {seller_id, item_name, category, keywords, condition_is_new,
  price_cents, quantity} -> item
- ``GetItem`` {item_id} -> item
- ``SellerItems`` {seller_id} -> {items}
- ``SetPrice`` {seller_id, item_id, price_cents} -> item
- ``AdjustStock`` {seller_id, item_id, change} -> {quantity}
- ``Search`` {category?, keywords?, include_out_of_stock?, offset?, limit?} -> {items, total}
- ``Reserve`` {purchase_id, lines: [[item_id, quantity], ...]} -> reservation
- ``Commit`` / ``Release`` {purchase_id} -> reservation
- ``ItemFeedback`` {item_id, buyer_id, positive} -> {counted}
"""

from __future__ import annotations

from twisted.internet import defer

from marketplace.market import search, validation
from marketplace.market.errors import ClientError
from marketplace.market.internal import item_to_payload, reservation_to_payload
from marketplace.store.market_errors import ReservationClosed


class ProductDbService:
    def __init__(self, catalog):
        self._catalog = catalog

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
            "ItemFeedback": self.item_feedback,
        }

    @defer.inlineCallbacks
    def create_item(self, request):
        payload = request.payload
        seller_id = validation.user_id(payload, "seller_id")
        draft = validation.item_draft_from_internal(payload)
        item = yield self._catalog.create_item(seller_id, draft)
        return None, item_to_payload(item)

    @defer.inlineCallbacks
    def get_item(self, request):
        item = yield self._catalog.item(validation.item_id(request.payload))
        return None, item_to_payload(item)

    @defer.inlineCallbacks
    def seller_items(self, request):
        seller_id = validation.user_id(request.payload, "seller_id")
        items = yield self._catalog.items_of_seller(seller_id)
        return None, {"items": [item_to_payload(item) for item in items]}

    @defer.inlineCallbacks
    def set_price(self, request):
        payload = request.payload
        item = yield self._catalog.set_price(
            validation.item_id(payload), validation.user_id(payload, "seller_id"),
            validation.integer(validation.required(payload, "price_cents"), "price_cents"))
        return None, item_to_payload(item)

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
        return None, {"items": [item_to_payload(item) for item in page.items], "total": page.total}

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
            reservation = yield self._catalog.reserve(purchase_id, pairs)
        except ReservationClosed:
            raise ClientError("the cart is empty") from None
        return None, reservation_to_payload(reservation)

    @defer.inlineCallbacks
    def commit(self, request):
        purchase_id = validation.text(request.payload, "purchase_id", max_length=200)
        reservation = yield self._catalog.commit(purchase_id)
        return None, reservation_to_payload(reservation)

    @defer.inlineCallbacks
    def release(self, request):
        purchase_id = validation.text(request.payload, "purchase_id", max_length=200)
        reservation = yield self._catalog.release(purchase_id)
        return None, reservation_to_payload(reservation)

    @defer.inlineCallbacks
    def item_feedback(self, request):
        payload = request.payload
        counted = yield self._catalog.item_feedback(
            validation.item_id(payload), validation.user_id(payload, "buyer_id"),
            validation.boolean(payload, "positive"))
        return None, {"counted": counted}
