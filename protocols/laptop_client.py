"""
The customer side of the laptop-order wire as a Twisted protocol: declares
role 0, sends requests (pipelining allowed) and fires one Deferred per reply,
in order.  Works against our replicas and against the existing server.
"""

from collections import deque
from typing import Optional

from twisted.internet import defer, error, protocol
from twisted.python.failure import Failure

from protocols.laptop import (
    CLOSE_CUSTOMER_ID,
    ROLE_CUSTOMER,
    CustomerRequest,
    ProtocolError,
    ReplyDecoder,
    encode_request,
    encode_role,
)
from protocols.laptop_server import set_no_delay

CLOSE_REQUEST = CustomerRequest(CLOSE_CUSTOMER_ID, -1, -1)


class ReplyTimeout(error.ConnectionLost):
    """The oldest request waited longer than the reply timeout; the connection was dropped."""


class CustomerClientProtocol(protocol.Protocol):
    """
    With ``reply_timeout``, a connection whose oldest unanswered request is
    older than that is aborted (its requests fail with ``ReplyTimeout``).  One
    watchdog timer per connection, not one per request: load runs send tens
    of thousands of requests a second.
    """

    def __init__(self, reply_timeout: Optional[float] = None, clock=None):
        self._decoder = ReplyDecoder()
        self._waiting = deque()
        self._sent_at = deque()
        self._reply_timeout = reply_timeout
        self._clock = clock
        self._watchdog = None
        self.connected = False

    def connectionMade(self):
        self.connected = True
        set_no_delay(self.transport)
        self.transport.write(encode_role(ROLE_CUSTOMER))

    def request(self, request: CustomerRequest) -> defer.Deferred:
        """Send one request; fires with its ``OrderReply`` or ``RecordReply``."""
        if not self.connected:
            return defer.fail(error.ConnectionLost("not connected"))
        waiter = defer.Deferred()
        self.send(request, waiter.callback, waiter.errback)
        return waiter

    def send(self, request: CustomerRequest, on_reply, on_failure) -> None:
        """
        ``request`` with plain callbacks instead of a Deferred, for load
        loops that send tens of thousands of requests a second: exactly one
        of ``on_reply(reply)`` and ``on_failure(failure)`` is called.  The
        connection must be up (``connected``).
        """
        self._waiting.append((on_reply, on_failure))
        self._decoder.expect(request.request_type)
        self.transport.write(encode_request(request))
        if self._reply_timeout is not None:
            self._sent_at.append(self._clock.seconds())
            if self._watchdog is None:
                self._watchdog = self._clock.callLater(self._reply_timeout, self._check_overdue)

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._sent_at:
            return
        due = self._sent_at[0] + self._reply_timeout
        if due <= self._clock.seconds():
            self.transport.abortConnection()
            self._fail_all(ReplyTimeout("no reply within %.3g s" % (self._reply_timeout,)))
        else:
            self._watchdog = self._clock.callLater(due - self._clock.seconds(), self._check_overdue)

    def dataReceived(self, data):
        try:
            replies = self._decoder.feed(data)
        except ProtocolError as problem:
            self.transport.abortConnection()
            self._fail_all(error.ConnectionLost(problem.reason))
            return
        waiting = self._waiting
        sent_at = self._sent_at
        for reply in replies:
            if sent_at:
                sent_at.popleft()
            waiting.popleft()[0](reply)

    def close(self) -> None:
        """Ask the server to close, as the existing client does, and hang up."""
        if self.connected:
            self.transport.write(encode_request(CLOSE_REQUEST))
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.connected = False
        self._fail_all(reason)

    def _fail_all(self, reason) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._sent_at.clear()
        waiting, self._waiting = self._waiting, deque()
        if waiting and not isinstance(reason, Failure):
            reason = Failure(reason)
        for _, on_failure in waiting:
            on_failure(reason)
