"""
The store's domain interfaces.

Services depend on these, never on a backend: the embedded and the Redis
implementations pass one contract suite (``tests/store``), so a service
behaves the same on either.  Every method returns a ``Deferred``; a backend
that cannot answer within its timeout fails it with ``StoreUnavailable``.
"""

from zope.interface import Attribute, Interface


class ISessionStore(Interface):
    """Login sessions with a sliding inactivity timeout."""

    def create(user_id, data=None, ttl=None):
        """
        Open a session for ``user_id`` carrying ``data`` (str to str).

        @return: a Deferred firing with a L{Session} whose id is unguessable.
        """

    def touch(session_id):
        """
        Look a session up and restart its inactivity timeout.

        @return: a Deferred firing with the L{Session}, or failing with
            L{SessionNotFound} when it is unknown or expired.
        """

    def delete(session_id):
        """@return: a Deferred firing with whether a live session was removed."""

    def sessions_of(user_id):
        """@return: a Deferred firing with the user's live sessions."""


class ILedger(Interface):
    """
    Accounts with integer balances.

    Each operation is atomic; a balance never goes below zero nor above
    C{MAX_BALANCE}.  Operations that take an ``idempotency_key`` apply once:
    repeating the key within ``idempotency_ttl`` seconds (a day when not
    given) returns the first outcome (result or error).  The outcome is
    forgotten after that, so the lifetime bounds the memory outcomes take.
    """

    def open_account(account, opening_balance=0):
        """@return: a Deferred firing True if created, False if it existed."""

    def balance(account):
        """@return: a Deferred firing with the balance."""

    def deposit(account, amount, idempotency_key=None, idempotency_ttl=None):
        """@return: a Deferred firing with the new balance."""

    def withdraw(account, amount, idempotency_key=None, idempotency_ttl=None):
        """@return: a Deferred firing with the new balance."""

    def transfer(source, target, amount, idempotency_key=None, idempotency_ttl=None):
        """@return: a Deferred firing with the source's new balance."""

    def history(account, limit=50, before=None):
        """
        @return: a Deferred firing with up to ``limit`` L{Transaction}s,
            newest first, with ids below ``before`` when it is given.
        """

    def audit():
        """@return: a Deferred firing with an L{AuditReport} of the whole ledger."""


class IDirectory(Interface):
    """
    Login names to u32 user ids, the same for every process on the store
    and across restarts (the rule is in L{marketplace.store.directory_rules}).

    Each id space (``1..2**32``) is a directory of its own: a name claimed in
    one has no bearing on another.
    """

    def user_id_for(name, id_space, lease=None, lease_limit=None):
        """
        The id of ``name`` in ``id_space``, claiming the first free id from
        the name's home slot on first use (atomically: concurrent claims of
        different names never get one id).

        Without ``lease`` the claim is permanent.  With ``lease`` (seconds)
        it is leased: it ends ``lease`` seconds after this call unless a
        later leased call renews it, and once ended the id is free for any
        name.  With ``lease_limit``, a new leased claim is refused when that
        many leased claims are live in the id space.  The rules are in
        L{marketplace.store.directory_rules}.

        @return: a Deferred firing with the id, or failing with
            L{DirectoryFull} when a new name finds every id taken (or every
            id leased names may have).
        """


class IStore(Interface):
    """A backend: an C{IService} offering one object per domain."""

    url = Attribute("The store URL this backend was built from.")
    sessions = Attribute("An L{ISessionStore}.")
    ledger = Attribute("An L{ILedger}.")
    directory = Attribute("An L{IDirectory}.")
    customers = Attribute(
        "An L{marketplace.store.market_interfaces.ICustomerStore}: the marketplace's "
        "buyers and sellers, carts and purchases.")
    catalog = Attribute(
        "An L{marketplace.store.market_interfaces.ICatalogStore}: the marketplace's "
        "items, stock and search index.")
