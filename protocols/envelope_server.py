"""
Twisted server for the JSON envelope: framing, timeouts, ordering, dispatch.

Everything the marketplace services have in common on the wire lives here, so
each service is only a ``dispatch(request) -> Deferred[(session_id, payload)]``
function.  The protocol:

* picks the framing from the connection's first byte and answers in it;
* turns every bad frame into an error reply (``BAD_REQUEST``,
  ``FRAME_TOO_LARGE``) and keeps the connection open;
* answers pipelined requests strictly in order.  By default it also *runs*
  them one at a time, so a pipelining client sees the same effects as one that
  waits for each reply; services whose calls are independent (the DB services
  behind the front ends) raise ``max_in_flight`` to run them concurrently;
* stops reading when too many requests are queued or the peer stops reading
  its replies (producer/consumer), so memory per connection stays bounded;
* closes idle connections, and connections that leave a frame half-sent for
  longer than ``frame_timeout`` (slow-loris), and bounds each request by
  ``request_timeout`` (``TIMEOUT`` reply);
* follows the shared connection discipline (:mod:`protocols.discipline`):
  both timers measure only the client's slowness and wait while the server
  has stopped reading, a half-close is answered in full before the close,
  and closes are orderly.

Counters (all per factory): ``connections``, ``requests``, ``replies``,
``errors.<CODE>``, ``server_errors``, ``idle_timeouts``, ``frame_timeouts``,
``truncated_frames`` (a half-close in the middle of a frame),
``slow_reader_disconnect``, ``abandoned_requests`` (dispatches cancelled
because their client disconnected).
"""

from collections import deque
from time import perf_counter

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from marketplace.metrics import Counters
from protocols.discipline import DEFAULT_MAX_OUTPUT_BUFFER, Discipline, HalfCloseable
from protocols.envelope import EnvelopeError, encode_error, encode_response, parse_request
from protocols.envelope_errors import (
    ApiError,
    FrameTooLarge,
    NotFound,
    ServerError,
    Timeout,
    error_for_code,
)
from protocols.jsonframe import MAX_FRAME_LIMIT, Frame, FrameDecoder, encode_frame

_log = Logger()


def api_router(handlers):
    """
    Build a ``dispatch`` function from ``{api_name: handler(request)}``.

    An api missing from the table is answered with ``404_NOT_FOUND`` naming
    the api, which is the one dispatch rule every service shares.
    """

    def dispatch(request):
        handler = handlers.get(request.api)
        if handler is None:
            raise NotFound(f"unknown api {request.api!r}")
        return handler(request)

    return dispatch


def no_delay(transport):
    """
    Send small frames at once (TCP_NODELAY): a pipelined request or reply
    must not wait for the peer's delayed ACK of the previous one.  Transports
    without the option (TLS wrappers, test doubles) are left as they are.
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class _Slot:
    """One request's place in the reply order; ``reply`` is set when it is ready."""

    __slots__ = ("reply",)

    def __init__(self, reply=None):
        self.reply = reply


