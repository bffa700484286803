"""
A Deferred API over one client connection, shared by the interactive
client, the stress tool and the tests.  It speaks only what the spec
defines unless asked (a password adds the auth extension), so it drives the
existing server as well as ours.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer

from marketplace import net
from marketplace.tradechat.auth import derive_client_key, make_proof
from protocols import tradechat_bodies as bodies
from protocols.nsframe import Status
from protocols.tradechat import ResponseError, TradeChatClientProtocol

DEFAULT_REQUEST_TIMEOUT = 10.0


class TradeChatClient:
    def __init__(self, protocol: TradeChatClientProtocol, clock,
                 timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.protocol = protocol
        self._clock = clock
        self.timeout = timeout
        self.user_id: Optional[int] = None

    @classmethod
    def connect(cls, description: str, reactor, timeout: float = DEFAULT_REQUEST_TIMEOUT,
                on_push=None, obfuscate: bool = False, idle_reading: bool = True) -> defer.Deferred:
        """
        Connect to a client endpoint string such as C{tcp:127.0.0.1:9000}
        (C{idle_reading}: see L{TradeChatClientProtocol}).
        """
        protocol = TradeChatClientProtocol(on_push, obfuscate, idle_reading)
        d = net.connect(description, protocol, timeout, reactor)
        return d.addCallback(lambda _: cls(protocol, reactor, timeout))

    def call(self, request, req_id: Optional[int] = None) -> defer.Deferred:
        """Send C{request}; fire with the OK response frame or fail with L{ResponseError}."""
        d = self.protocol.request(request, req_id)
        d.addTimeout(self.timeout, self._clock)
        return d.addCallback(_ok)

    @defer.inlineCallbacks
    def login(self, name: str, password: Optional[str] = None):
        """HELLO then LOGIN; with a password, prove it (the auth extension)."""
        frame = yield self.call(bodies.Hello(name if password is not None else None))
        hello = bodies.decode_hello_reply(frame.body)
        proof = None
        if password is not None:
            if hello.auth is None:
                raise ValueError("the server does not offer password authentication")
            proof = make_proof(derive_client_key(password, hello.auth), name, hello.nonce)
        frame = yield self.call(bodies.Login(name, bodies.login_token(name, hello.nonce), proof))
        reply = bodies.decode_login_reply(frame.body)
        self.user_id = reply.user_id
        return reply

    def logout(self):
        return self.call(bodies.Logout()).addCallback(lambda _: None)

    def heartbeat(self):
        return self.call(bodies.Heartbeat()).addCallback(lambda _: None)

    def join(self, room: int):
        return self.call(bodies.JoinRoom(room)).addCallback(lambda _: None)

    def leave(self, room: int):
        return self.call(bodies.LeaveRoom(room)).addCallback(lambda _: None)

    def say(self, room: int, message: bytes):
        return self.call(bodies.ChatSend(room, message)).addCallback(lambda _: None)

    def deposit(self, amount: int, req_id: Optional[int] = None):
        return self._balance_of(bodies.Deposit(amount), req_id)

    def withdraw(self, amount: int, req_id: Optional[int] = None):
        return self._balance_of(bodies.Withdraw(amount), req_id)

    def transfer(self, to_user_id: int, amount: int, req_id: Optional[int] = None):
        return self._balance_of(bodies.Transfer(to_user_id, amount), req_id)

    def balance(self):
        return self._balance_of(bodies.Balance(), None)

    def history(self, limit: int = bodies.DEFAULT_HISTORY_LIMIT, before_txn_id: int = 0):
        d = self.call(bodies.TxnHistory(limit, before_txn_id))
        return d.addCallback(lambda frame: bodies.decode_history(frame.body))

    def close(self) -> defer.Deferred:
        lost = self.protocol.when_lost()
        if not lost.called:
            self.protocol.close()
        return lost

    def _balance_of(self, request, req_id):
        return self.call(request, req_id).addCallback(lambda frame: bodies.decode_balance(frame.body))


def _ok(frame):
    if frame.status != Status.OK:
        raise ResponseError(frame)
    return frame


def refused_balance(error: ResponseError) -> Optional[int]:
    """The current balance an INSUFFICIENT_FUNDS refusal carries."""
    if error.status == Status.INSUFFICIENT_FUNDS and len(error.frame.body) == 8:
        return bodies.decode_balance(error.frame.body)
    return None
