"""
The buyer front end: the spec's buyer APIs over customer-db, product-db and
payments.

Carts live in customer-db per session; the front end only composes calls.
A purchase runs as a small saga named by the buyer's idempotency key or,
without one, by the revision of the cart it buys:

1. product-db ``Reserve`` takes every cart line out of stock atomically (or
   refuses with the item that is short), for a lease;
2. payments ``Authorize`` checks the card and captures the total once per
   purchase and reservation attempt;
3. product-db ``Commit`` and customer-db ``RecordPurchase`` make it final
   (history, items bought and sold, the bought units leave the carts), in
   that order: a purchase is recorded only once its stock is committed.
   The commit names the buyer, so product-db keeps the record owed until
   the front end says it is made; one the front end could not make is made
   by the sweep every buyer front end runs (``owed.OwedRecords``).

A payment known not to be taken (a decline, a refusal) releases the
reservation; one whose fate is unknown leaves it to its lease.  A commit
refused because the lease ran out voids the payment; lapsed attempts whose
front end died are voided by the sweep every buyer front end runs
(``voids.PaymentVoids``).  The saga runs to its end even when the request is
cancelled (client gone, request timed out), so it never stops between two
steps.  Every step is idempotent per name and attempt, so a client that
lost the reply retries MakePurchase (with the same ``idempotency_key``, or
keyless with the cart unchanged) and the purchase completes -- charged once.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from twisted.internet import defer
from twisted.logger import Logger

from marketplace.market import payments, validation
from marketplace.market.errors import ApiError, ClientError, ServiceUnavailable, Timeout
from marketplace.market.front import STATUS_OK, AccountCalls, payload_of, shielded, together
from marketplace.market.internal import reservation_from_payload
from marketplace.market.owed import OwedRecords
from marketplace.market.voids import PaymentVoids
from marketplace.metrics import Counters
from marketplace.store.market_records import COMMITTED

log = Logger()

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def iso_utc(seconds) -> str:
    """
    A purchase time as the existing server sends it: ISO 8601, here in UTC.
    customer-db sends POSIX seconds, an exact decimal once decoded.
    """
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc).isoformat(timespec="seconds")


#: A keyless purchase's name: this prefix and the revision of the cart it
#: buys.  A client may send such a key back; it names the same purchase.
CART_KEY_PREFIX = "cart-"


def _idempotency_key(payload: dict) -> str | None:
    """The client's key, checked; None for a keyless purchase."""
    key = payload.get("idempotency_key")
    if key is None:
        return None
    if not isinstance(key, str) or not _KEY.match(key):
        raise ClientError("'idempotency_key' must be 1 to 64 letters, digits, '_', '.', ':' or '-'")
    return key


