"""
Twisted protocols for the trading chatroom over NS frames.

L{TradeChatServerProtocol} does framing, timeouts, flow control and
dispatch only: bytes go through L{FrameDecoder}, bodies through
L{tradechat_bodies}, requests to the service, and outcomes back through one
table mapping results and errors to statuses.

Output goes through an L{ImmediateWriter}: on plain TCP it is sent at
once while nothing waits in the transport, with the protocol registered as
the transport's producer so that the writer learns when output backs up
and when it has drained.  While output is backed up the connection stops
reading requests, and if pushes from other users keep arriving past
C{max_output_buffer} bytes the peer is not reading: it is disconnected
rather than allowed to grow server memory without limit.  The sum over all
connections is bounded too: every connection reports what it has queued to
the factory's L{OutputBudget}, which drops the readers with the most queued
once the sum passes C{max_total_output}.

Replies and chat pushes are queued in the connection's C{outbox} (pushes by
the room hub) and the outbox is flushed once per reactor turn by the
factory's L{TurnFlusher}, in one write, in the order its frames were
produced.

L{TradeChatClientProtocol} matches responses to requests by req_id and hands
pushes to a callback; clients, the stress tool and the tests share it.
"""

from __future__ import annotations

import itertools
from collections import deque
from time import perf_counter
from typing import Callable, Optional

from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from marketplace.metrics import Counters
from marketplace.store import (
    BalanceOverflow, DirectoryFull, InsufficientFunds, InvalidAmount, SelfTransfer,
    SessionNotFound, StoreUnavailable, UnknownAccount,
)
from protocols import tradechat_bodies as bodies
from protocols.discipline import Discipline, HalfCloseable
from protocols.immediate import ImmediateWriter
from protocols.nsframe import (
    DEFAULT_MAX_FRAME_SIZE, FLAG_COMPRESSED, FLAG_OBFUSCATED, FLAG_RESPONSE, ChecksumMismatch, Frame,
    FrameDecoder, FrameError, Opcode, Status, encode_frame, encode_response,
)
from protocols.outputbudget import OutputBudget
from protocols.tradechat_errors import (
    AlreadyLoggedIn, LoginRefused, NotAMember, NotInRoom, NotLoggedIn,
)
from protocols.turns import TurnFlusher

DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_LOGIN_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT_BUFFER = 4 * 1024 * 1024
DEFAULT_MAX_TOTAL_OUTPUT = 64 * 1024 * 1024
"""Output queued to all connections together before the slowest readers are dropped."""
CLOSE_TIMEOUT = 5.0
CLOSE_GRACE = 10.0
"""Seconds a closing connection may take to flush before it is aborted."""
MAX_QUEUED_REQUESTS = 256
"""Pipelined requests held per connection before it stops reading more."""


def _empty(_result) -> bytes:
    return b""


RESPONSE_ENCODERS: dict[int, Callable[[object], bytes]] = {
    Opcode.HELLO: bodies.encode_hello_reply,
    Opcode.LOGIN: bodies.encode_login_reply,
    Opcode.LOGOUT: _empty,
    Opcode.HEARTBEAT: _empty,
    Opcode.JOIN_ROOM: _empty,
    Opcode.LEAVE_ROOM: _empty,
    Opcode.CHAT_SEND: _empty,
    Opcode.DEPOSIT: bodies.encode_balance,
    Opcode.WITHDRAW: bodies.encode_balance,
    Opcode.TRANSFER: bodies.encode_balance,
    Opcode.BALANCE: bodies.encode_balance,
    Opcode.TXN_HISTORY: bodies.encode_history,
}

ERROR_STATUSES: tuple[tuple[type, Status, str], ...] = (
    (InsufficientFunds, Status.INSUFFICIENT_FUNDS, "insufficient_funds"),
    (NotLoggedIn, Status.UNAUTHORIZED, "unauthorized"),
    (LoginRefused, Status.UNAUTHORIZED, "login_refused"),
    (SessionNotFound, Status.UNAUTHORIZED, "session_expired"),
    (NotInRoom, Status.UNAUTHORIZED, "chat_not_member"),
    (AlreadyLoggedIn, Status.BAD_PACKET, "already_logged_in"),
    (UnknownAccount, Status.NOT_FOUND, "unknown_account"),
    (NotAMember, Status.NOT_FOUND, "not_a_member"),
    (SelfTransfer, Status.SELF_TRANSFER, "self_transfer"),
    (BalanceOverflow, Status.LIMIT_EXCEEDED, "balance_overflow"),
    (InvalidAmount, Status.LIMIT_EXCEEDED, "invalid_amount"),
    (DirectoryFull, Status.SERVER_BUSY, "directory_full"),
    (StoreUnavailable, Status.SERVER_BUSY, "store_unavailable"),
    (defer.TimeoutError, Status.TIMEOUT, "timeout"),
)
"""Domain and store errors -> wire status and counter name.  Anything else is
INTERNAL (and logged)."""