@implementer(IPushProducer)
class EnvelopeServerProtocol(HalfCloseable, Protocol):
    """One client connection; the factory holds the configuration."""

    def connectionMade(self):
        factory = self.factory
        factory.counters.increment("connections")
        self._decoder = FrameDecoder(factory.max_frame)
        self._slots = deque()
        self._waiting = deque()  # (slot, request) not yet dispatched
        self._running = set()  # Deferreds of dispatches in progress
        self._closed = False
        self._pumping = False
        self._pump_again = False
        self._peer_host = getattr(self.transport.getPeer(), "host", None)
        self.discipline = Discipline(
            self.transport, factory.reactor, factory.counters, factory.max_output_buffer)
        self._idle_timer = self.discipline.timer(
            factory.idle_timeout, self._idle_timed_out, idle=True)
        self._frame_timer = self.discipline.timer(factory.frame_timeout, self._frame_timed_out)
        self._idle_timer.start()
        self.discipline.register_producer(self)
        no_delay(self.transport)

    @property
    def buffered(self) -> int:
        """Bytes of unfinished frames held for this connection (at most the cap + 4)."""
        return self._decoder.buffered

    def dataReceived(self, data):
        self._idle_timer.start()
        completed = self._decoded(self._decoder.feed(data))
        self._watch_partial_frame(completed)
        self._pump()

    def _decoded(self, events) -> bool:
        """Take decoded events; return whether any completed a frame."""
        completed = False
        for event in events:
            if isinstance(event, Frame):
                completed = True
                self._frame_received(event.data)
            else:
                self._reject(None, None, FrameTooLarge(
                    f"frame exceeds the {event.limit}-byte limit; it was discarded"
                ))
        return completed

    def _frame_received(self, data):
        self.factory.counters.increment("requests")
        try:
            request = parse_request(data, self._peer_host)
        except EnvelopeError as e:
            self._reject(e.api, e.session_id, error_for_code(e.code, e.message))
            return
        slot = _Slot()
        self._slots.append(slot)
        self._waiting.append((slot, request))

    def _reject(self, api, session_id, error):
        """Queue an error reply in order, without dispatching anything."""
        self._slots.append(_Slot(self._encode_error(api, session_id, error)))

    def _start_waiting(self):
        while (
            self._waiting
            and not self.discipline.output_blocked
            and len(self._running) < self.factory.max_in_flight
        ):
            slot, request = self._waiting.popleft()
            self._dispatch(slot, request)

    def _dispatch(self, slot, request):
        """
        Run one request.  Results that are already there (plain values, fired
        Deferreds) skip the timeout machinery: it is only for waits.
        """
        started = perf_counter()
        try:
            result = self.factory.dispatch(request)
        except Exception:
            slot.reply = self._reply_for(request, Failure(), started)
            return
        if not isinstance(result, defer.Deferred):
            slot.reply = self._reply_for(request, result, started)
            return
        self._running.add(result)
        if not result.called:
            result.addTimeout(self.factory.request_timeout, self.factory.reactor)
        result.addBoth(self._settled, slot, request, result, started)

    def _settled(self, outcome, slot, request, d, started):
        self._running.discard(d)
        if self._closed and isinstance(outcome, Failure) and outcome.check(defer.CancelledError):
            # connectionLost cancelled it: the client left, nothing timed
            # out, and no reply is owed to anybody.
            self.factory.counters.increment("abandoned_requests")
            return None
        slot.reply = self._reply_for(request, outcome, started)
        self._pump()

    def _reply_for(self, request, outcome, started):
        """
        The encoded reply for a dispatch result or Failure (encoding can fail
        too), counted by API and outcome (C{OK} or the error code) with its
        latency.
        """
        if not isinstance(outcome, Failure):
            try:
                session_id, payload = outcome
                reply, code = encode_response(request.api, session_id, payload), "OK"
            except Exception:
                outcome = Failure()
        if isinstance(outcome, Failure):
            error = self._error_for(request, outcome)
            reply, code = self._encode_error(request.api, request.session_id, error), error.code
        factory = self.factory
        api = request.api if request.api in factory.apis else "UNKNOWN"
        factory.counters.request(api, code, perf_counter() - started)
        return reply

    def _pump(self):
        """
        Write ready replies, start waiting requests, adjust reading.

        Re-entrant calls (a dispatch that finishes while being started) only
        ask for another round, so pipelined requests never recurse deeply.
        """
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        try:
            self._pump_again = True
            while self._pump_again:
                self._pump_again = False
                self._start_waiting()
                self._flush()
            self._update_reading()
        finally:
            self._pumping = False
        if self.discipline.settle(bool(self._slots or self._waiting or self._running)):
            self._close()

    def input_ended(self):
        """
        The client half-closed: answer every whole request it sent (a last
        line without its newline is one), then close.  A length-prefixed
        frame it left unfinished can never complete.
        """
        self._frame_timer.stop()
        self._decoded(self._decoder.finish())
        if self._decoder.mid_frame:
            self.factory.counters.increment("truncated_frames")
        self._pump()

    def _error_for(self, request, failure):
        if failure.check(ApiError):
            error = failure.value
        elif failure.check(defer.TimeoutError, defer.CancelledError):
            error = Timeout(
                f"{request.api} did not finish within {self.factory.request_timeout:g} s"
            )
        else:
            self.factory.counters.increment("server_errors")
            _log.failure("{api} failed", failure, api=request.api)
            error = ServerError()
        return error

    def _encode_error(self, api, session_id, error):
        self.factory.counters.increment(f"errors.{error.code}")
        return encode_error(api, session_id, error.code, error.message, error.fields)

    def _flush(self):
        """Write every reply that is ready and has no unanswered request before it."""
        framing = self._decoder.framing
        discipline = self.discipline
        while self._slots and self._slots[0].reply is not None:
            reply = self._slots.popleft().reply
            if not (self._closed or discipline.closing):
                self.factory.counters.increment("replies")
                frame = encode_frame(framing, reply)
                self.transport.write(frame)
                discipline.wrote(len(frame))

    def _watch_partial_frame(self, completed):
        """
        Time the frame the client is in the middle of: ``frame_timeout`` runs
        from its first byte, so a frame that follows a completed one gets
        the whole time again (a client streaming frames in small pieces is
        never mid-frame for long, however long it sends).  The timer waits
        while the server is not reading (see the discipline).
        """
        if self._decoder.mid_frame:
            if completed or not self._frame_timer.armed:
                self._frame_timer.start()
        else:
            self._frame_timer.stop()

    def _frame_timed_out(self):
        self.factory.counters.increment("frame_timeouts")
        self._reject(None, None, Timeout(
            f"frame not completed within {self.factory.frame_timeout:g} s; closing"
        ))
        self._flush()
        self._close()

    def _idle_timed_out(self):
        self.factory.counters.increment("idle_timeouts")
        self._close()

    def _close(self):
        """Close in order: the replies written so far are flushed first."""
        self.discipline.close()

    # Flow control: stop reading while the backlog is long or the peer is
    # not reading our replies; resume when both have cleared.
    def _update_reading(self):
        if self._closed:
            return
        self.discipline.stop_reading("backlog", len(self._slots) >= self.factory.max_queued)

    def pauseProducing(self):
        self.discipline.output_paused()

    def resumeProducing(self):
        self.discipline.output_resumed()
        self._pump()

    def stopProducing(self):
        """The transport is closing; ``connectionLost`` does the cleanup."""

    def connectionLost(self, reason):
        self._closed = True
        self.discipline.lost()
        self._waiting.clear()
        for d in list(self._running):
            d.cancel()


