"""
The trading chatroom's domain logic, free of sockets and framing.

The protocol hands each decoded request to L{TradeChatService.handle} with
the connection's L{ConnectionState}; the result is a Deferred firing with a
plain value (an int balance, a L{LoginReply}, ...) or failing with a
domain or store error that the protocol maps to a status.

All money, login-session and name -> user id state lives in the store
(embedded or Redis), so several worker processes can share it and a restart
keeps every name's id; a money operation's idempotency key is
C{"<login session id>:<req_id>"}, which makes a retried request after a lost
reply return the first outcome instead of moving money twice.
"""

from __future__ import annotations

import os
from typing import Optional

import attrs
from twisted.internet import defer

from marketplace.store import DirectoryFull, SessionNotFound
from marketplace.store.directory_rules import FULL_ID_SPACE, capacity
from marketplace.tradechat.compat import COMPAT_ACCOUNTS, account_of, provision_accounts
from protocols.tradechat_bodies import (
    Balance, ChatSend, Deposit, Heartbeat, Hello, HelloReply, HistoryEntry, JoinRoom,
    LeaveRoom, Login, LoginReply, Logout, Transfer, TxnHistory, Withdraw, login_token,
)
from protocols.tradechat_errors import (
    AlreadyLoggedIn, LoginRefused, NotAMember, NotInRoom, NotLoggedIn,
)

DEFAULT_SESSION_TTL = 300.0
DEFAULT_ANONYMOUS_LEASE = 3600.0
"""Seconds a name without a password keeps its user id after its last use."""
_TOUCH_FRACTION = 0.25
"""A session is refreshed in the store when a quarter of its TTL has passed
since the last refresh, not on every request: enough to keep it alive, cheap
enough for the hot path."""


@attrs.define(eq=False)
class ConnectionState:
    """What the service knows about one connection."""

    target: object
    nonce: Optional[int] = None
    user_id: Optional[int] = None
    name: Optional[str] = None
    session_id: Optional[str] = None
    touched_at: float = 0.0
    #: When the user id's lease was last renewed; None for a permanent id.
    lease_renewed_at: Optional[float] = None
    closed: bool = False

    @property
    def account(self) -> str:
        return account_of(self.user_id)


@attrs.frozen
class TradeChatConfig:
    compat: bool = False
    opening_balance: int = 0
    session_ttl: float = DEFAULT_SESSION_TTL
    #: How long a name without a password keeps its user id unused (a
    #: lease the directory ends unless renewed); names with one keep it for good.
    anonymous_lease: float = DEFAULT_ANONYMOUS_LEASE
    #: The user ids names map into: the profile's accounts with C{compat},
    #: else every u32.
    id_space: int = attrs.field()

    @id_space.default
    def _id_space_of_the_profile(self) -> int:
        return COMPAT_ACCOUNTS if self.compat else FULL_ID_SPACE