_PRE_LOGIN = frozenset({Opcode.HELLO, Opcode.LOGIN, Opcode.HEARTBEAT})
"""The only opcodes answered before login."""

_LOGIN_CHANGES = frozenset({Opcode.LOGIN, Opcode.LOGOUT})
"""Opcodes whose success starts or ends a login (and its deadline)."""

_API_NAMES = {opcode.value: opcode.name for opcode in Opcode}
"""Opcode -> the C{api} label of its requests in the metrics (C{UNKNOWN} if none)."""


def error_status(error: BaseException) -> tuple[Status, str, bytes]:
    """The status, counter name and body answering C{error}."""
    for kind, status, counter in ERROR_STATUSES:
        if isinstance(error, kind):
            body = bodies.encode_balance(error.balance) if kind is InsufficientFunds else b""
            return status, counter, body
    return Status.INTERNAL, "internal_error", b""


def _no_delay(transport) -> None:
    """
    Send small frames at once: with Nagle's algorithm a reply waits for the
    ACK of the previous one, which the peer delays by up to 40 ms.
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


@implementer(IPushProducer, IPullProducer)
class TradeChatServerProtocol(HalfCloseable, Protocol):
    """
    One chat connection, run by the shared discipline
    (L{protocols.discipline}): the idle timer waits while reading is
    stopped, and a half-close is answered in full before the close.
    """

    log = Logger()

    def __init__(self, factory: "TradeChatServerFactory") -> None:
        self.factory = factory
        self.counters = factory.counters
        self.callLater = factory.clock.callLater
        self._decoder = FrameDecoder(factory.max_frame_size)
        self._queue: deque[Frame] = deque()
        self._busy = False
        self._started = 0.0  # when the request being answered was taken up
        self._draining = False
        self._reading_paused = False
        self._writer: ImmediateWriter | None = None
        self._login_deadline = None
        self._abort_timer = None
        self._closing = False
        self._finishing = False
        self._input_failed = False
        self.state = None
        self.outbox: list[bytes] = []
        self._flush_me = (self.flush,)

    # Connection lifecycle --------------------------------------------------

    def connectionMade(self) -> None:
        _no_delay(self.transport)
        self.state = self.factory.service.connect(self)
        self._writer = ImmediateWriter(self.transport)
        self._writer.register_producer(self)
        self.discipline = Discipline(self.transport, self.factory.clock, self.counters)
        self._idle_timer = self.discipline.timer(
            self.factory.idle_timeout, self._idle_timed_out, idle=True)
        self._idle_timer.start()
        self._arm_login_deadline()
        self.counters.increment("connections")
        self.factory.connections.add(self)

    def connectionLost(self, reason=None) -> None:
        self._closing = True
        self.discipline.lost()
        for timer in (self._login_deadline, self._abort_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._queue.clear()
        self.outbox.clear()
        self.factory.output_budget.forget(self)
        ended = self.factory.service.disconnect(self.state)
        ended.addErrback(self._session_not_ended)
        self.factory.connection_ended(self, ended)
        # What the peer never read is still in the transport, up to the
        # output caps.  This protocol sits in reference cycles (its state,
        # its timers) that only the cyclic collector frees, and until then
        # it would keep the transport and those buffers alive: let go of
        # them now, so that dropping a reader frees its output at once.
        self.transport = self._writer = None

    def _session_not_ended(self, failure) -> None:
        """The store could not delete the session: it expires by its TTL instead."""
        self.counters.increment("session_end_failed")
        self.log.warn("could not end a login session (it will expire): {error}",
                      error=failure.getErrorMessage())

    def _idle_timed_out(self) -> None:
        self.counters.increment("idle_timeout")
        self._close()

    def _arm_login_deadline(self) -> None:
        """
        Give the connection C{login_timeout} seconds to log in, unless that
        clock already runs: on connecting, and again after LOGOUT or an
        expired session, so no connection stays open unauthenticated.
        """
        if self._login_deadline is None or not self._login_deadline.active():
            self._login_deadline = self.callLater(self.factory.login_timeout, self._login_expired)

    def _login_expired(self) -> None:
        if self.state.user_id is None:
            self.counters.increment("login_timeout")
            self._close()

    def _close(self, limited: bool = True) -> None:
        """
        Close after flushing what is already written.  A close the server
        imposes (C{limited}: a timeout, bad framing) aborts if the peer does
        not read within L{CLOSE_GRACE} seconds: a stuck peer must not keep
        a closing connection forever.  The close that answers a half-close
        waits for the client however slowly it reads its replies.
        Closing twice (a timeout firing during a close) does nothing more.
        """
        if self._closing:
            return
        self.flush()
        self._closing = True
        self._writer.release()
        self.discipline.close()
        if limited:
            self._abort_timer = self.callLater(CLOSE_GRACE, self.transport.abortConnection)

    def finish(self) -> None:
        """
        Shut down gently: read no more, answer the requests already read,
        then close as L{_close} does.
        """
        self._finishing = True
        self._drain()

    # Input -----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._input_failed:
            return
        self._idle_timer.start()
        decoder = self._decoder
        try:
            decoder.receive(data)
            while (frame := decoder.next_frame()) is not None:
                self._queue.append(frame)
        except FrameError as error:
            # Requests before the bad frame are still answered, in order.
            self._input_failed = True
            self._queue.append(error)
        self._drain()

    def _drain(self) -> None:
        """Handle queued requests in order, one at a time per connection."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and not self._busy and not self._closing:
                item = self._queue.popleft()
                if isinstance(item, FrameError):
                    self._reject_stream(item)
                    break
                self._busy = True
                self._handle(item)
        finally:
            self._draining = False
        if self._finishing and not self._busy and not self._queue:
            self._close()
            return
        self._update_reading()
        if self.discipline.settle(bool(self._queue or self._busy)):
            self._close(limited=False)

    def input_ended(self) -> None:
        """
        The client half-closed: answer every whole request it sent (L{_drain}
        closes once they are), then close.  A frame it left unfinished can
        never complete.
        """
        if self._decoder.buffered:
            self.counters.increment("truncated_frames")
        self._drain()

    def _request_done(self) -> None:
        self._busy = False
        self._drain()

    def _reject_stream(self, error: FrameError) -> None:
        """Malformed framing: answer a checksum failure, then close either way."""
        self.counters.increment(error.counter_name)
        if isinstance(error, ChecksumMismatch):
            self._write(encode_frame(error.opcode, error.req_id, Status.CHECKSUM_FAIL,
                                     b"", FLAG_RESPONSE))
        self._close()

    def _handle(self, frame: Frame) -> None:
        """
        Answer one request, then go on with the next.  Refusals that need no
        service are written at once; the rest is answered by L{_answer}, the
        single callback on the service's Deferred (which the embedded store
        has usually fired already, so the answer is written right here).
        """
        self._started = perf_counter()
        if self.state.user_id is None and frame.opcode not in _PRE_LOGIN:
            # The wire format: before login anything but HELLO, LOGIN and HEARTBEAT
            # (unknown opcodes included) gets UNAUTHORIZED, whatever its body.
            self._refuse(frame, Status.UNAUTHORIZED, "unauthorized")
        elif frame.flags & FLAG_COMPRESSED:
            self._refuse(frame, Status.BAD_PACKET, "compressed_unsupported")
        else:
            try:
                request = bodies.decode_request(frame.opcode, frame.body)
            except bodies.UnknownOpcode:
                self._refuse(frame, Status.BAD_PACKET, "unknown_opcode")
            except bodies.BadBody:
                self._refuse(frame, Status.BAD_PACKET, "bad_body")
            else:
                self.factory.service.handle(self.state, request, frame.req_id).addBoth(
                    self._answer, frame)
                return
        self._request_done()

    def _answer(self, result, frame: Frame) -> None:
        try:
            if isinstance(result, Failure):
                self._failed(result, frame)
            else:
                self._succeeded(result, frame)
        except Exception:
            # A reply that cannot be encoded (a value outside its wire field)
            # is a server fault: the client must still get an answer, or it
            # waits for this req_id forever.  Encoding comes before writing,
            # so nothing of the failed reply was written.
            self.log.failure("answering request {opcode:#06x} failed", opcode=frame.opcode)
            self._refuse(frame, Status.INTERNAL, "internal_error")
        self._request_done()

    def _succeeded(self, result, frame: Frame) -> None:
        if frame.opcode in _LOGIN_CHANGES:
            if frame.opcode == Opcode.LOGIN:
                if self._login_deadline.active():
                    self._login_deadline.cancel()
            else:
                self._arm_login_deadline()
        self._respond(frame, Status.OK, RESPONSE_ENCODERS[frame.opcode](result))

    def _failed(self, failure, frame: Frame) -> None:
        status, counter, body = error_status(failure.value)
        if status is Status.UNAUTHORIZED and self.state.user_id is None:
            # Possibly an expired login session (or a refused LOGIN, where
            # the deadline still runs and this does nothing).
            self._arm_login_deadline()
        if status is Status.INTERNAL:
            self.log.failure("request {opcode:#06x} failed", failure, opcode=frame.opcode)
        self._refuse(frame, status, counter, body)

    def _refuse(self, frame: Frame, status: Status, counter: str, body: bytes = b"") -> None:
        self.counters.increment(counter)
        self._respond(frame, status, body)

    def _respond(self, frame: Frame, status: Status, body: bytes) -> None:
        """Write the one answer to C{frame}, counted by opcode and status with its latency."""
        data = encode_response(frame, status, body)
        self.counters.request(_API_NAMES.get(frame.opcode, "UNKNOWN"), status.name,
                              perf_counter() - self._started)
        self._write(data)

    # Output and flow control -----------------------------------------------

    def _write(self, data: bytes) -> None:
        """
        Queue encoded frames (a reply or a refusal) behind the pushes already
        queued for this connection, to be written with them at the end of
        the turn.
        """
        self.outbox.append(data)
        self.factory.flusher.schedule(self._flush_me)

    def flush(self) -> None:
        """
        L{IPushTarget.flush}: write the outbox in one write and empty it,
        unless closing; drop a reader that stopped reading.
        """
        outbox = self.outbox
        if not outbox:
            return
        data = b"".join(outbox)
        outbox.clear()
        if self._closing:
            return
        writer = self._writer
        writer.write(data)
        if writer.paused:
            if writer.backlog > self.factory.max_output_buffer:
                self.discipline.drop_slow_reader(writer.backlog, self._drop)
                return
            self._update_reading()
        self.factory.output_budget.update(self, writer.queued)

    def shed_output(self) -> None:
        """The process holds too much output and this reader the most of it: drop it."""
        self.counters.increment("output_budget_disconnect")
        self._drop()

    def _drop(self) -> None:
        """Abort at once: what the transport holds for this peer is freed now."""
        self._closing = True
        self.outbox.clear()
        self.factory.output_budget.forget(self)
        self.transport.abortConnection()

    def pauseProducing(self) -> None:
        """Streaming producer: the transport's buffer is full."""
        self._writer.pause()
        self._update_reading()
        self.factory.output_budget.update(self, self._writer.queued)

    def resumeProducing(self) -> None:
        """The transport's buffer drained (pull or streaming producer alike)."""
        self._writer.drained()
        self._update_reading()
        self.factory.output_budget.update(self, 0)

    def stopProducing(self) -> None:
        self._closing = True

    def _update_reading(self) -> None:
        """Stop reading requests while output is stuck or too many are queued."""
        if self._closing:
            return
        should_pause = (self._writer.paused or len(self._queue) >= MAX_QUEUED_REQUESTS
                        or self._finishing)
        if should_pause == self._reading_paused:
            return
        self._reading_paused = should_pause
        self.discipline.stop_reading("backpressure", should_pause)


