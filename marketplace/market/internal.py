"""
Payload shapes of the internal APIs between the front ends and the DB
services (records as plain JSON objects, and back).

Internal payloads carry money as integer cents.  Items are the exception:
product-db answers them in the spec's item shape (exact decimal ``price``
beside ``price_cents``), so the front ends forward item lists as they are.
"""

from __future__ import annotations

import attrs

from marketplace.market import validation
from marketplace.market.errors import ClientError, ServerError
from marketplace.store.market_records import Item, OwedRecord, Reservation, ReservedLine


def reservation_to_payload(reservation: Reservation) -> dict:
    return {
        "purchase_id": reservation.purchase_id,
        "state": reservation.state,
        "attempt": reservation.attempt,
        "lines": [attrs.astuple(line) for line in reservation.lines],
    }


def reservation_from_payload(payload: dict) -> Reservation:
    try:
        lines = [ReservedLine(*line) for line in payload["lines"]]
        return Reservation(payload["purchase_id"], payload["state"], lines,
                           validation.integer(payload["attempt"], "attempt", 1))
    except (KeyError, TypeError, ClientError) as e:
        raise ServerError(f"malformed reservation from product-db: {e}") from None


def owed_to_payload(owed: OwedRecord) -> dict:
    return {"purchase_id": owed.purchase_id, "buyer_id": owed.buyer_id,
            "lines": [attrs.astuple(line) for line in owed.lines]}


def owed_from_payload(payload: dict) -> OwedRecord:
    try:
        lines = [ReservedLine(*line) for line in payload["lines"]]
        return OwedRecord(payload["purchase_id"], validation.user_id(payload, "buyer_id"), lines)
    except (KeyError, TypeError, ClientError) as e:
        raise ServerError(f"malformed owed record from product-db: {e}") from None


def item_to_spec(item: Item) -> dict:
    """
    The spec's item object, with exact decimal ``price`` and feedback
    counters: product-db answers every item in this shape, so the front ends
    can pass item lists on without touching them.
    """
    return {
        "item_id": item.item_id,
        "item_name": item.item_name,
        "category": item.category,
        "keywords": list(item.keywords),
        "condition": "new" if item.condition_is_new else "used",
        "condition_is_new": item.condition_is_new,
        "price": validation.cents_to_decimal(item.price_cents),
        "price_cents": item.price_cents,
        "quantity": item.quantity,
        "seller_id": item.seller_id,
        "feedback": {"pos": item.pos, "neg": item.neg},
    }
