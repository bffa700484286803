# -*- test-case-name: tests.test_discipline,tests.test_connection_contract -*-
"""
The connection discipline every server protocol shares.

Each thin server protocol owns one L{Discipline} for its connection and
leaves these rules to it, so that every server behaves alike towards its
clients:

* B{Reading} stops while any of the protocol's reasons to stop holds (its
  client does not read its replies, too many requests are queued) and
  resumes once none does, or never again once the client's input has ended.
* B{Client timers} (L{ClientTimer}: idle, half-sent request) measure the
  client's slowness only.  While the server itself has stopped reading they
  are suspended, and they go on with the time they had left once it reads
  again: a client that pipelines whole requests and reads its replies
  slowly is never cut off while replies are owed to it.  An idle timer
  also waits while the server owes replies (a slow store is not an idle
  client).
* B{End of input}: a half-close from the client (C{shutdown(SHUT_WR)},
  C{nc -N}) means "no more requests".  Everything received is answered and
  then the connection is closed; the protocol, which alone knows what it
  still owes, reports through L{Discipline.settle}.
* B{Closes are orderly}: L{Discipline.close} sends FIN once the output is
  flushed.  Only abuse limits abort (L{Discipline.abort}), and the one limit
  a slow reader can hit is the output bound (L{Discipline.wrote}), counted
  and logged.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from zope.interface import implementer

#: Bytes a connection may have written while its client is not reading
#: (since the transport last asked us to pause) before it is dropped.
DEFAULT_MAX_OUTPUT_BUFFER = 4 * 1024 * 1024

_log = Logger()


class ClientTimer:
    """
    A countdown of the client's slowness on one connection: it runs only
    while the server reads from that client.

    L{start} (re)arms the full period, L{stop} disarms it; the owning
    L{Discipline} suspends and resumes it as reading stops and starts, and
    an idle one as replies become owed and are answered: once per request
    on a closed-loop connection.  So suspending keeps the reactor's call
    and notes the time left, and resuming moves the call out by the pause
    (a later time costs the reactor nothing until the call comes due),
    instead of a cancelled call and a new one per request; a call that
    comes due while suspended only keeps its time left.
    """

    __slots__ = ("seconds", "idle", "_clock", "_expired", "_call", "_left", "_suspended")

    def __init__(self, clock, seconds: float | None, expired, idle: bool = False):
        self.seconds = seconds
        #: an idle timer also waits while replies are owed
        self.idle = idle
        self._clock = clock
        self._expired = expired
        self._call = None
        #: seconds left while armed and suspended
        self._left = None
        self._suspended = False

    @property
    def armed(self) -> bool:
        """Counting down, or suspended with time left."""
        return self._call is not None or self._left is not None

    def start(self) -> None:
        """Arm the full period again (a no-op for a timer without one)."""
        if self.seconds is None:
            return
        if self._suspended:
            self._left = self.seconds
        elif self._call is not None:
            self._call.reset(self.seconds)
        else:
            self._call = self._clock.callLater(self.seconds, self._fire)

    def stop(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self._left = None

    def suspend(self) -> None:
        if self._suspended:
            return
        self._suspended = True
        if self._call is not None:
            self._left = max(0.0, self._call.getTime() - self._clock.seconds())

    def resume(self) -> None:
        if not self._suspended:
            return
        self._suspended = False
        left = self._left
        if left is not None:
            self._left = None
            if self._call is not None:
                self._call.reset(left)
            else:
                self._call = self._clock.callLater(left, self._fire)

    def _fire(self) -> None:
        self._call = None
        if not self._suspended:
            self._expired()


class Discipline:
    """
    One server connection's reading, client timers, end of input and close.

    @param transport: the connection's transport.
    @param clock: an C{IReactorTime} for the timers.
    @param counters: a L{marketplace.metrics.Counters}-like object with
        C{increment(name)}; L{abort} and the output bound count there.
    @param max_output_buffer: bytes L{wrote} lets pile up while the client
        is not reading before the connection is dropped.
    """

    def __init__(self, transport, clock, counters, max_output_buffer=DEFAULT_MAX_OUTPUT_BUFFER):
        self.transport = transport
        self.counters = counters
        self.max_output_buffer = max_output_buffer
        self._clock = clock
        self._timers: list[ClientTimer] = []
        self._stops: set[str] = set()
        self._reading_stopped = False
        #: the protocol owes the client replies (L{settle})
        self._owed = False
        #: bytes written since the transport last said its buffer was full
        self._unread = 0
        self.output_blocked = False
        self.input_ended = False
        self.closing = False
        self._aborted = False
        self._registered = False

    def register_producer(self, producer, streaming: bool = True) -> None:
        """
        Register C{producer} (the protocol) as the transport's producer:
        streaming, or (C{streaming=False}) a pull producer, as a protocol
        that writes at once registers itself (L{protocols.immediate}).
        """
        self.transport.registerProducer(producer, streaming)
        self._registered = True

    # Timers ------------------------------------------------------------------

    def timer(self, seconds: float | None, expired, *, idle: bool = False) -> ClientTimer:
        """
        A new L{ClientTimer} of C{seconds} (C{None}: never) this connection
        suspends while it does not read, and, for an C{idle} one, while
        replies are owed.
        """
        timer = ClientTimer(self._clock, seconds, expired, idle)
        self._timers.append(timer)
        self._apply(timer)
        return timer

    def _apply(self, timer: ClientTimer) -> None:
        if self._reading_stopped or (timer.idle and self._owed):
            timer.suspend()
        else:
            timer.resume()

    def _stop_timers(self) -> None:
        for timer in self._timers:
            timer.stop()

    # Reading -----------------------------------------------------------------

    def stop_reading(self, reason: str, stop: bool = True) -> None:
        """
        Stop reading for C{reason} (C{stop=False}: C{reason} no longer
        holds, and reading resumes once no other reason does).
        """
        if stop:
            self._stops.add(reason)
        else:
            self._stops.discard(reason)
        self._update_reading()

    def _update_reading(self) -> None:
        should_stop = bool(self._stops) or self.input_ended or self.closing
        if should_stop == self._reading_stopped:
            return
        self._reading_stopped = should_stop
        if should_stop:
            if not (self.input_ended or self.closing):
                self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()
        for timer in self._timers:
            self._apply(timer)

    # Output ------------------------------------------------------------------

    def output_paused(self) -> None:
        """The transport's buffer is full: the client is not reading; stop reading it."""
        self.output_blocked = True
        self.stop_reading("output")

    def output_resumed(self) -> None:
        """The transport's buffer drained."""
        self.output_blocked = False
        self._unread = 0
        self.stop_reading("output", False)

    def wrote(self, size: int) -> bool:
        """
        Account C{size} bytes written.  While the client is not reading,
        more than C{max_output_buffer} of them drop it (counted as
        C{slow_reader_disconnect} and logged); return C{False} if so.
        """
        if not self.output_blocked:
            return True
        self._unread += size
        if self._unread <= self.max_output_buffer:
            return True
        self.drop_slow_reader(self._unread)
        return False

    def drop_slow_reader(self, unread: int, drop=None) -> None:
        """
        The output bound: a client that left C{unread} bytes unread past the
        limit is dropped, counted as C{slow_reader_disconnect} and logged.
        C{drop} is the protocol's own way to drop it (one that also frees
        what it queued); without one the connection is aborted.
        """
        _log.info("dropping {peer}: it does not read what is sent to it ({size} bytes unread)",
                  peer=self.transport.getPeer(), size=unread)
        if drop is None:
            self.abort("slow_reader_disconnect")
        else:
            self.counters.increment("slow_reader_disconnect")
            drop()

    # End of input and close ---------------------------------------------------

    def end_input(self) -> bool:
        """
        The client half-closed: it sends no more requests.  Its timers stop
        (there is nothing left to wait for from it) and reading stays off.
        Return C{True} the first time only (the transport may report the
        end more than once).
        """
        if self.input_ended:
            return False
        self.input_ended = True
        self._stop_timers()
        self._update_reading()
        return True

    def shutdown(self) -> bool:
        """
        The server is stopping: read nothing more and end the input as a
        half-close would, so that what was read is answered before the
        close.  Return C{True} if this ended the input (C{False}: it had
        ended, or the connection is closing, already).
        """
        if self.input_ended or self.closing:
            return False
        if not self._reading_stopped:
            self.transport.pauseProducing()
        return self.end_input()

    def settle(self, owed: bool) -> bool:
        """
        The protocol's report after it took or answered requests: C{owed}
        says whether any reply is still due.  Return C{True} once the input
        has ended and nothing is due: the protocol closes then (L{close},
        after whatever it still batches for writing).
        """
        if owed != self._owed:
            self._owed = owed
            for timer in self._timers:
                if timer.idle:
                    self._apply(timer)
        return self.input_ended and not owed

    def close(self) -> None:
        """
        Close in order: what is written is flushed, then FIN.  The producer
        L{register_producer} registered is unregistered first, or the
        transport would wait for it instead of closing.
        """
        if self.closing:
            return
        self.closing = True
        self._stop_timers()
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def abort(self, counter: str) -> None:
        """Drop the connection at once, for an abuse limit: counted as C{counter}."""
        if self._aborted or self.transport is None:
            return
        self._aborted = True
        self.counters.increment(counter)
        self.closing = True
        self._stop_timers()
        self.transport.abortConnection()

    def lost(self) -> None:
        """
        The connection is gone: no timer may fire for it any more, and the
        transport (with whatever output it still holds) is let go at once.
        """
        self.closing = True
        self.output_blocked = False
        self._stop_timers()
        self.transport = None


@implementer(IHalfCloseableProtocol)
class HalfCloseable:
    """
    Mixin for a server protocol with a C{discipline}: the transport reports
    the client's end of input here instead of closing, and the protocol's
    C{input_ended()} answers what it has; L{Discipline.settle} says when
    nothing more is owed and the protocol may close.
    """

    def readConnectionLost(self):
        if self.discipline.end_input():
            self.input_ended()

    def shutdown(self):
        """The server is stopping: answer what was read, then close, as after a half-close."""
        if self.discipline.shutdown():
            self.input_ended()

    def writeConnectionLost(self):
        """Our own side closed: nothing to do, the close that follows is ours."""
