"""
The search ranking rule, in one place.

An item's score is the number of distinct query keywords among its own
keywords.  Results are ordered by score, highest first; ties go to the
oldest listing (lowest item id), so a page is stable while the catalogue
grows.  With no keywords every item of the category scores 0 and the order
is by item id.  Out-of-stock items are left out unless asked for.  A page
holds at most ``MAX_PAGE`` items; ``offset`` pages through the rest.

The embedded store ranks with :func:`rank`; the Redis store's Lua script
implements the same rule, and the store contract suite checks they agree.
"""

from __future__ import annotations

from marketplace.market import validation
from marketplace.market.errors import ClientError

DEFAULT_PAGE = 20
MAX_PAGE = 100


def rank(scores: dict[int, int]) -> list[int]:
    """
    Item ids ordered by the ranking rule, given each candidate's score.

    Two sorts without a Python key function: by id, then by score, highest
    first -- a stable sort (``reverse`` included) keeps equal scores in id
    order.
    """
    ranked = sorted(scores)
    ranked.sort(key=scores.__getitem__, reverse=True)
    return ranked


def page_bounds(payload: dict) -> tuple[int, int]:
    """``offset`` and ``limit`` of a search payload, checked and capped."""
    offset = validation.integer(payload.get("offset", 0), "offset")
    limit = validation.integer(payload.get("limit", DEFAULT_PAGE), "limit", minimum=1)
    if limit > MAX_PAGE:
        raise ClientError(f"'limit' must be at most {MAX_PAGE}")
    return offset, limit
