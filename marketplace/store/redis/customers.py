"""
Customers in Redis: accounts as hashes (one name index per role), active
carts as hashes (item id -> units, and the cart's revision) that expire with
their session (Redis's own PEXPIRE, slid on use), saved carts, purchase
history lists and vote hashes.  Every rule that
spans keys -- unique names, the stock limit on a cart, a purchase recorded
once, one vote per bought item -- is one Lua script.
"""

from __future__ import annotations

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
from marketplace.store.redis.scripts import lua, milliseconds

#: The field of an active cart's hash that holds its revision, beside item ids.
_REVISION_FIELD = "rev"


def _cart_lines(fields: dict) -> dict[int, int]:
    return {int(k): int(v) for k, v in fields.items() if k != _REVISION_FIELD}


def _purchase(entry: str) -> Purchase:
    item_id, quantity, price, purchased_at, purchase_id = entry.split("|", 4)
    return Purchase(purchase_id, int(item_id), int(quantity), int(price), float(purchased_at))


@implementer(ICustomerStore)
class RedisCustomers:
    def __init__(self, connection):
        self._redis = connection
        self._prefix = connection.prefix + "customers:"
        #: The counter every active cart's revision is drawn from.
        self._cart_revision = self._prefix + "cart-revision"
        #: A cart key no session has (a session id is 43 characters), named
        #: where a purchase recorded without a session names its active cart.
        self._no_cart = self._cart_key("-")

    def _user_prefix(self, role: str) -> str:
        return f"{self._prefix}{role}:"

    def _cart_key(self, session_id: str) -> str:
        return f"{self._prefix}cart:{session_id}"

    def _saved_cart_key(self, buyer_id) -> str:
        return f"{self._prefix}saved:{buyer_id}"

    def _buyer_key(self, buyer_id, what: str) -> str:
        return f"{self._prefix}buyer:{buyer_id}:{what}"

    def create_user(self, role, username, password_hash):
        def parse(user_id):
            if user_id == -1:
                raise UsernameTaken(f"the {role} user name {username!r} is taken")
            return int(user_id)
        return self._redis.script(
            lua("market_user_create"),
            [f"{self._prefix}{role}-names", f"{self._prefix}{role}-next-id"],
            [self._user_prefix(role), username, password_hash], durable=True, parse=parse)

    def credentials(self, role, username):
        def parse(reply):
            if not reply:
                raise UnknownUser(f"no {role} named {username!r}")
            return Credentials(int(reply[0]), reply[1])
        return self._redis.script(lua("market_credentials"), [f"{self._prefix}{role}-names"],
                                  [self._user_prefix(role), username], parse=parse)

    def replace_password_hash(self, role, user_id, old_hash, new_hash):
        def parse(replaced):
            if replaced == -1:
                raise UnknownUser(f"no {role} with id {user_id}")
            return replaced == 1
        return self._redis.script(lua("market_password_replace"), [f"{self._user_prefix(role)}{user_id}"],
                                  [old_hash, new_hash], parse=parse)

    def profile(self, role, user_id):
        def parse(fields):
            if not fields:
                raise UnknownUser(f"no {role} with id {user_id}")
            return Profile(int(user_id), fields["username"], int(fields["pos"]), int(fields["neg"]),
                           int(fields["items_sold"]), int(fields["items_bought"]))
        return self._redis.command("hgetall", self._user_prefix(role) + str(user_id), parse=parse)

    def cart(self, session_id):
        return self._redis.command("hgetall", self._cart_key(session_id), parse=_cart_lines)

    def revised_cart(self, session_id):
        return self._redis.command(
            "hgetall", self._cart_key(session_id),
            parse=lambda fields: RevisedCart(_cart_lines(fields), int(fields.get(_REVISION_FIELD, 0))))

    def cart_add(self, session_id, item_id, quantity, limit, ttl):
        return self._change(session_id, item_id, quantity, limit, ttl)

    def cart_remove(self, session_id, item_id, quantity, ttl):
        return self._change(session_id, item_id, -quantity, 0, ttl)

    def cart_clear(self, session_id):
        return self._redis.command("delete", self._cart_key(session_id), parse=lambda _: None)

    cart_drop = cart_clear

    def cart_touch(self, session_id, ttl):
        return self._redis.execute("PEXPIRE", self._cart_key(session_id), milliseconds(ttl),
                                   parse=lambda _: None)

    def cart_save(self, session_id, buyer_id):
        return self._copy(self._cart_key(session_id), self._saved_cart_key(buyer_id), 0)

    def cart_restore(self, session_id, buyer_id, ttl):
        return self._copy(self._saved_cart_key(buyer_id), self._cart_key(session_id), milliseconds(ttl))

    def record_purchase(self, purchase_id, buyer_id, session_id, lines, purchased_at):
        args = [self._user_prefix("seller"), purchase_id, repr(float(purchased_at)),
                "0" if session_id is None else "1"]
        for line in lines:
            args += [line.item_id, line.seller_id, line.quantity, line.price_cents]
        return self._redis.script(lua("market_purchase_record"), [
            f"{self._prefix}purchase:{purchase_id}", self._buyer_key(buyer_id, "history"),
            self._buyer_key(buyer_id, "bought"),
            self._no_cart if session_id is None else self._cart_key(session_id),
            self._user_prefix("buyer") + str(buyer_id), self._saved_cart_key(buyer_id), self._cart_revision],
            args, durable=True, parse=lambda recorded: recorded == 1)

    def purchases(self, buyer_id, limit):
        return self._redis.command("lrange", self._buyer_key(buyer_id, "history"), 0, limit - 1,
                                   parse=lambda entries: [_purchase(e) for e in entries])

    def record_feedback(self, buyer_id, item_id, seller_id, positive):
        def parse(reply):
            if reply[0] == "unbought":
                raise NotPurchased(f"buyer {buyer_id} has not bought item {item_id}")
            if reply[0] == "again":
                raise FeedbackAlreadyGiven(item_id, reply[1] == "pos")
        return self._redis.script(lua("market_feedback"), [
            self._buyer_key(buyer_id, "bought"), self._buyer_key(buyer_id, "votes"),
            self._user_prefix("seller") + str(seller_id)], [item_id, "pos" if positive else "neg"],
            parse=parse)

    def _change(self, session_id, item_id, change, limit, ttl):
        def parse(reply):
            if reply[0] == "low":
                raise StockTooLow(item_id, int(reply[1]))
            if reply[0] == "short":
                raise NotInCart(item_id, int(reply[1]))
            return int(reply[1])
        return self._redis.script(
            lua("market_cart_change"), [self._cart_key(session_id), self._cart_revision],
            [item_id, change, limit, milliseconds(ttl)], durable=True, parse=parse)

    def _copy(self, source, target, ttl_ms):
        return self._redis.script(lua("market_cart_copy"), [source, target, self._cart_revision], [ttl_ms],
                                  durable=True, parse=lambda _: None)
