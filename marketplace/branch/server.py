"""
The branch server's connection handling: framing, timeouts, one reply.

Each connection is independent and nothing in it blocks, so a client that
never sends its request only holds its own connection until the idle
timeout, never anyone else's (the existing server served one client at a
time and a silent one stalled all others).
"""

from time import perf_counter

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from protocols.branch import (
    AmountOutOfRange,
    BranchReply,
    CodecError,
    ErrorReply,
    RequestParser,
    RequestTooLarge,
    encode_reply,
)
from protocols.discipline import Discipline, HalfCloseable

from .csvsource import UnreadableSales

#: What existing aggregators are told when the CSV cannot be read; the
#: details (path, errno) go to the log, not to the network.
UNREADABLE_REASON = "cannot read CSV"

#: What aggregators are told when the subtotal has more digits than a reply
#: may carry (L{protocols.branch.MAX_AMOUNT_DIGITS}).
OUT_OF_RANGE_REASON = "subtotal out of range"


class BranchProtocol(HalfCloseable, Protocol):
    """
    Answer one C{REQUEST} with the branch's totals, then close.

    An unknown request is closed without a byte, as existing servers do.
    The idle timeout covers the whole connection, including waiting for the
    CSV, so a connection can never outlive it.

    Half-closeable: a client that shuts down its sending side after the
    request (C{nc -N}, C{ncat}) still gets the reply, and end-of-file ends
    a request sent without its line end.
    """

    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self._parser = RequestParser(max_size=factory.max_request)
        # Answering or rejecting settles the connection's one request;
        # whatever arrives afterwards, bytes or end-of-file, is ignored.
        self._settled = False
        self._started = 0.0

    def connectionMade(self):
        self.discipline = Discipline(self.transport, self.factory.reactor, self.factory.counters)
        self._idle_timer = self.discipline.timer(self.factory.idle_timeout, self._idle_timed_out)
        self._idle_timer.start()

    def dataReceived(self, data):
        if self._settled:
            return
        try:
            complete = self._parser.feed(data)
        except CodecError as e:
            self._reject(e)
            return
        if complete:
            self._respond()

    def input_ended(self):
        """
        The client will send nothing more but can still read the reply.
        """
        if self._settled:
            return
        try:
            self._parser.finish()
        except CodecError as e:
            self._reject(e)
            return
        self._respond()

    def _respond(self):
        self._settled = True
        self.factory.counters.increment("branch.requests")
        self._started = perf_counter()
        d = self.factory.sales.summary()
        d.addCallback(self._encode)
        d.addErrback(self._encode_error)
        d.addCallback(self._send)

    def _encode(self, summary):
        reply = encode_reply(
            BranchReply(
                branch_id=self.factory.sales.branch_id,
                records=summary.records,
                subtotal=summary.subtotal,
            )
        )
        self._count("ok")
        return reply

    def _encode_error(self, failure):
        """
        Turn any failure to produce the reply into an error reply, so the
        aggregator always gets an answer and the reason is always logged
        (L{BranchSales} has already logged an unreadable file).
        """
        reason = UNREADABLE_REASON
        if failure.check(AmountOutOfRange):
            reason = OUT_OF_RANGE_REASON
            self.log.error(
                "branch {branch_id}: cannot reply: {error}",
                branch_id=self.factory.sales.branch_id,
                error=str(failure.value),
            )
            self.factory.counters.increment("branch.subtotal_out_of_range")
        elif not failure.check(UnreadableSales):
            self.log.failure("branch summary failed", failure)
            self.factory.counters.increment("branch.internal_errors")
        self.factory.counters.increment("branch.error_replies")
        self._count("error")
        return encode_reply(ErrorReply(reason))

    def _count(self, outcome):
        self.factory.counters.request("REQUEST", outcome, perf_counter() - self._started)

    def _send(self, data):
        """
        Write the complete reply bytes and close.  The bytes are built
        before the idle timeout is cancelled, so nothing that can fail runs
        between cancelling it and closing the connection.
        """
        if self.discipline.closing:
            return
        self._idle_timer.stop()
        self.transport.write(data)
        self.discipline.close()

    def _reject(self, error):
        self._settled = True
        kind = "oversize_requests" if isinstance(error, RequestTooLarge) else "bad_requests"
        self.factory.counters.increment(f"branch.{kind}")
        self.log.info(
            "branch {branch_id}: closing {peer}: {error}",
            branch_id=self.factory.sales.branch_id,
            peer=self.transport.getPeer(),
            error=str(error),
        )
        self.discipline.close()

    def _idle_timed_out(self):
        self.factory.counters.increment("branch.idle_timeouts")
        self.discipline.close()

    def connectionLost(self, reason):
        self.connected = False
        self.discipline.lost()


class BranchFactory(Factory):
    """
    Serve one branch: its id and sales source, limits and counters.
    """

    def __init__(self, sales, counters, reactor, idle_timeout=10.0, max_request=127):
        self.sales = sales
        self.counters = counters
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.max_request = max_request

    def buildProtocol(self, addr):
        return BranchProtocol(self)
