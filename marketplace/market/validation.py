"""
Checks on request payload fields, shared by the front ends and DB services.

Every check either returns a clean Python value or raises a client error whose
message names the field and the rule, so a caller learns what to fix from one
reply.  Money is parsed into integer cents here, at the edge, and never exists
as a float inside the system.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import attrs

from marketplace.market.errors import ClientError
from marketplace.store.market_rules import MAX_STOCK

MAX_ITEM_NAME = 32
MAX_KEYWORDS = 5
#: The longest keyword list accepted, duplicates included: bounded before
#: anything else is checked, so a frame of a hundred thousand keywords costs
#: nothing to refuse.
MAX_KEYWORD_ENTRIES = 4 * MAX_KEYWORDS
MAX_KEYWORD = 8
MAX_CATEGORY = 2**31 - 1
#: The largest count: counts stay exact in Lua numbers (doubles) and in JSON
#: readers that use doubles.
MAX_EXACT = 2**53 - 1
#: The highest price of one unit (10,000,000.00) and total of one purchase
#: (100,000,000.00).  Every purchase is captured into the one merchant ledger
#: account, whose balance is capped at 2**53 - 1 cents: without a cap one
#: purchase could fill it, and every later capture would be refused.  Capped,
#: it takes some 900,000 purchases of the maximum.
MAX_PRICE_CENTS = 1_000_000_000
MAX_PURCHASE_CENTS = 10_000_000_000
MAX_ID = 2**53 - 1
_CENTS = Decimal("0.01")
_KEYWORD = re.compile(r"^[a-z0-9_-]+$")


def required(payload: dict, name: str):
    """The field's value, or a client error naming the missing field."""
    try:
        return payload[name]
    except KeyError:
        raise ClientError(f"missing field {name!r}") from None


def text(payload: dict, name: str, max_length: int = 256) -> str:
    """A non-empty string of at most ``max_length`` characters."""
    value = required(payload, name)
    if not isinstance(value, str) or not value.strip():
        raise ClientError(f"{name!r} must be a non-empty string")
    if len(value) > max_length:
        raise ClientError(f"{name!r} must be at most {max_length} characters")
    return value


def integer(value, name: str, minimum: int = 0, maximum: int = MAX_EXACT) -> int:
    """
    An integer in ``minimum..maximum``; numeric strings are accepted because
    existing clients send ids either way.
    """
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,20}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClientError(f"{name!r} must be an integer")
    if not minimum <= value <= maximum:
        raise ClientError(f"{name!r} must be between {minimum} and {maximum}")
    return value


def item_id(payload: dict, name: str = "item_id") -> int:
    return integer(required(payload, name), name, minimum=1, maximum=MAX_ID)


def user_id(payload: dict, name: str) -> int:
    return integer(required(payload, name), name, minimum=1, maximum=MAX_ID)


def positive_quantity(payload: dict, name: str = "quantity") -> int:
    return integer(required(payload, name), name, minimum=1)


def stock_quantity(payload: dict, name: str = "quantity") -> int:
    return integer(required(payload, name), name, minimum=0, maximum=MAX_STOCK)


def stock_change(payload: dict, name: str = "quantity") -> int:
    """
    A signed change to stock; zero changes nothing and is refused as a no-op.
    Whether the stock it leaves is within ``MAX_STOCK`` is the store's check.
    """
    change = integer(required(payload, name), name, minimum=-MAX_STOCK, maximum=MAX_STOCK)
    if change == 0:
        raise ClientError(f"{name!r} must be a non-zero change to the stock")
    return change


def boolean(payload: dict, *names: str) -> bool:
    """The first of ``names`` present, which must be a JSON boolean."""
    for name in names:
        if name in payload:
            value = payload[name]
            if not isinstance(value, bool):
                raise ClientError(f"{name!r} must be true or false")
            return value
    raise ClientError("missing field " + " or ".join(repr(n) for n in names))