class TradeChatServerFactory(Factory):
    def __init__(
        self,
        service,
        clock,
        counters: Optional[Counters] = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        login_timeout: float = DEFAULT_LOGIN_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_output_buffer: int = DEFAULT_MAX_OUTPUT_BUFFER,
        flusher: Optional[TurnFlusher] = None,
        max_connections: Optional[int] = None,
        max_total_output: int = DEFAULT_MAX_TOTAL_OUTPUT,
    ) -> None:
        self.service = service
        self.clock = clock
        self.flusher = TurnFlusher(clock) if flusher is None else flusher
        self.counters = Counters() if counters is None else counters
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.max_frame_size = max_frame_size
        self.max_output_buffer = max_output_buffer
        self.max_connections = max_connections
        self.output_budget = OutputBudget(max_total_output)
        self.connections: set[TradeChatServerProtocol] = set()
        self._cleanups: set[defer.Deferred] = set()
        self._idle_waiters: list[defer.Deferred] = []

    def buildProtocol(self, addr):
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            self.counters.increment("server_busy")
            return ServerBusyProtocol(self)
        return TradeChatServerProtocol(self)

    def connection_ended(self, protocol, cleanup: defer.Deferred) -> None:
        """C{protocol} closed; C{cleanup} fires once its login session is ended."""
        self.connections.discard(protocol)
        if not cleanup.called:
            self._cleanups.add(cleanup)
            cleanup.addBoth(self._cleanup_done, cleanup)
        self._notify_if_idle()

    def _cleanup_done(self, result, cleanup: defer.Deferred):
        self._cleanups.discard(cleanup)
        self._notify_if_idle()
        return result

    def close_connections(self) -> defer.Deferred:
        """
        Close every connection once the requests it has sent are answered,
        and wait until their login sessions are ended, so that a shutdown
        leaves no session behind while the store still runs.  Connections
        still open after L{CLOSE_TIMEOUT} seconds are aborted.
        """
        waiter = defer.Deferred()
        self._idle_waiters.append(waiter)
        for protocol in list(self.connections):
            protocol.finish()
        self._notify_if_idle()
        return waiter.addTimeout(CLOSE_TIMEOUT, self.clock, onTimeoutCancel=self._abort_remaining)

    def _abort_remaining(self, result, timeout):
        for protocol in list(self.connections):
            protocol.transport.abortConnection()
        return Failure(defer.TimeoutError(
            f"connections still open {timeout}s into the shutdown were aborted"))

    def _notify_if_idle(self) -> None:
        if self.connections or self._cleanups or not self._idle_waiters:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)