class EnvelopeServerFactory(Factory):
    """
    Serves ``dispatch(request) -> Deferred[(session_id_or_None, payload_dict)]``.

    A dispatch failure that is an ``ApiError`` becomes that error reply;
    anything else is logged, counted as ``server_errors`` and answered with
    ``SERVER_ERROR``.  ``counters`` is a ``marketplace.metrics.Counters``
    (a private one when omitted).  Requests are counted there by API:
    names in ``apis`` by their own name, any other as ``UNKNOWN``, so a
    client cannot make up new series.
    """

    protocol = EnvelopeServerProtocol
    apis: frozenset = frozenset()

    def __init__(
        self,
        dispatch,
        counters=None,
        max_frame=1 << 20,
        idle_timeout=300,
        reactor=None,
        *,
        frame_timeout=30.0,
        request_timeout=15.0,
        max_in_flight=1,
        max_queued=64,
        max_output_buffer=DEFAULT_MAX_OUTPUT_BUFFER,
    ):
        if not 0 < max_frame <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame must be in 1..{MAX_FRAME_LIMIT}")
        if counters is None:
            counters = Counters()
        if reactor is None:
            from twisted.internet import reactor
        self.dispatch = dispatch
        self.counters = counters
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.reactor = reactor
        self.frame_timeout = frame_timeout
        self.request_timeout = request_timeout
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.max_output_buffer = max_output_buffer
