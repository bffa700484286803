"""
Catalogue rules shared by every backend, so the embedded store and Redis
refuse the same changes.

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