class ServerBusyProtocol(Protocol):
    """
    A connection past the factory's C{max_connections}: its first request is
    answered C{SERVER_BUSY} and the connection closed; the connections
    already served are not touched.  A peer that sends nothing within
    L{CLOSE_TIMEOUT} seconds, or sends no valid frame, is just closed.
    """

    def __init__(self, factory: TradeChatServerFactory) -> None:
        self._clock = factory.clock
        self._decoder = FrameDecoder(factory.max_frame_size)
        self._timer = None

    def connectionMade(self) -> None:
        self._timer = self._clock.callLater(CLOSE_TIMEOUT, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if self.transport.disconnecting:
            return
        try:
            self._decoder.receive(data)
            frame = self._decoder.next_frame()
        except FrameError:
            self.transport.abortConnection()
            return
        if frame is not None:
            self.transport.write(encode_response(frame, Status.SERVER_BUSY, b""))
            self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()


# Client side ----------------------------------------------------------------

def code_name(codes, value: int) -> str:
    """The name of an L{Opcode} or L{Status} value, or its hex for unknown ones."""
    try:
        return codes(value).name
    except ValueError:
        return f"{value:#06x}"


class ResponseError(Exception):
    """A response with a status other than OK."""

    def __init__(self, frame: Frame) -> None:
        super().__init__(
            f"{code_name(Opcode, frame.opcode)} refused: {code_name(Status, frame.status)}")
        self.frame = frame
        self.status = frame.status


@implementer(IPushProducer, IPullProducer)
class TradeChatClientProtocol(Protocol):
    """
    Sends requests and matches responses by req_id.  Requests are written
    through an L{ImmediateWriter}, so on plain TCP each leaves at once.

    C{on_push} receives each L{bodies.ChatBroadcast} as it arrives; leave it
    C{None} to count pushes without checksumming, copying or decoding them
    (the stress tool, whose every connection receives every chat, does so:
    decoding hundreds of thousands of pushes a second was its bottleneck).

    With C{idle_reading=False}, a connection with no request pending stops
    being read once pushes arrive on it, as the existing stress client reads
    a connection only while it waits there for a reply: pushes arriving in
    between wait in the socket and come in with the next reply, in one read
    instead of one read per server write.  (A connection that gets no pushes
    keeps reading: pausing and resuming it would cost the reactor two
    registration changes per request for nothing.)  A connection closed by
    the server meanwhile is noticed at its next request.
    """

    def __init__(self, on_push: Optional[Callable[[bodies.ChatBroadcast], None]] = None,
                 obfuscate: bool = False, idle_reading: bool = True) -> None:
        self.on_push = on_push
        self.obfuscate = obfuscate
        self.idle_reading = idle_reading
        self._reading = True
        self._pushes_decoded = 0
        self._decoder = FrameDecoder(
            skip_opcode=Opcode.CHAT_BROADCAST if on_push is None else None)
        # req_id -> called with the response Frame, or with a Failure if
        # the connection closes first.
        self._waiting: dict[int, Callable[[object], None]] = {}
        self._req_ids = itertools.count(1)
        self._lost_waiters: Optional[list[defer.Deferred]] = []
        self._writer: Optional[ImmediateWriter] = None
        #: why the connection closed (a TLS failure, say), once it has
        self.lost_reason: Optional[Failure] = None

    @property
    def closed(self) -> bool:
        return self._lost_waiters is None

    @property
    def pushes_received(self) -> int:
        """Pushes received so far, whether handed to C{on_push} or only counted."""
        return self._pushes_decoded + self._decoder.skipped

    def when_lost(self) -> defer.Deferred:
        """A Deferred firing once the connection is closed."""
        if self._lost_waiters is None:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._lost_waiters.append(waiter)
        return waiter

    def connectionMade(self) -> None:
        _no_delay(self.transport)
        self._writer = ImmediateWriter(self.transport)
        self._writer.register_producer(self)

    def pauseProducing(self) -> None:
        self._writer.pause()

    def resumeProducing(self) -> None:
        self._writer.drained()

    def stopProducing(self) -> None:
        """The connection is lost: L{connectionLost} does the rest."""

    def close(self) -> None:
        """Close the connection once what is written has been sent."""
        self._writer.release()
        self.transport.loseConnection()

    def request(self, request, req_id: Optional[int] = None) -> defer.Deferred:
        """
        Send a request value; fire with the response L{Frame} (any status).
        A caller reusing a req_id (a retry) must wait for the first reply.
        Cancelling the Deferred forgets the request.
        """
        d = defer.Deferred(lambda _: self.forget(sent_id))

        def settle(outcome) -> None:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

        sent_id = self.send(request, settle, req_id)
        return d

    def send(self, request, on_response: Callable[[object], None],
             req_id: Optional[int] = None) -> int:
        """
        Send a request value and return its req_id; C{on_response} is called
        with the response L{Frame} (any status), or with a L{Failure} if the
        connection closes first, and must not raise.  L{request} without the
        Deferred: the stress tool's closed loops send hundreds of thousands a
        second, and a Deferred's callback machinery was a noticeable part of
        each.
        """
        opcode, body = bodies.encode_request(request)
        if req_id is None:
            req_id = next(self._req_ids)
        self._waiting[req_id] = on_response
        flags = FLAG_OBFUSCATED if self.obfuscate else 0
        self._writer.write(encode_frame(opcode, req_id, 0, body, flags))
        if not self._reading:
            self._reading = True
            self.transport.resumeProducing()
        return req_id

    def forget(self, req_id: int) -> None:
        """Stop waiting for the response to C{req_id}; a late one is ignored."""
        self._waiting.pop(req_id, None)

    def dataReceived(self, data: bytes) -> None:
        decoder = self._decoder
        # pushes_received, inlined: this runs for every read of every connection.
        pushes_before = self._pushes_decoded + decoder.skipped
        try:
            decoder.receive(data)
            while (frame := decoder.next_frame()) is not None:
                if frame.is_response:
                    on_response = self._waiting.pop(frame.req_id, None)
                    if on_response is not None:
                        on_response(frame)
                elif frame.opcode == Opcode.CHAT_BROADCAST and self.on_push is not None:
                    self._pushes_decoded += 1
                    self.on_push(bodies.decode_chat_broadcast(frame.body))
        except (FrameError, bodies.BadBody):
            self.transport.abortConnection()
            return
        if (not (self.idle_reading or self._waiting)
                and self._pushes_decoded + decoder.skipped != pushes_before):
            self._reading = False
            self.transport.pauseProducing()

    def connectionLost(self, reason=None) -> None:
        self.lost_reason = reason
        waiting, self._waiting = self._waiting, {}
        for on_response in waiting.values():
            on_response(Failure(ConnectionLost("the connection closed with this request pending")))
        lost_waiters, self._lost_waiters = self._lost_waiters, None
        for waiter in lost_waiters:
            waiter.callback(None)
