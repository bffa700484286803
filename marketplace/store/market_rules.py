"""
Catalogue rules shared by every backend, so the embedded store and Redis
refuse the same changes and rank searches alike.

The stock limit is 2**53 - 1, as for the ledger (``ledger_rules``): Redis
runs the catalogue's Lua scripts with double-precision numbers, exact only up
to 2**53, so above it the two backends would count a different stock.  The
Redis scripts get the limit from here as an argument.
"""

from __future__ import annotations

from collections import Counter

from marketplace.store.market_errors import StockTooHigh

#: The most units an item may have in stock.
MAX_STOCK = 2**53 - 1


def check_stock(item_id: int, quantity: int) -> int:
    """``quantity`` if an item may be left with that stock, else ``StockTooHigh``."""
    if quantity > MAX_STOCK:
        raise StockTooHigh(item_id, MAX_STOCK)
    return quantity


def merged_lines(lines) -> list[tuple[int, int]]:
    """
    A purchase's ``(item_id, quantity)`` lines with one line per item, in
    item-id order: two lines naming one item need the sum of their units in
    stock, not each of them alone.
    """
    quantities = Counter()
    for item_id, quantity in lines:
        quantities[item_id] += quantity
    return sorted(quantities.items())


def rank(scores: dict[int, int]) -> list[int]:
    """
    Item ids ordered by the search ranking rule, given each candidate's
    score (the number of distinct query keywords among its own keywords):
    highest score first, ties to the oldest listing (lowest item id), so a
    page is stable while the catalogue grows.  The embedded store ranks with
    this; the Redis store's search script implements the same rule, and the
    store contract suite checks they agree.

    Two sorts without a Python key function: by id, then by score, highest
    first -- a stable sort (``reverse`` included) keeps equal scores in id
    order.
    """
    ranked = sorted(scores)
    ranked.sort(key=scores.__getitem__, reverse=True)
    return ranked
