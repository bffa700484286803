"""
Customers held in this process: accounts, carts, purchase history, ratings.

Active carts expire with their session: each use slides the cart's expiry by
the session's timeout, an expired cart reads as empty, and expired carts are
swept at most once a minute during writes, so abandoned carts do not pile up.
"""

from __future__ import annotations

import attrs
from zope.interface import implementer

from marketplace.store.market_errors import (
    FeedbackAlreadyGiven,
    NotInCart,
    NotPurchased,
    StockTooLow,
    UnknownUser,
    UsernameTaken,
)
from marketplace.store.market_interfaces import ICustomerStore
from marketplace.store.market_records import Credentials, Profile, Purchase, RevisedCart
from marketplace.store.memory.answers import answers

SWEEP_INTERVAL = 60.0


@implementer(ICustomerStore)
class MemoryCustomers:
    def __init__(self, clock):
        self._clock = clock
        self._ids_by_name: dict[tuple[str, str], int] = {}
        self._users: dict[tuple[str, int], Profile] = {}
        self._hashes: dict[tuple[str, int], str] = {}
        self._next_id = {"buyer": 1, "seller": 1}
        self._carts: dict[str, dict[int, int]] = {}
        self._cart_expiry: dict[str, float] = {}
        self._cart_revisions: dict[str, int] = {}
        self._last_revision = 0
        self._next_sweep = 0.0
        self._saved: dict[int, dict[int, int]] = {}
        # purchase -> whether its units came out of its session's active cart
        # (False: recorded without a session so far)
        self._recorded: dict[str, bool] = {}
        self._history: dict[int, list[Purchase]] = {}
        self._bought: dict[int, set[int]] = {}
        self._votes: dict[tuple[int, int], bool] = {}

    @answers
    def create_user(self, role, username, password_hash):
        if (role, username) in self._ids_by_name:
            raise UsernameTaken(f"the {role} user name {username!r} is taken")
        user_id = self._next_id[role]
        self._next_id[role] += 1
        self._ids_by_name[role, username] = user_id
        self._users[role, user_id] = Profile(user_id, username)
        self._hashes[role, user_id] = password_hash
        return user_id

    @answers
    def credentials(self, role, username):
        user_id = self._ids_by_name.get((role, username))
        if user_id is None:
            raise UnknownUser(f"no {role} named {username!r}")
        return Credentials(user_id, self._hashes[role, user_id])

    @answers
    def replace_password_hash(self, role, user_id, old_hash, new_hash):
        current = self._hashes.get((role, user_id))
        if current is None:
            raise UnknownUser(f"no {role} with id {user_id}")
        if current != old_hash:
            return False
        self._hashes[role, user_id] = new_hash
        return True

    @answers
    def profile(self, role, user_id):
        return self._profile(role, user_id)

    @answers
    def cart(self, session_id):
        return dict(self._live_cart(session_id))

    @answers
    def revised_cart(self, session_id):
        cart = dict(self._live_cart(session_id))
        return RevisedCart(cart, self._cart_revisions.get(session_id, 0))

    @answers
    def cart_add(self, session_id, item_id, quantity, limit, ttl):
        cart = self._live_cart(session_id)
        in_cart = cart.get(item_id, 0)
        if in_cart + quantity > limit:
            raise StockTooLow(item_id, max(limit - in_cart, 0))
        cart[item_id] = in_cart + quantity
        self._keep_cart(session_id, cart, ttl)
        return cart[item_id]

    @answers
    def cart_remove(self, session_id, item_id, quantity, ttl):
        cart = self._live_cart(session_id)
        in_cart = cart.get(item_id, 0)
        if in_cart < quantity:
            raise NotInCart(item_id, in_cart)
        left = in_cart - quantity
        if left:
            cart[item_id] = left
        else:
            del cart[item_id]
        self._keep_cart(session_id, cart, ttl)
        return left

    @answers
    def cart_clear(self, session_id):
        self._forget_cart(session_id)

    @answers
    def cart_touch(self, session_id, ttl):
        if self._live_cart(session_id):
            self._cart_expiry[session_id] = self._clock.seconds() + ttl

    @answers
    def cart_save(self, session_id, buyer_id):
        cart = self._live_cart(session_id)
        if cart:
            self._saved[buyer_id] = dict(cart)
        else:
            self._saved.pop(buyer_id, None)

    @answers
    def cart_restore(self, session_id, buyer_id, ttl):
        saved = self._saved.get(buyer_id)
        if saved:
            self._keep_cart(session_id, dict(saved), ttl)

    @answers
    def cart_drop(self, session_id):
        self._forget_cart(session_id)

    @answers
    def record_purchase(self, purchase_id, buyer_id, session_id, lines, purchased_at):
        carts_done = self._recorded.get(purchase_id)  # None: not recorded yet
        if carts_done:
            return False
        if carts_done is None:
            history = self._history.setdefault(buyer_id, [])
            for line in lines:
                history.append(Purchase(purchase_id, line.item_id, line.quantity,
                                        line.price_cents, purchased_at))
                self._bought.setdefault(buyer_id, set()).add(line.item_id)
                self._count("seller", line.seller_id, items_sold=line.quantity)
                self._count("buyer", buyer_id, items_bought=line.quantity)
            if not _take_out(self._saved.get(buyer_id, {}), lines):
                self._saved.pop(buyer_id, None)
        if session_id is not None:
            if _take_out(self._live_cart(session_id), lines):
                self._revise(session_id)
            else:
                self._forget_cart(session_id)
        self._recorded[purchase_id] = session_id is not None
        return carts_done is None

    @answers
    def purchases(self, buyer_id, limit):
        return list(reversed(self._history.get(buyer_id, [])[-limit:]))

    @answers
    def record_feedback(self, buyer_id, item_id, seller_id, positive):
        if item_id not in self._bought.get(buyer_id, ()):
            raise NotPurchased(f"buyer {buyer_id} has not bought item {item_id}")
        previous = self._votes.get((buyer_id, item_id))
        if previous is not None:
            raise FeedbackAlreadyGiven(item_id, previous)
        self._votes[buyer_id, item_id] = positive
        self._count("seller", seller_id, **({"pos": 1} if positive else {"neg": 1}))

    def _profile(self, role, user_id) -> Profile:
        try:
            return self._users[role, user_id]
        except KeyError:
            raise UnknownUser(f"no {role} with id {user_id}") from None

    def _count(self, role, user_id, **increments) -> None:
        profile = self._users.get((role, user_id))
        if profile is not None:
            changes = {k: getattr(profile, k) + v for k, v in increments.items()}
            self._users[role, user_id] = attrs.evolve(profile, **changes)

    def _live_cart(self, session_id) -> dict[int, int]:
        expires_at = self._cart_expiry.get(session_id)
        if expires_at is not None and expires_at <= self._clock.seconds():
            self._forget_cart(session_id)
        return self._carts.get(session_id, {})

    def _keep_cart(self, session_id, cart, ttl) -> None:
        now = self._clock.seconds()
        if not cart:
            self._forget_cart(session_id)
            return
        self._carts[session_id] = cart
        self._cart_expiry[session_id] = now + ttl
        self._revise(session_id)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            for expired in [s for s, at in self._cart_expiry.items() if at <= now]:
                self._forget_cart(expired)

    def _revise(self, session_id) -> None:
        self._last_revision += 1
        self._cart_revisions[session_id] = self._last_revision

    def _forget_cart(self, session_id) -> None:
        self._carts.pop(session_id, None)
        self._cart_expiry.pop(session_id, None)
        self._cart_revisions.pop(session_id, None)


def _take_out(cart: dict[int, int], lines) -> dict[int, int]:
    """Remove bought units from ``cart`` in place (a line at zero goes); returns it."""
    for line in lines:
        left = cart.get(line.item_id, 0) - line.quantity
        if left > 0:
            cart[line.item_id] = left
        else:
            cart.pop(line.item_id, None)
    return cart
