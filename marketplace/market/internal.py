"""
Payload shapes of the internal APIs between the front ends and the DB
services (records as plain JSON objects, and back).

Internal payloads carry money as integer cents; only the front ends turn
cents into the spec's decimal ``price``.
"""

from __future__ import annotations

import attrs

from marketplace.market import validation
from marketplace.market.errors import ServerError
from marketplace.store.market_records import Item, Reservation, ReservedLine


def item_to_payload(item: Item) -> dict:
    # Spelled out rather than attrs.asdict: this runs for every item of every
    # search reply, and asdict's generic recursion costs several times more.
    return {
        "item_id": item.item_id, "seller_id": item.seller_id, "item_name": item.item_name,
        "category": item.category, "keywords": list(item.keywords),
        "condition_is_new": item.condition_is_new, "price_cents": item.price_cents,
        "quantity": item.quantity, "pos": item.pos, "neg": item.neg, "sold": item.sold,
    }


def item_from_payload(payload: dict) -> Item:
    try:
        return Item(**payload)
    except TypeError as e:
        raise ServerError(f"malformed item from product-db: {e}") from None


def reservation_to_payload(reservation: Reservation) -> dict:
    return {
        "purchase_id": reservation.purchase_id,
        "state": reservation.state,
        "lines": [attrs.astuple(line) for line in reservation.lines],
    }


def reservation_from_payload(payload: dict) -> Reservation:
    try:
        lines = [ReservedLine(*line) for line in payload["lines"]]
        return Reservation(payload["purchase_id"], payload["state"], lines)
    except (KeyError, TypeError) as e:
        raise ServerError(f"malformed reservation from product-db: {e}") from None


def item_to_spec(item: Item) -> dict:
    """The spec's item object, with exact decimal ``price`` and feedback counters."""
    return spec_of_item_payload(item_to_payload(item))


def spec_of_item_payload(payload: dict) -> dict:
    """
    The spec's item object straight from product-db's item payload.

    Front ends turn every item of every search and listing reply into this
    shape, so it is built directly rather than through an ``Item`` record.
    """
    try:
        return {
            "item_id": payload["item_id"],
            "item_name": payload["item_name"],
            "category": payload["category"],
            "keywords": list(payload["keywords"]),
            "condition": "new" if payload["condition_is_new"] else "used",
            "condition_is_new": payload["condition_is_new"],
            "price": validation.cents_to_decimal(payload["price_cents"]),
            "price_cents": payload["price_cents"],
            "quantity": payload["quantity"],
            "seller_id": payload["seller_id"],
            "feedback": {"pos": payload["pos"], "neg": payload["neg"]},
        }
    except (KeyError, TypeError) as e:
        raise ServerError(f"malformed item from product-db: {e!r}") from None
