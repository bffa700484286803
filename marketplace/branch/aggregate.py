"""
Query many branches at once and report each one's outcome.

Every branch is asked concurrently, and every wait is bounded three ways: the
connect timeout (a branch whose host drops SYNs), the reply timeout (a branch
that accepts and then stays silent or dribbles, or stalls the TLS handshake,
which starts once TCP is connected), and the whole-run timeout
(everything else).  A failing branch never fails the run: it becomes a
L{BranchResult} with a status and a human-readable reason.
"""

import attrs
from twisted.internet import error
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    gatherResults,
    maybeDeferred,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from marketplace.net import connect
from marketplace.terminal import printable
from protocols.branch import MAX_REPLY, REQUEST, ErrorReply, MalformedReply, ReplyParser

from . import mainfile

OK = "ok"
ERROR = "error"
MALFORMED = "malformed"
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"

log = Logger()


def _positive(instance, attribute, value):
    if not value > 0:
        raise ValueError(f"{attribute.name} timeout must be positive, not {value!r}")


@attrs.frozen
class Limits:
    """
    How long to wait, in seconds, and how many reply bytes to accept.
    """

    connect: float = attrs.field(default=3.0, validator=_positive)
    reply: float = attrs.field(default=5.0, validator=_positive)
    run: float = attrs.field(default=10.0, validator=_positive)
    max_reply: int = MAX_REPLY


@attrs.frozen
class BranchResult:
    """
    What happened when one branch endpoint was queried.

    @ivar reply: the L{protocols.branch.BranchReply} when C{status} is
        C{"ok"}, else C{None}.
    """

    endpoint: str
    status: str
    reply: object = None
    reason: str = ""

    @property
    def answered(self):
        return self.status == OK

    def describe(self):
        """
        One line for humans: the endpoint, status and what it said.
        """
        if self.answered:
            return (
                f"{self.endpoint} {OK} branch={self.reply.branch_id} "
                f"records={self.reply.records} subtotal={self.reply.subtotal}"
            )
        return f"{self.endpoint} {self.status} {self.reason}"


class _ConnectionFailed(Exception):
    """
    The connection broke before a single reply byte arrived.
    """


class BranchQueryProtocol(Protocol):
    """
    Send C{REQUEST}, then read the reply until C{END} or the branch closes.

    C{outcome} fires with the decoded reply or fails with
    L{MalformedReply}; cancelling it aborts the connection.
    """

    def __init__(self, max_reply=MAX_REPLY):
        self._parser = ReplyParser(max_size=max_reply)
        self._received = False
        self.outcome = Deferred(canceller=self._abort)

    def connectionMade(self):
        self.transport.write(REQUEST)

    def dataReceived(self, data):
        if self.outcome.called:
            return
        self._received = True
        try:
            reply = self._parser.feed(data)
        except MalformedReply as e:
            self.outcome.errback(e)
            self.transport.abortConnection()
            return
        if reply is not None:
            self.outcome.callback(reply)
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.outcome.called:
            return
        if not self._received and not reason.check(error.ConnectionDone):
            self.outcome.errback(_ConnectionFailed(reason.getErrorMessage()))
            return
        try:
            reply = self._parser.finish()
        except MalformedReply as e:
            self.outcome.errback(e)
        else:
            self.outcome.callback(reply)

    def _abort(self, outcome):
        self.transport.abortConnection()