def price_cents(value, name: str = "price") -> int:
    """
    Exact integer cents from a JSON number or decimal string.

    A JSON reader may hand over a float such as 9.99; its shortest repr is the
    decimal the client wrote, so converting through ``repr`` is exact.  More
    than two decimal places is refused rather than rounded.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ClientError(f"{name!r} must be a number such as 9.99")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ClientError(f"{name!r} must be a number such as 9.99") from None
    if not amount.is_finite():
        raise ClientError(f"{name!r} must be a finite number")
    if amount < 0:
        raise ClientError(f"{name!r} must be >= 0")
    # Checked before quantize(), which raises for numbers wider than the
    # decimal context's precision (1E+30, say).
    highest = cents_to_decimal(MAX_PRICE_CENTS)
    if amount > highest:
        raise ClientError(f"{name!r} must be at most {highest}")
    if amount != amount.quantize(_CENTS, rounding="ROUND_DOWN"):
        raise ClientError(f"{name!r} must have at most two decimal places")
    return int(amount * 100)


def internal_price_cents(payload: dict, name: str = "price_cents") -> int:
    """A price as a front end forwards it to product-db: integer cents, same limit."""
    return integer(required(payload, name), name, maximum=MAX_PRICE_CENTS)


def purchase_total(cents: int) -> int:
    """A purchase's total in cents, refused above ``MAX_PURCHASE_CENTS``."""
    if cents > MAX_PURCHASE_CENTS:
        raise ClientError(
            f"the purchase total {cents_to_decimal(cents)} is above the maximum of "
            f"{cents_to_decimal(MAX_PURCHASE_CENTS)} per purchase; buy fewer units at a time")
    return cents


def cents_to_decimal(cents: int) -> Decimal:
    """The exact decimal amount of ``cents`` (the envelope writes it digit for digit)."""
    return Decimal(cents).scaleb(-2)


def category(value, name: str = "category") -> int:
    return integer(value, name, minimum=0, maximum=MAX_CATEGORY)


def keywords(value, name: str = "keywords") -> tuple[str, ...]:
    """
    Up to five distinct keywords of at most eight characters, lower-cased so
    that search matches regardless of case; order is kept, duplicates dropped.

    The work is bounded whatever the client sends: a list longer than
    ``MAX_KEYWORD_ENTRIES`` is refused unread, and the loop stops at the
    first keyword over the limit.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ClientError(f"{name!r} must be a list of strings")
    if len(value) > MAX_KEYWORD_ENTRIES:
        raise ClientError(f"{name!r} may hold at most {MAX_KEYWORD_ENTRIES} entries "
                          f"and {MAX_KEYWORDS} distinct keywords")
    result: dict[str, None] = {}  # insertion-ordered set
    for word in value:
        if not isinstance(word, str):
            raise ClientError(f"{name!r} must be a list of strings")
        word = word.strip().lower()
        if not 1 <= len(word) <= MAX_KEYWORD or not _KEYWORD.match(word):
            raise ClientError(
                f"keyword {word!r} must be 1 to {MAX_KEYWORD} letters, digits, '_' or '-'"
            )
        result[word] = None
        if len(result) > MAX_KEYWORDS:
            raise ClientError(f"at most {MAX_KEYWORDS} keywords are allowed")
    return tuple(result)


def condition_is_new(payload: dict) -> bool:
    """``condition`` as "new"/"used" (the spec) or ``condition_is_new`` as a bool."""
    if "condition_is_new" in payload and "condition" not in payload:
        return boolean(payload, "condition_is_new")
    value = required(payload, "condition")
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("new", "used"):
        return value.strip().lower() == "new"
    raise ClientError("'condition' must be \"new\" or \"used\"")


@attrs.frozen
class ItemDraft:
    """A validated listing, before the catalogue assigns its id."""

    item_name: str
    category: int
    keywords: tuple[str, ...]
    condition_is_new: bool
    price_cents: int
    quantity: int

    def to_payload(self) -> dict:
        return {
            "item_name": self.item_name,
            "category": self.category,
            "keywords": list(self.keywords),
            "condition_is_new": self.condition_is_new,
            "price_cents": self.price_cents,
            "quantity": self.quantity,
        }


def item_draft(payload: dict) -> ItemDraft:
    """A new listing from a RegisterItemForSale payload."""
    name = text(payload, "item_name", max_length=MAX_ITEM_NAME).strip()
    return ItemDraft(
        item_name=name,
        category=category(required(payload, "category")),
        keywords=keywords(payload.get("keywords")),
        condition_is_new=condition_is_new(payload),
        price_cents=price_cents(required(payload, "price")),
        quantity=stock_quantity(payload),
    )


def item_draft_from_internal(payload: dict) -> ItemDraft:
    """A listing as a front end forwards it to product-db (cents, bool condition)."""
    return ItemDraft(
        item_name=text(payload, "item_name", max_length=MAX_ITEM_NAME).strip(),
        category=category(required(payload, "category")),
        keywords=keywords(payload.get("keywords")),
        condition_is_new=boolean(payload, "condition_is_new"),
        price_cents=internal_price_cents(payload),
        quantity=stock_quantity(payload),
    )
