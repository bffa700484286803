"""
Business refusals of the marketplace's store domains.

Each leaves the store unchanged.  The DB services map them to client errors
in one table (``marketplace.market.dbservice``).
"""

from marketplace.store.errors import StoreError


class MarketStoreError(StoreError):
    """Base of the marketplace domains' refusals."""


class UsernameTaken(MarketStoreError):
    """The user name already belongs to an account of that role."""


class UnknownUser(MarketStoreError):
    """No account has that user name or id."""


class UnknownItem(MarketStoreError):
    """No item has that id."""


class NotOwner(MarketStoreError):
    """The item belongs to another seller."""


class StockTooLow(MarketStoreError):
    """
    Stock cannot cover the request; ``available`` says how much there is
    (the units in stock, or what the cart may still take).
    """

    def __init__(self, item_id: int, available: int):
        super().__init__(f"item {item_id} has only {available} unit(s) available")
        self.item_id = item_id
        self.available = available


class StockTooHigh(MarketStoreError):
    """A stock change would leave the item above ``limit`` units (``market_rules.MAX_STOCK``)."""

    def __init__(self, item_id: int, limit: int):
        super().__init__(f"item {item_id} may have at most {limit} unit(s) in stock")
        self.item_id = item_id
        self.limit = limit


class NotInCart(MarketStoreError):
    """The cart holds fewer units of the item than were to be removed."""

    def __init__(self, item_id: int, in_cart: int):
        super().__init__(f"the cart holds {in_cart} unit(s) of item {item_id}")
        self.item_id = item_id
        self.in_cart = in_cart


class ReservationClosed(MarketStoreError):
    """The purchase is in a state that does not allow the transition asked for."""

    def __init__(self, purchase_id: str, state: str | None):
        super().__init__(f"purchase {purchase_id} is {state or 'unknown'}")
        self.purchase_id = purchase_id
        self.state = state


class NotPurchased(MarketStoreError):
    """Feedback on an item the buyer never bought."""


class FeedbackAlreadyGiven(MarketStoreError):
    """The buyer already rated this item; ``positive`` is the recorded vote."""

    def __init__(self, item_id: int, positive: bool):
        super().__init__(f"feedback for item {item_id} was already given")
        self.item_id = item_id
        self.positive = positive