class _BranchQuery:
    """
    One branch's query, which the run can expire.
    """

    def __init__(self, endpoint, limits, reactor):
        self.endpoint = endpoint
        self._limits = limits
        self._reactor = reactor
        self._protocol = BranchQueryProtocol(limits.max_reply)
        self._connected = False
        self._run_expired = False
        self._pending = None

    def start(self):
        # maybeDeferred: an endpoint string that does not even parse becomes
        # this branch's failure instead of an exception out of the run.
        d = maybeDeferred(
            connect, self.endpoint, self._protocol, self._limits.connect, self._reactor
        )
        d.addCallback(self._await_reply)
        d.addCallbacks(self._replied, self._failed)
        self._pending = d
        return d

    def expire(self):
        """
        The whole-run limit is reached: give up on this branch if it has
        not finished yet.
        """
        self._run_expired = True
        self._pending.cancel()

    def _await_reply(self, protocol):
        self._connected = True
        return protocol.outcome.addTimeout(self._limits.reply, self._reactor)

    def _replied(self, reply):
        if isinstance(reply, ErrorReply):
            return self._result(ERROR, reason=f"branch says: {printable(reply.reason)}")
        return self._result(OK, reply=reply)

    def _failed(self, failure):
        limits = self._limits
        if self._run_expired:
            return self._result(TIMEOUT, f"no reply within the {limits.run:g}s run limit")
        if failure.check(MalformedReply):
            return self._result(MALFORMED, str(failure.value))
        if failure.check(TimeoutError, CancelledError, error.ConnectingCancelledError):
            if self._connected:
                return self._result(TIMEOUT, f"no complete reply within {limits.reply:g}s")
            return self._result(TIMEOUT, f"not connected within {limits.connect:g}s")
        if failure.check(error.ConnectError, _ConnectionFailed):
            return self._result(UNREACHABLE, failure.getErrorMessage())
        log.failure("unexpected failure querying {endpoint}", failure, endpoint=self.endpoint)
        return self._result(UNREACHABLE, f"unexpected error: {failure.getErrorMessage()}")

    def _result(self, status, reason="", reply=None):
        return BranchResult(self.endpoint, status, reply=reply, reason=reason)


def aggregate(endpoints, limits, reactor):
    """
    Query every branch endpoint at once.

    @param endpoints: client endpoint strings (C{tcp:host:port}, C{tls:...}).
    @return: a Deferred that fires, within C{limits.run} seconds plus
        scheduling slack, with one L{BranchResult} per endpoint, in order.
        It never fails because of a branch.
    """
    queries = [_BranchQuery(endpoint, limits, reactor) for endpoint in endpoints]
    collecting = gatherResults([query.start() for query in queries])
    deadline = reactor.callLater(limits.run, _expire_all, queries)

    def stop_deadline(result):
        if deadline.active():
            deadline.cancel()
        return result

    return collecting.addBoth(stop_deadline).addCallback(refuse_shared_ids)


def refuse_shared_ids(results):
    """
    A branch id answered by more than one endpoint in one run is refused for
    all of them: one branch is claiming to be another, and which is genuine
    cannot be told, so none of their rows is written.
    """
    endpoints_by_id = {}
    for result in results:
        if result.answered:
            endpoints_by_id.setdefault(result.reply.branch_id, []).append(result.endpoint)
    refused = []
    for result in results:
        claimants = endpoints_by_id.get(result.reply.branch_id) if result.answered else None
        if claimants is not None and len(claimants) > 1:
            others = ", ".join(e for e in claimants if e != result.endpoint)
            result = BranchResult(
                result.endpoint, MALFORMED,
                reason=f"branch id {result.reply.branch_id!r} also answered by {others}",
            )
        refused.append(result)
    return refused


def _expire_all(queries):
    for query in queries:
        query.expire()


def aggregate_into(main_path, endpoints, limits, lock_timeout, reactor, collected=None):
    """
    Query every branch, then append the answers to C{main_path}.

    The file is written once, after collection, in a worker thread (see
    L{marketplace.branch.mainfile}), so writing never delays a reply.

    @param collected: called with the L{BranchResult}s as soon as every
        branch is settled, before writing, so they are reported even when
        the write fails.
    @return: a Deferred firing with the L{BranchResult}s once the files are
        durable, or failing with L{mainfile.LockTimeout} / C{OSError}.
    """

    def record(results):
        if collected is not None:
            collected(results)
        d = mainfile.record_run(main_path, results, reactor.seconds(), lock_timeout)
        return d.addCallback(lambda _: results)

    return aggregate(endpoints, limits, reactor).addCallback(record)