class TradeChatService:
    PRE_LOGIN = (Hello, Login, Heartbeat)

    def __init__(self, store, rooms, authenticator, clock,
                 config: TradeChatConfig = TradeChatConfig()) -> None:
        self._sessions = store.sessions
        self._ledger = store.ledger
        self._directory = store.directory
        self._id_space = config.id_space
        # Names without a password may hold every id but those the password
        # accounts need, so that no flood of anonymous logins locks one out.
        self._lease_limit = max(0, capacity(config.id_space) - len(authenticator.credentials))
        self._rooms = rooms
        self._authenticator = authenticator
        self._clock = clock
        self._config = config
        self._ready: defer.Deferred | None = None
        self._handlers = {
            Hello: self._hello, Login: self._login, Logout: self._logout,
            Heartbeat: self._heartbeat, JoinRoom: self._join, LeaveRoom: self._leave,
            ChatSend: self._chat, Deposit: self._deposit, Withdraw: self._withdraw,
            Transfer: self._transfer, Balance: self._balance, TxnHistory: self._history,
        }

    def prepare(self) -> defer.Deferred:
        """
        Open the compatibility profile's accounts (once the store runs).
        Logins wait for this, so no client sees a half-provisioned ledger.
        """
        ready = self._ready
        if ready is None:
            if self._config.compat:
                ready = self._ready = provision_accounts(self._ledger, self._config.opening_balance)
                ready.addErrback(self._unprepared, ready)
            else:
                ready = self._ready = defer.succeed(0)
        waiter = defer.Deferred()
        ready.addBoth(_pass_to, waiter)
        return waiter

    def _unprepared(self, failure, ready: defer.Deferred):
        """
        A store outage during provisioning: every login waiting for it is
        refused with the failure, and the next login tries again.  The
        failure stays the shared Deferred's result so that each waiter's
        L{_pass_to} sees it; the errback added here runs after all of them
        (callbacks added while a Deferred fires go last) and consumes it.
        """
        self._ready = None
        ready.addErrback(lambda _: None)
        return failure

    def connect(self, target) -> ConnectionState:
        return ConnectionState(target)

    def handle(self, state: ConnectionState, request, req_id: int) -> defer.Deferred:
        """Carry out one request; C{req_id} keys money operations' retries."""
        if state.user_id is None and not isinstance(request, self.PRE_LOGIN):
            return defer.fail(NotLoggedIn("log in first"))
        try:
            return self._handlers[type(request)](state, request, req_id)
        except Exception:
            return defer.fail()

    def disconnect(self, state: ConnectionState) -> defer.Deferred:
        """The connection closed: end its login session."""
        state.closed = True
        if state.user_id is None:
            return defer.succeed(None)
        return self._end_login(state)

    # Login ---------------------------------------------------------------

    def _hello(self, state, request: Hello, req_id: int):
        state.nonce = int.from_bytes(os.urandom(8), "big")
        auth = None
        if request.auth_name is not None:
            auth = self._authenticator.params_for(request.auth_name)
        return defer.succeed(HelloReply(state.nonce, auth))

    @defer.inlineCallbacks
    def _login(self, state, request: Login, req_id: int):
        if state.user_id is not None:
            raise AlreadyLoggedIn(f"already logged in as {state.name}")
        nonce, state.nonce = state.nonce, None  # a nonce serves one attempt only
        if nonce is None:
            raise LoginRefused("send HELLO first")
        if request.token != login_token(request.name, nonce):
            raise LoginRefused("wrong login token")
        if not self._authenticator.allows(request.name, nonce, request.proof):
            raise LoginRefused("password proof missing or wrong")
        yield self.prepare()
        leased = not self._authenticator.has_password(request.name)
        user_id = yield self._user_id_for(request.name, leased)
        account = account_of(user_id)
        if not self._config.compat:
            yield self._ledger.open_account(account, self._config.opening_balance)
        session = yield self._sessions.create(
            account, {"name": request.name}, self._config.session_ttl)
        try:
            balance = yield self._ledger.balance(account)
            if state.closed:
                raise LoginRefused("connection closed during login")
        except Exception:
            yield self._sessions.delete(session.session_id)
            raise
        state.user_id = user_id
        state.name = request.name
        state.session_id = session.session_id
        state.touched_at = self._clock.seconds()
        state.lease_renewed_at = state.touched_at if leased else None
        self._rooms.attach(user_id, state.target)
        return LoginReply(user_id, balance)

    def _user_id_for(self, name: str, leased: bool) -> defer.Deferred:
        if not leased:
            return self._directory.user_id_for(name, self._id_space)
        return self._directory.user_id_for(name, self._id_space, self._config.anonymous_lease,
                                           self._lease_limit)

    def _logout(self, state, request: Logout, req_id: int):
        return self._end_login(state).addCallback(lambda _: None)

    def _end_login(self, state) -> defer.Deferred:
        session_id = state.session_id
        self._forget_login(state)
        return self._sessions.delete(session_id)

    def _heartbeat(self, state, request: Heartbeat, req_id: int):
        if state.user_id is None:
            return defer.succeed(None)
        return self._touch(state).addCallback(lambda _: None)

    def _when_fresh(self, state, operation, *args) -> defer.Deferred:
        """
        Run C{operation(*args)} once the login session is known to be alive,
        refreshing it in the store only when it is due.
        """
        if self._clock.seconds() - state.touched_at < self._config.session_ttl * _TOUCH_FRACTION:
            return operation(*args)
        return self._touch(state).addCallback(lambda _: operation(*args))

    def _touch(self, state) -> defer.Deferred:
        def touched(_):
            state.touched_at = now = self._clock.seconds()
            renewed_at = state.lease_renewed_at
            if (renewed_at is not None
                    and now - renewed_at >= self._config.anonymous_lease * _TOUCH_FRACTION):
                return self._renew_lease(state, now)

        def expired(failure):
            failure.trap(SessionNotFound)
            self._forget_login(state)
            raise NotLoggedIn("login session expired")

        return self._sessions.touch(state.session_id).addCallbacks(touched, expired)

    def _renew_lease(self, state, now: float) -> defer.Deferred:
        """
        Keep a logged-in anonymous name's user id: the lease is renewed a
        quarter of it after the last renewal, at the first session touch
        then, long before it can end (the plugin requires the lease to be at
        least twice the session TTL).  Should the id be lost all the same,
        the login ends rather than act on another name's account.
        """
        def renewed(user_id):
            if state.user_id is None:
                return None  # logged out or closed meanwhile
            if user_id != state.user_id:
                return self._lease_lost(state)
            state.lease_renewed_at = now

        def full(failure):
            failure.trap(DirectoryFull)
            return self._lease_lost(state)

        return self._user_id_for(state.name, True).addCallbacks(renewed, full)

    def _lease_lost(self, state) -> defer.Deferred:
        def refused(_):
            raise NotLoggedIn("this name's user id lease ended; log in again")

        return self._end_login(state).addBoth(refused)

    def _forget_login(self, state) -> None:
        self._rooms.detach(state.user_id, state.target)
        state.user_id = state.name = state.session_id = state.lease_renewed_at = None

    # Rooms ---------------------------------------------------------------

    # Room requests go through _when_fresh like money ones: a user who only
    # chats is still using the connection, and its login session (which
    # lives as long as the connection) must not expire under it.

    def _join(self, state, request: JoinRoom, req_id: int):
        return self._when_fresh(state, self._join_now, state.user_id, request.room)

    def _join_now(self, user_id, room):
        return defer.maybeDeferred(self._rooms.join, user_id, room).addCallback(_nothing)

    def _leave(self, state, request: LeaveRoom, req_id: int):
        return self._when_fresh(state, self._leave_now, state.user_id, request.room)

    def _leave_now(self, user_id, room):
        if not self._rooms.leave(user_id, room):
            return defer.fail(NotAMember(f"not in room {room}"))
        return defer.succeed(None)

    def _chat(self, state, request: ChatSend, req_id: int):
        return self._when_fresh(state, self._chat_now, request.room, state.user_id,
                                request.message)

    def _chat_now(self, room, user_id, message):
        if not self._rooms.is_member(user_id, room):
            return defer.fail(NotInRoom(f"not in room {room}"))
        return defer.maybeDeferred(self._rooms.publish, room, user_id, message).addCallback(_nothing)

    # Money ---------------------------------------------------------------

    def _key(self, state, req_id: int) -> str:
        return f"{state.session_id}:{req_id}"

    # Each outcome is kept for one session TTL: a retry after a lost reply
    # comes on the same connection within seconds, and nothing longer-lived
    # needs it (a new login is a new session, so a new key); the ledger holds
    # every outcome until it expires, so a day's worth would grow by
    # hundreds of bytes per money operation for a day.

    def _deposit(self, state, request: Deposit, req_id: int):
        return self._when_fresh(state, self._ledger.deposit, state.account, request.amount,
                                self._key(state, req_id), self._config.session_ttl)

    def _withdraw(self, state, request: Withdraw, req_id: int):
        return self._when_fresh(state, self._ledger.withdraw, state.account, request.amount,
                                self._key(state, req_id), self._config.session_ttl)

    def _transfer(self, state, request: Transfer, req_id: int):
        return self._when_fresh(state, self._ledger.transfer, state.account,
                                account_of(request.to_user_id), request.amount,
                                self._key(state, req_id), self._config.session_ttl)

    def _balance(self, state, request: Balance, req_id: int):
        return self._when_fresh(state, self._ledger.balance, state.account)

    def _history(self, state, request: TxnHistory, req_id: int):
        d = self._when_fresh(state, self._ledger.history, state.account, request.limit,
                             request.before_txn_id or None)
        return d.addCallback(lambda entries: tuple(map(_history_entry, entries)))


def _nothing(_result) -> None:
    return None


def _pass_to(result, waiter: defer.Deferred):
    """Hand a shared Deferred's result, a failure too, to one waiter, keeping it for the next."""
    waiter.callback(result)
    return result


def _history_entry(txn) -> HistoryEntry:
    counterparty = int(txn.counterparty) if txn.counterparty is not None else None
    return HistoryEntry(txn.txn_id, txn.kind, counterparty, txn.amount, txn.balance_after,
                        int(txn.timestamp * 1000))
