"""
The ``customer-db`` service: accounts, sessions, carts, purchase history and
seller ratings, behind internal APIs that only the front ends call.

Calls that act for a logged-in user carry the session id in the envelope; the
service looks it up (sliding its inactivity timeout and the active cart's),
checks the role, and acts for the session's user, so a front end never has
to be trusted with a user id it could get wrong.

Internal APIs (payload -> reply payload):

- ``CreateUser`` {role, username, password_hash} -> {user_id}
- ``GetCredentials`` {role, username} -> {user_id, password_hash}
- ``UpgradePasswordHash`` {role, user_id, old_hash, password_hash} -> {upgraded};
  replaces the hash only if it still is ``old_hash``
- ``OpenSession`` {role, user_id} -> {session_id, user_id}; a buyer's saved
  cart becomes the new session's active cart
- ``CheckSession`` {role} -> {user_id}
- ``CloseSession`` {role} -> {user_id}; the active cart goes, the saved cart stays
- ``CartGet`` / ``CartSave`` {} -> {user_id, cart, revision} (``RevisedCart.revision``)
- ``CartClear`` {} -> {user_id, cart}
- ``CartAdd`` {item_id, quantity, limit} -> {user_id, quantity}
- ``CartRemove`` {item_id, quantity} -> {user_id, quantity}
- ``GetProfile`` {role, user_id} -> profile; ``MyProfile`` {role} -> own profile
- ``GetPurchases`` {limit?} -> {user_id, items}
- ``RecordPurchase`` {purchase_id, lines} -> {user_id, recorded}
- ``RecordOwedPurchase`` {buyer_id, purchase_id, lines} -> {recorded}: the
  same record without a session, for a purchase whose front end could not
  record it (its session's active cart is left as it is)
- ``RecordFeedback`` {item_id, seller_id, positive} -> {user_id, recorded, positive}
"""

from __future__ import annotations

import attrs
from twisted.internet import defer
from twisted.python.failure import Failure

from marketplace.market import accounts, validation
from marketplace.market.dbservice import make_dispatch
from marketplace.market.errors import ClientError, Forbidden, InvalidSession
from marketplace.store import SessionNotFound
from marketplace.store.sessionids import DEFAULT_SESSION_TTL, is_session_id
from marketplace.store.market_errors import FeedbackAlreadyGiven, UnknownUser
from marketplace.store.market_records import ReservedLine

MAX_HISTORY = 100


def _session_user(role: str, user_id: int) -> str:
    """The session store's user id: roles have separate id spaces."""
    return f"{role}:{user_id}"


def cart_payload(cart: dict) -> list:
    return [{"item_id": item_id, "quantity": cart[item_id]} for item_id in sorted(cart)]


@attrs.frozen
class Caller:
    """The user a session belongs to, and the session's inactivity timeout."""

    session_id: str
    role: str
    user_id: int
    ttl: float


