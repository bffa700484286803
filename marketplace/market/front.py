"""
What the buyer and seller front ends share: accounts (CreateAccount, Login,
Logout) and the session check every other call starts with.

A front end holds no state of its own: sessions, carts and accounts live in
customer-db, items in product-db.  Any number of front ends can serve the same
users, and one can be restarted at any moment without losing anything.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from marketplace.market import accounts
from marketplace.market.errors import ApiError, ClientError, ServiceUnavailable

#: The ``status`` of a success reply: the existing server's word, which
#: existing clients may compare against.
STATUS_OK = "success"

log = Logger()


class Backend:
    """
    A DB service as a front end sees it: its ``ServiceClient`` plus its name,
    so an outage reaches the client as "product-db is unavailable" without
    revealing internal addresses (the detail goes to the log).
    """

    def __init__(self, name: str, client):
        self.name = name
        self._client = client

    def call(self, api, payload, session_id=None, idempotent=False, encoded=False):
        d = self._client.call(api, payload, session_id=session_id, idempotent=idempotent,
                              encoded=encoded)
        return d.addErrback(self._unavailable, api)

    def _unavailable(self, failure, api):
        failure.trap(ServiceUnavailable)
        log.warn("{service} {api}: {why}", service=self.name, api=api, why=failure.getErrorMessage())
        raise ServiceUnavailable(f"{self.name} is unavailable; try again shortly")

    def close(self):
        return self._client.close()


def payload_of(call):
    """The reply payload of a ``ServiceClient.call`` Deferred."""
    return call.addCallback(lambda reply: reply[1])


def together(first, second):
    """
    Wait for two calls already running side by side; fail with ``first``'s
    error if it fails (a session check runs first), else with ``second``'s.
    """

    def first_done(first_result):
        return second.addCallback(lambda second_result: (first_result, second_result))

    def first_failed(failure):
        second.addErrback(lambda _: None)
        return failure

    return first.addCallbacks(first_done, first_failed)


def shielded(work, what, given_up=None):
    """
    Let a request give up on ``work`` without stopping it.

    The envelope server cancels a request's Deferred when its client
    disconnects or its time is up; cancelling a saga halfway (say between
    reserving the stock and releasing it) would leave the stores
    inconsistent.  The Deferred returned here fails when cancelled -- with
    ``given_up()``, an ``ApiError`` the reply carries instead of a plain
    timeout, or else with ``CancelledError`` -- while ``work`` goes on to its
    end: every call it makes has its own timeout, so it does end.  An outcome
    nobody awaits any more is logged if it is a failure, since no reply will
    carry it.
    """

    def cancel(waiter):
        if given_up is not None:
            waiter.errback(given_up())
        # else cancel() fails the waiter with CancelledError

    waiter = defer.Deferred(cancel)

    def finished(outcome):
        failed = isinstance(outcome, Failure)
        if not waiter.called:
            (waiter.errback if failed else waiter.callback)(outcome)
        elif failed:
            if outcome.check(ApiError):
                log.warn("{what} failed after its caller gave up: {why}",
                         what=what, why=outcome.getErrorMessage())
            else:
                log.failure("{what} failed after its caller gave up", outcome, what=what)
        return None

    work.addBoth(finished)
    return waiter


class AccountCalls:
    """CreateAccount, Login and Logout for one role, over customer-db."""

    def __init__(self, role: str, customer_db, passwords):
        self.role = role
        self._customer_db = customer_db
        self._passwords = passwords
        self._id_field = f"{role}_id"

    def dispatch_table(self) -> dict:
        return {"CreateAccount": self.create_account, "Login": self.login, "Logout": self.logout}

    def user_of(self, request):
        """@return: a Deferred firing with the id of the session's user (role checked)."""
        d = self._customer_db.call("CheckSession", {"role": self.role},
                                   session_id=request.session_id, idempotent=True)
        return d.addCallback(lambda reply: reply[1]["user_id"])

    @defer.inlineCallbacks
    def create_account(self, request):
        name = accounts.username(request.payload)
        password_hash = yield self._passwords.hash(accounts.password(request.payload), request.peer)
        _, reply = yield self._customer_db.call(
            "CreateUser", {"role": self.role, "username": name, "password_hash": password_hash})
        return None, {self._id_field: reply["user_id"]}

    @defer.inlineCallbacks
    def login(self, request):
        """
        A name nobody has costs the same hash work as a wrong password for a
        real account (see ``accounts.Passwords.verify_decoy``), so neither the
        reply nor its timing tells whether the name exists.
        """
        refused = ClientError("wrong user name or password")
        try:
            name = accounts.username(request.payload)
            secret = accounts.password(request.payload)
        except ClientError:
            raise refused from None
        client = request.peer
        try:
            _, credentials = yield self._customer_db.call(
                "GetCredentials", {"role": self.role, "username": name}, idempotent=True)
        except ClientError:
            yield self._passwords.verify_decoy(secret, client)
            raise refused from None
        matches = yield self._passwords.verify(credentials["password_hash"], secret, client)
        if not matches:
            raise refused
        yield self._upgrade(credentials, secret, client)
        session_id, reply = yield self._customer_db.call(
            "OpenSession", {"role": self.role, "user_id": credentials["user_id"]})
        return session_id, {"session_id": session_id, self._id_field: reply["user_id"]}

    @defer.inlineCallbacks
    def _upgrade(self, credentials, secret, client):
        """
        Re-hash a password stored with less work than this front end's cost
        (made with ``--cheap-kdf``, or before the cost was raised), now that
        the password is at hand.  Failing only keeps the old hash.
        """
        if not self._passwords.needs_upgrade(credentials["password_hash"]):
            return
        try:
            stronger = yield self._passwords.hash(secret, client)
            yield self._customer_db.call("UpgradePasswordHash", {
                "role": self.role, "user_id": credentials["user_id"],
                "old_hash": credentials["password_hash"], "password_hash": stronger})
        except ApiError as error:
            log.warn("the password hash of {role} {user_id} stays as it is: {why}",
                     role=self.role, user_id=credentials["user_id"], why=error.message)

    @defer.inlineCallbacks
    def logout(self, request):
        yield self._customer_db.call("CloseSession", {"role": self.role},
                                     session_id=request.session_id)
        return None, {"status": STATUS_OK}
