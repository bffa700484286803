"""
The seller front end: the spec's seller APIs over customer-db and product-db.

Every call but CreateAccount and Login starts with the session check in
customer-db (a seller session, slid on use); the seller id it yields is the
only one product-db is ever told, so a seller can only change their own items.
"""

from __future__ import annotations

from twisted.internet import defer

from marketplace.market import validation
from marketplace.market.front import STATUS_OK, AccountCalls, payload_of


class SellerFront:
    def __init__(self, customer_db, product_db, passwords):
        self._customer_db = customer_db
        self._product_db = product_db
        self._accounts = AccountCalls("seller", customer_db, passwords)

    def dispatch_table(self) -> dict:
        return {
            **self._accounts.dispatch_table(),
            "GetSellerRating": self.get_seller_rating,
            "RegisterItemForSale": self.register_item,
            "ChangeItemPrice": self.change_price,
            "UpdateUnitsForSale": self.update_units,
            "DisplayItemsForSale": self.display_items,
        }

    @defer.inlineCallbacks
    def get_seller_rating(self, request):
        profile = yield payload_of(self._customer_db.call(
            "MyProfile", {"role": "seller"}, session_id=request.session_id, idempotent=True))
        pos, neg = profile["pos"], profile["neg"]
        rating = pos / (pos + neg) if pos + neg else 0.0
        return None, {"rating": rating, "pos": pos, "neg": neg,
                      "feedback": {"pos": pos, "neg": neg}, "items_sold": profile["items_sold"]}

    @defer.inlineCallbacks
    def register_item(self, request):
        draft = validation.item_draft(request.payload)
        seller_id = yield self._accounts.user_of(request)
        item = yield payload_of(self._product_db.call(
            "CreateItem", {"seller_id": seller_id, **draft.to_payload()}))
        return None, {"item_id": item["item_id"], "item": item}

    @defer.inlineCallbacks
    def change_price(self, request):
        item_id = validation.item_id(request.payload)
        price_cents = validation.price_cents(validation.required(request.payload, "price"))
        seller_id = yield self._accounts.user_of(request)
        item = yield payload_of(self._product_db.call(
            "SetPrice", {"seller_id": seller_id, "item_id": item_id, "price_cents": price_cents},
            idempotent=True))
        return None, {"status": STATUS_OK, "price": validation.cents_to_decimal(item["price_cents"])}

    @defer.inlineCallbacks
    def update_units(self, request):
        item_id = validation.item_id(request.payload)
        change = validation.stock_change(request.payload)
        seller_id = yield self._accounts.user_of(request)
        reply = yield payload_of(self._product_db.call(
            "AdjustStock", {"seller_id": seller_id, "item_id": item_id, "change": change}))
        return None, {"status": STATUS_OK, "quantity": reply["quantity"]}

    @defer.inlineCallbacks
    def display_items(self, request):
        seller_id = yield self._accounts.user_of(request)
        # product-db's listing is already the reply's payload: passed on unread.
        items = yield payload_of(self._product_db.call(
            "SellerItems", {"seller_id": seller_id}, idempotent=True, encoded=True))
        return None, items