class CustomerDbService:
    def __init__(self, sessions, customers, clock, session_ttl: float | None = None):
        self._sessions = sessions
        self._customers = customers
        self._clock = clock
        self._session_ttl = session_ttl

    def dispatch_table(self) -> dict:
        buyer = self._for_buyer
        return {
            "CreateUser": self.create_user,
            "GetCredentials": self.get_credentials,
            "UpgradePasswordHash": self.upgrade_password_hash,
            "OpenSession": self.open_session,
            "CheckSession": self._for_any_role(self.check_session),
            "CloseSession": self._for_any_role(self.close_session),
            "MyProfile": self._for_any_role(self.my_profile),
            "GetProfile": self.get_profile,
            "CartGet": buyer(self.cart_get),
            "CartAdd": buyer(self.cart_add),
            "CartRemove": buyer(self.cart_remove),
            "CartSave": buyer(self.cart_save),
            "CartClear": buyer(self.cart_clear),
            "GetPurchases": buyer(self.get_purchases),
            "RecordPurchase": buyer(self.record_purchase),
            "RecordOwedPurchase": self.record_owed_purchase,
            "RecordFeedback": buyer(self.record_feedback),
        }

    def dispatch(self):
        return make_dispatch(self.dispatch_table())

    # Accounts and sessions

    @defer.inlineCallbacks
    def create_user(self, request):
        payload = request.payload
        role = accounts.role(payload.get("role"))
        name = accounts.username(payload)
        password_hash = validation.text(payload, "password_hash", max_length=512)
        user_id = yield self._customers.create_user(role, name, password_hash)
        return None, {"user_id": user_id}

    @defer.inlineCallbacks
    def get_credentials(self, request):
        payload = request.payload
        role = accounts.role(payload.get("role"))
        name = accounts.username(payload)
        credentials = yield self._customers.credentials(role, name)
        return None, {"user_id": credentials.user_id, "password_hash": credentials.password_hash}

    @defer.inlineCallbacks
    def upgrade_password_hash(self, request):
        payload = request.payload
        role = accounts.role(payload.get("role"))
        user_id = validation.user_id(payload, "user_id")
        old_hash = validation.text(payload, "old_hash", max_length=512)
        password_hash = validation.text(payload, "password_hash", max_length=512)
        upgraded = yield self._customers.replace_password_hash(role, user_id, old_hash, password_hash)
        return None, {"upgraded": upgraded}

    @defer.inlineCallbacks
    def open_session(self, request):
        payload = request.payload
        role = accounts.role(payload.get("role"))
        user_id = validation.user_id(payload, "user_id")
        yield self._customers.profile(role, user_id)
        session = yield self._sessions.create(
            _session_user(role, user_id), {"role": role}, self._session_ttl)
        if role == "buyer":
            yield self._customers.cart_restore(session.session_id, user_id, session.ttl)
        return session.session_id, {"session_id": session.session_id, "user_id": user_id}

    def check_session(self, caller, payload):
        return {"user_id": caller.user_id}

    @defer.inlineCallbacks
    def close_session(self, caller, payload):
        yield self._sessions.delete(caller.session_id)
        yield self._customers.cart_drop(caller.session_id)
        return {"user_id": caller.user_id}

    @defer.inlineCallbacks
    def my_profile(self, caller, payload):
        profile = yield self._customers.profile(caller.role, caller.user_id)
        return attrs.asdict(profile)

    @defer.inlineCallbacks
    def get_profile(self, request):
        payload = request.payload
        role = accounts.role(payload.get("role"))
        user_id = validation.user_id(payload, "user_id")
        try:
            profile = yield self._customers.profile(role, user_id)
        except UnknownUser:
            raise ClientError(f"no {role} with id {user_id}") from None
        return None, attrs.asdict(profile)

    # Carts

    @defer.inlineCallbacks
    def cart_get(self, caller, payload):
        cart = yield self._customers.revised_cart(caller.session_id)
        return {"cart": cart_payload(cart.lines), "revision": cart.revision}

    @defer.inlineCallbacks
    def cart_add(self, caller, payload):
        item_id = validation.item_id(payload)
        quantity = validation.positive_quantity(payload)
        limit = validation.stock_quantity(payload, "limit")
        held = yield self._customers.cart_add(caller.session_id, item_id, quantity, limit, caller.ttl)
        return {"quantity": held}

    @defer.inlineCallbacks
    def cart_remove(self, caller, payload):
        item_id = validation.item_id(payload)
        quantity = validation.positive_quantity(payload)
        left = yield self._customers.cart_remove(caller.session_id, item_id, quantity, caller.ttl)
        return {"quantity": left}

    @defer.inlineCallbacks
    def cart_save(self, caller, payload):
        yield self._customers.cart_save(caller.session_id, caller.user_id)
        return (yield self.cart_get(caller, payload))

    @defer.inlineCallbacks
    def cart_clear(self, caller, payload):
        yield self._customers.cart_clear(caller.session_id)
        return {"cart": []}

    # Purchases and feedback

    @defer.inlineCallbacks
    def get_purchases(self, caller, payload):
        limit = validation.integer(payload.get("limit", MAX_HISTORY), "limit", 1, MAX_HISTORY)
        purchases = yield self._customers.purchases(caller.user_id, limit)
        return {"items": [attrs.asdict(p) for p in purchases]}

    @defer.inlineCallbacks
    def record_purchase(self, caller, payload):
        recorded = yield self._customers.record_purchase(
            _purchase_id(payload), caller.user_id, caller.session_id, _purchase_lines(payload),
            self._clock.seconds())
        return {"recorded": recorded}

    @defer.inlineCallbacks
    def record_owed_purchase(self, request):
        payload = request.payload
        recorded = yield self._customers.record_purchase(
            _purchase_id(payload), validation.user_id(payload, "buyer_id"), None,
            _purchase_lines(payload), self._clock.seconds())
        return None, {"recorded": recorded}

    @defer.inlineCallbacks
    def record_feedback(self, caller, payload):
        item_id = validation.item_id(payload)
        seller_id = validation.user_id(payload, "seller_id")
        positive = validation.boolean(payload, "positive")
        try:
            yield self._customers.record_feedback(caller.user_id, item_id, seller_id, positive)
        except FeedbackAlreadyGiven as already:
            return {"recorded": False, "positive": already.positive}
        return {"recorded": True, "positive": positive}

    # Session checks

    def _for_buyer(self, handler):
        return self._with_session(handler, lambda payload: "buyer")

    def _for_any_role(self, handler):
        return self._with_session(handler, lambda payload: accounts.role(payload.get("role")))

    def _with_session(self, handler, expected_role):
        """
        Wrap ``handler(caller, payload) -> payload`` so it runs only for a live
        session of the expected role; the reply always names the user.

        Plain callbacks rather than ``inlineCallbacks``: every session call
        passes through here, and the check is usually answered at once.
        """

        def handle(request):
            payload = request.payload
            caller = self._caller(request.session_id, expected_role(payload))
            return caller.addCallback(_run_for_caller, handler, payload)

        return handle

    def _caller(self, session_id, role):
        """Deferred[Caller]: the live session's user, its role checked and its cart slid."""
        if not session_id:
            raise InvalidSession("this call needs a session_id; log in first")
        if not is_session_id(session_id):
            raise InvalidSession()
        touched = self._sessions.touch(session_id)
        caller = touched.addCallbacks(self._caller_of, _invalid_session,
                                      callbackArgs=(session_id, role))
        if role != "buyer":
            return caller
        # The cart slides in the same round trip as the session check, not
        # after it: sliding the cart of a session that turns out invalid
        # (or a seller's, which has none) changes nothing.
        slid = self._customers.cart_touch(session_id, self._session_ttl or DEFAULT_SESSION_TTL)
        return caller.addBoth(_once_slid, slid)

    def _caller_of(self, session, session_id, role):
        session_role = session.data.get("role")
        if session_role != role:
            raise Forbidden(f"this call is for {role} accounts; the session belongs to a {session_role}")
        return Caller(session_id, role, int(session.user_id.partition(":")[2]), session.ttl)


def _once_slid(caller, slid):
    """The caller once its cart slid; a refused caller's slide does not matter."""
    if isinstance(caller, Failure):
        slid.addErrback(lambda _: None)
        return caller
    return slid.addCallback(lambda _: caller)


def _invalid_session(failure):
    failure.trap(SessionNotFound)
    raise InvalidSession()


def _run_for_caller(caller, handler, payload):
    """Run a session handler; its reply (a dict, or a Deferred of one) gets the user id."""

    def named(result):
        result["user_id"] = caller.user_id
        return None, result

    result = handler(caller, payload)
    if isinstance(result, defer.Deferred):
        return result.addCallback(named)
    return named(result)


def _purchase_id(payload: dict) -> str:
    return validation.text(payload, "purchase_id", max_length=200)


def _purchase_lines(payload: dict) -> list[ReservedLine]:
    """A recorded purchase's lines, as product-db reserved them."""
    try:
        return [ReservedLine(*map(int, line)) for line in validation.required(payload, "lines")]
    except (TypeError, ValueError):
        raise ClientError("'lines' must be [item_id, seller_id, quantity, price_cents] rows") from None
