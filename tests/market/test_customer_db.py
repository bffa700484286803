"""
customer-db's dispatch without sockets: sessions (timeout, roles), the store
error table, and unknown apis.
"""

from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.market.customer_db import CustomerDbService
from marketplace.market.dbservice import make_dispatch
from marketplace.market.errors import ClientError, Forbidden, InvalidSession, NotFound, ServiceUnavailable
from marketplace.store import StoreError, StoreUnavailable, make_store
from protocols.envelope import Request


class CustomerDbTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.store = make_store("memory", reactor=self.clock)
        service = CustomerDbService(self.store.sessions, self.store.customers, self.clock, session_ttl=10)
        self.dispatch = make_dispatch(service.dispatch_table())

    def call(self, api, payload, session_id=None):
        return self.dispatch(Request(api, session_id, payload))

    @defer.inlineCallbacks
    def login(self, role, name):
        _, user = yield self.call("CreateUser", {"role": role, "username": name, "password_hash": "h"})
        session_id, _ = yield self.call("OpenSession", {"role": role, "user_id": user["user_id"]})
        return session_id

    @defer.inlineCallbacks
    def test_session_ttl_option_and_sliding(self):
        session_id = yield self.login("buyer", "bea")
        self.clock.advance(9)
        yield self.call("CartGet", {}, session_id)
        self.clock.advance(9)
        yield self.call("CartGet", {}, session_id)
        self.clock.advance(10)
        yield self.assertFailure(self.call("CartGet", {}, session_id), InvalidSession)

    @defer.inlineCallbacks
    def test_a_buyers_cart_slides_in_the_same_round_trip_as_the_session_check(self):
        """
        On a networked store each wait is a round trip: the cart's slide is
        asked for with the session check, not after its answer.
        """
        session_id = yield self.login("buyer", "bea")
        pending = defer.Deferred()
        real_touch = self.store.sessions.touch
        self.patch(self.store.sessions, "touch", lambda sid: pending)
        slides = []
        real_slide = self.store.customers.cart_touch
        self.patch(self.store.customers, "cart_touch",
                   lambda sid, ttl: slides.append(sid) or real_slide(sid, ttl))
        reply = self.call("CartGet", {}, session_id)
        self.assertEqual(slides, [session_id])
        real_touch(session_id).chainDeferred(pending)
        _, payload = yield reply
        self.assertEqual(payload["cart"], [])

    @defer.inlineCallbacks
    def test_roles_are_checked(self):
        seller_session = yield self.login("seller", "sam")
        yield self.assertFailure(self.call("CartGet", {}, seller_session), Forbidden)
        yield self.assertFailure(self.call("CheckSession", {"role": "buyer"}, seller_session), Forbidden)
        yield self.assertFailure(self.call("CheckSession", {"role": "root"}, seller_session), ClientError)
        _, reply = yield self.call("CheckSession", {"role": "seller"}, seller_session)
        self.assertEqual(reply, {"user_id": 1})
        yield self.assertFailure(self.call("CheckSession", {"role": "seller"}), InvalidSession)

    @defer.inlineCallbacks
    def test_malformed_session_ids_never_reach_the_store(self):
        touched = []
        self.patch(self.store.sessions, "touch", lambda session_id: touched.append(session_id))
        for sent in ("user:buyer:1", "session:user:buyer:1", "a" * 44, "a" * 42 + "!"):
            yield self.assertFailure(self.call("CartGet", {}, sent), InvalidSession)
            yield self.assertFailure(self.call("CheckSession", {"role": "seller"}, sent),
                                     InvalidSession)
        self.assertEqual(touched, [])

    @defer.inlineCallbacks
    def test_sessions_of_unknown_users_are_refused(self):
        yield self.assertFailure(self.call("OpenSession", {"role": "buyer", "user_id": 7}), ClientError)

    @defer.inlineCallbacks
    def test_unknown_api_and_bad_payloads(self):
        yield self.assertFailure(self.call("DropTables", {}), NotFound)
        session_id = yield self.login("buyer", "bea")
        error = yield self.assertFailure(
            self.call("RecordPurchase", {"purchase_id": "p", "lines": [["x"]]}, session_id), ClientError)
        self.assertIn("lines", error.message)

    @defer.inlineCallbacks
    def test_an_owed_purchase_is_recorded_without_a_session_once(self):
        session_id = yield self.login("buyer", "bea")
        yield self.call("CartAdd", {"item_id": 7, "quantity": 2, "limit": 5}, session_id)
        owed = {"buyer_id": 1, "purchase_id": "buyer-1:k", "lines": [[7, 3, 2, 150]]}
        _, reply = yield self.call("RecordOwedPurchase", owed)
        self.assertEqual(reply, {"recorded": True})
        _, reply = yield self.call("RecordOwedPurchase", owed)
        self.assertEqual(reply, {"recorded": False})
        _, reply = yield self.call("RecordPurchase", {key: owed[key] for key in ("purchase_id", "lines")},
                                   session_id)
        self.assertEqual(reply, {"recorded": False, "user_id": 1})
        _, history = yield self.call("GetPurchases", {}, session_id)
        self.assertEqual([(p["purchase_id"], p["item_id"], p["quantity"]) for p in history["items"]],
                         [("buyer-1:k", 7, 2)])
        for payload, field in [({**owed, "buyer_id": 0}, "buyer_id"),
                               ({**owed, "lines": [[7, 3]]}, "lines"),
                               ({"buyer_id": 1, "lines": []}, "purchase_id")]:
            error = yield self.assertFailure(self.call("RecordOwedPurchase", payload), ClientError)
            self.assertIn(field, error.message)

    def test_a_store_error_is_left_to_the_server_to_log_once(self):
        def broken(*args):
            return defer.fail(StoreError("WRONGTYPE Operation against a key"))
        self.patch(self.store.customers, "credentials", broken)
        self.failureResultOf(self.call("GetCredentials", {"role": "buyer", "username": "bea"}),
                             StoreError)
        self.assertEqual(self.flushLoggedErrors(StoreError), [])

    @defer.inlineCallbacks
    def test_store_unavailable_is_service_unavailable(self):
        def down(*args):
            return defer.fail(StoreUnavailable("Redis did not answer"))
        self.patch(self.store.customers, "credentials", down)
        error = yield self.assertFailure(
            self.call("GetCredentials", {"role": "buyer", "username": "bea"}), ServiceUnavailable)
        self.assertIn("Redis did not answer", error.message)
