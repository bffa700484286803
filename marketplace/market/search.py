"""
A search's page: how many items it shows and from where.

Results are ranked by the rule in L{marketplace.store.market_rules.rank}
(distinct matching keywords, then the oldest listing); with no keywords
every item of the category scores 0 and the order is by item id.
Out-of-stock items are left out unless asked for.  A page holds at most
``MAX_PAGE`` items; ``offset`` pages through the rest.
"""

from __future__ import annotations

from marketplace.market import validation
from marketplace.market.errors import ClientError

DEFAULT_PAGE = 20
MAX_PAGE = 100


def page_bounds(payload: dict) -> tuple[int, int]:
    """``offset`` and ``limit`` of a search payload, checked and capped."""
    offset = validation.integer(payload.get("offset", 0), "offset")
    limit = validation.integer(payload.get("limit", DEFAULT_PAGE), "limit", minimum=1)
    if limit > MAX_PAGE:
        raise ClientError(f"'limit' must be at most {MAX_PAGE}")
    return offset, limit
