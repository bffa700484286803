"""
Immutable records of the marketplace's store domains (customers and catalog).

Money is integer cents; ids are positive integers assigned by the store.
"""

from __future__ import annotations

import attrs

RESERVED = "reserved"
COMMITTED = "committed"
RELEASED = "released"
#: A reservation whose lease ran out before it was committed: its units are
#: back in stock, and any payment taken for that attempt is to be voided.
EXPIRED = "expired"
#: Not a state but what a refused commit or release reports when the
#: attempt it names was followed by another attempt of the same purchase.
SUPERSEDED = "superseded"


@attrs.frozen
class Credentials:
    user_id: int
    password_hash: str


@attrs.frozen
class Profile:
    """A user's public counters: feedback received (sellers), items sold or bought."""

    user_id: int
    username: str
    pos: int = 0
    neg: int = 0
    items_sold: int = 0
    items_bought: int = 0


@attrs.frozen(cache_hash=True)  # product-db looks items up by value for their encoded JSON
class Item:
    item_id: int
    seller_id: int
    item_name: str
    category: int
    keywords: tuple = attrs.field(converter=tuple)
    condition_is_new: bool
    price_cents: int
    quantity: int
    pos: int = 0
    neg: int = 0
    sold: int = 0


@attrs.frozen
class SearchPage:
    """One page of ranked results and how many items matched in all."""

    items: tuple = attrs.field(converter=tuple)
    total: int


@attrs.frozen
class ReservedLine:
    """One cart line held for a purchase, with the price and seller at reservation time."""

    item_id: int
    seller_id: int
    quantity: int
    price_cents: int


@attrs.frozen
class Reservation:
    """
    A purchase's hold on stock.  ``attempt`` counts the times the purchase
    was reserved: one released or expired is reserved again as the next
    attempt, and a commit or release names the attempt it settles, so a
    late caller can never settle an attempt other than its own.
    """

    purchase_id: str
    state: str
    lines: tuple = attrs.field(converter=tuple)
    attempt: int = 1

    @property
    def total_cents(self) -> int:
        return sum(line.quantity * line.price_cents for line in self.lines)


@attrs.frozen
class OwedRecord:
    """
    A committed purchase whose record in customer-db (the buyer's history,
    the items-bought and items-sold counters) is not yet known to be made.
    """

    purchase_id: str
    buyer_id: int
    lines: tuple = attrs.field(converter=tuple)


@attrs.frozen
class RevisedCart:
    """
    A session's active cart and its revision: a number the store draws afresh
    (never the same twice, across every cart) each time the cart changes, so
    a purchase of "this cart as it is now" can be named without a key chosen
    by the client.  An empty cart has revision 0.
    """

    lines: dict
    revision: int


@attrs.frozen
class Purchase:
    """One line of a buyer's purchase history."""

    purchase_id: str
    item_id: int
    quantity: int
    price_cents: int
    purchased_at: float