class BuyerFront:
    def __init__(self, customer_db, product_db, payments_service, passwords, clock,
                 counters: Counters | None = None):
        self._customer_db = customer_db
        self._product_db = product_db
        self._payments = payments_service
        self._clock = clock
        self._accounts = AccountCalls("buyer", customer_db, passwords)
        # The sweeps count what they did into the front end's counters.
        self.voids = PaymentVoids(product_db, payments_service, counters)
        self.owed = OwedRecords(customer_db, product_db, counters)

    def dispatch_table(self) -> dict:
        return {
            **self._accounts.dispatch_table(),
            "SearchItemsForSale": self.search,
            "GetItem": self.get_item,
            "AddItemToCart": self.add_to_cart,
            "RemoveItemFromCart": self.remove_from_cart,
            "SaveCart": self.cart_call("CartSave"),
            "ClearCart": self.cart_call("CartClear"),
            "DisplayCart": self.cart_call("CartGet"),
            "ProvideFeedback": self.provide_feedback,
            "GetSellerRating": self.get_seller_rating,
            "GetBuyerPurchases": self.get_purchases,
            "MakePurchase": self.make_purchase,
        }

    def _customer(self, api, request, payload=None, idempotent=False):
        return payload_of(self._customer_db.call(
            api, payload or {}, session_id=request.session_id, idempotent=idempotent))

    def _product(self, api, payload, idempotent=True, encoded=False):
        return payload_of(self._product_db.call(api, payload, idempotent=idempotent,
                                                encoded=encoded))

    @defer.inlineCallbacks
    def search(self, request):
        payload = request.payload
        query = {key: payload[key] for key in
                 ("category", "keywords", "include_out_of_stock", "offset", "limit")
                 if payload.get(key) is not None}
        # product-db's page is already the reply's payload: passed on unread.
        _, page = yield together(self._accounts.user_of(request),
                                 self._product("Search", query, encoded=True))
        return None, page

    @defer.inlineCallbacks
    def get_item(self, request):
        item_id = validation.item_id(request.payload)
        _, item = yield together(self._accounts.user_of(request),
                                 self._product("GetItem", {"item_id": item_id}, encoded=True))
        return None, item

    @defer.inlineCallbacks
    def add_to_cart(self, request):
        item_id = validation.item_id(request.payload)
        quantity = validation.positive_quantity(request.payload)
        item = yield self._product("GetItem", {"item_id": item_id})
        yield self._customer("CartAdd", request, {
            "item_id": item_id, "quantity": quantity, "limit": item["quantity"]})
        return None, {"status": STATUS_OK}

    @defer.inlineCallbacks
    def remove_from_cart(self, request):
        item_id = validation.item_id(request.payload)
        quantity = validation.positive_quantity(request.payload)
        reply = yield self._customer("CartRemove", request,
                                     {"item_id": item_id, "quantity": quantity})
        return None, {"status": STATUS_OK, "quantity": reply["quantity"]}

    def cart_call(self, api):
        """SaveCart, ClearCart and DisplayCart: one customer-db call, the cart in the reply."""

        @defer.inlineCallbacks
        def call(request):
            reply = yield self._customer(api, request, idempotent=True)
            return None, {"status": STATUS_OK, "cart": reply["cart"]}

        return call

    @defer.inlineCallbacks
    def provide_feedback(self, request):
        item_id = validation.item_id(request.payload)
        positive = validation.boolean(request.payload, "thumbs_up", "is_positive")
        buyer_id, item = yield together(self._accounts.user_of(request),
                                        self._product("GetItem", {"item_id": item_id}))
        vote = yield self._customer("RecordFeedback", request, {
            "item_id": item_id, "seller_id": item["seller_id"], "positive": positive})
        # The item's counter follows the vote customer-db recorded; repeating
        # it is harmless (counted once per buyer) and repairs a lost update.
        yield self._product("ItemFeedback", {
            "item_id": item_id, "buyer_id": buyer_id, "positive": vote["positive"]})
        if not vote["recorded"]:
            raise ClientError(f"feedback for item {item_id} was already given")
        return None, {"status": STATUS_OK}

    @defer.inlineCallbacks
    def get_seller_rating(self, request):
        seller_id = validation.user_id(request.payload, "seller_id")
        _, profile = yield together(
            self._accounts.user_of(request),
            payload_of(self._customer_db.call(
                "GetProfile", {"role": "seller", "user_id": seller_id}, idempotent=True)))
        return None, {"seller_id": seller_id,
                      "feedback": {"pos": profile["pos"], "neg": profile["neg"]}}

    @defer.inlineCallbacks
    def get_purchases(self, request):
        reply = yield self._customer("GetPurchases", request, idempotent=True)
        items = [{
            "item_id": line["item_id"], "quantity": line["quantity"],
            "purchased_at": iso_utc(line["purchased_at"]), "purchase_id": line["purchase_id"],
            "price": validation.cents_to_decimal(line["price_cents"]),
        } for line in reply["items"]]
        return None, {"items": items}

    def make_purchase(self, request):
        """
        The purchase saga, shielded from the request's cancellation: a client
        that disconnects or a request that times out must not stop it between
        reserving and releasing the stock, or between the charge and the
        purchase's record.

        A purchase is named by the client's ``idempotency_key`` or, without
        one, by the revision of the cart it buys (``cart-<revision>``): a
        keyless retry of a purchase that failed halfway finds the cart
        unchanged and so continues the same purchase, charged once.  Every
        error reply from the moment the purchase has a name carries it as
        ``idempotency_key``.
        """
        # The purchase's name: the client's key now, or the cart revision's
        # once the saga has read the cart.
        named = {"key": _idempotency_key(request.payload)}

        def given_up():
            return Timeout("MakePurchase did not finish in time and goes on; retry it for the "
                           "outcome")

        def with_key(failure):
            if failure.check(ApiError) and named["key"] is not None:
                failure.value.fields = {**failure.value.fields, "idempotency_key": named["key"]}
            return failure

        saga = shielded(self._purchase(request, named), "MakePurchase", given_up)
        return saga.addErrback(with_key)

    @defer.inlineCallbacks
    def _purchase(self, request, named):
        payload = request.payload
        card = {field: validation.required(payload, field)
                for field in ("name", "card_number", "expiration_date", "security_code")}
        payments.card_from_payload(card, self._clock.seconds())
        cart = yield self._customer("CartGet", request, idempotent=True)
        if named["key"] is None:
            named["key"] = f"{CART_KEY_PREFIX}{cart['revision']}"
        key = named["key"]
        purchase_id = f"buyer-{cart['user_id']}:{key}"
        lines = [[line["item_id"], line["quantity"]] for line in cart["cart"]]
        reservation = reservation_from_payload((yield self._product(
            "Reserve", {"purchase_id": purchase_id, "lines": lines})))
        if reservation.state != COMMITTED:
            yield self._authorize(reservation, card)
            # Recording waits for the commit: a commit refused because the
            # attempt lapsed must not leave a purchase in the history (and
            # the bought units gone from the cart) for stock back on sale.
            yield self._commit(reservation, cart["user_id"])
        yield self._customer("RecordPurchase", request, {
            "purchase_id": purchase_id,
            "lines": [[line.item_id, line.seller_id, line.quantity, line.price_cents]
                      for line in reservation.lines]}, idempotent=True)
        # Not waited for: if it fails, the sweep finds the record made.
        self.owed.done(purchase_id).addErrback(
            lambda failure: log.warn("product-db was not told {purchase} is recorded; the sweep "
                                     "will find it is: {why}", purchase=purchase_id,
                                     why=failure.getErrorMessage()))
        return None, {
            "status": STATUS_OK, "idempotency_key": key,
            "total": validation.cents_to_decimal(reservation.total_cents),
            "items": [{"item_id": line.item_id, "quantity": line.quantity,
                       "price": validation.cents_to_decimal(line.price_cents)}
                      for line in reservation.lines],
        }

    @defer.inlineCallbacks
    def _authorize(self, reservation, card):
        """
        Authorise and capture, or say why not.

        When the payment is known not to be taken (a total above the limit,
        a decline, a card or ledger refusal) the reservation is released at
        once.  When its fate is unknown (payments unreachable, no answer in
        time, a bug) the reservation stays: a retry within its lease
        completes the purchase, and otherwise it lapses and any charge is
        voided -- released now, the stock could be sold again while the
        money stayed taken.
        """
        try:
            validation.purchase_total(reservation.total_cents)
            decision = yield payload_of(self._payments.call("Authorize", {
                "purchase_id": reservation.purchase_id, "attempt": reservation.attempt,
                "amount_cents": reservation.total_cents, **card}, idempotent=True))
            if not decision["approved"]:
                raise ClientError(f"payment declined: {decision['reason']}")
        except ClientError:
            yield self._release(reservation)
            raise

    @defer.inlineCallbacks
    def _commit(self, reservation, buyer_id: int):
        """
        Commit the stock of the attempt just paid for, owing its record to
        C{buyer_id}.  A refusal means the attempt lapsed (its lease ran out)
        or was followed by another: its payment is voided -- no money without
        stock -- and the buyer is told to buy again.
        """
        try:
            yield self._product("Commit", {"purchase_id": reservation.purchase_id,
                                           "attempt": reservation.attempt, "buyer_id": buyer_id})
        except ClientError:
            # If payments cannot be reached now, the void stays pending in
            # product-db and a sweep makes it.
            yield self.voids.void(reservation).addErrback(
                lambda failure: log.warn("voiding {purchase} #{attempt} is left to the sweep: {why}",
                                         purchase=reservation.purchase_id,
                                         attempt=reservation.attempt,
                                         why=failure.getErrorMessage()))
            raise ClientError("the purchase took longer than its reservation of the stock "
                              "allows; any charge for it is refunded; purchase again") from None

    def _release(self, reservation):
        """
        Put the units back.  If product-db is unreachable, or the attempt
        ended meanwhile, the lease sees to it.
        """
        d = self._product("Release", {"purchase_id": reservation.purchase_id,
                                      "attempt": reservation.attempt})
        return d.addErrback(lambda failure: failure.trap(ServiceUnavailable, ClientError))
