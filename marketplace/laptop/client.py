"""
``laptop-client``: the load client, argument- and output-compatible with the
existing C++ client, plus failover across several replicas, latency
percentiles, a progress line and ``--verify``.

    laptop-client 127.0.0.1 8080 8 1000 1 -r 127.0.0.1:8081 -r 127.0.0.1:8082 --verify

Types: 1 places orders 0..N-1 for every customer (one connection each);
2 reads every customer's own record N times; 3 reads ids 0..N-1 on one
connection.  The last line on stdout is the existing client's
``avg: <us>\\tmin: <us>\\tmax: <us>\\tthroughput: <ops/s>``; percentiles come on the
line before it, progress goes to stderr.
"""

import getopt
import sys
from typing import List, Optional, Sequence

import attrs
from twisted.internet import defer, error, task
from twisted.python import usage
from twisted.python.failure import Failure

from marketplace.latency import LatencyCounts, new_histogram
from marketplace.laptop.history import History
from marketplace.net import connect
from marketplace.options import ProgramOptions, parse_command_line, positive_float
from protocols.laptop import (
    TYPE_LOCAL_READ,
    TYPE_ORDER,
    TYPE_READ,
    CustomerRequest,
)
from protocols.laptop_client import CustomerClientProtocol

TYPE_BULK_READ = 3


class ReplyFailed(Exception):
    """The replica answered with the failure form; another replica may do better."""


@attrs.frozen
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Address":
        host, separator, port = text.rpartition(":")
        if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host, int(port))

    @property
    def endpoint(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class FailoverSession:
    """
    One customer's connection to the cluster.  A request that fails (failure
    reply, timeout, dropped connection) is sent again, to the next replica,
    until ``deadline`` seconds have passed since it was first sent; orders
    are idempotent, so a resend never places one twice.
    """

    def __init__(self, addresses: Sequence[Address], first: int, reactor, timeout=2.0,
                 deadline=15.0, retry_delay=0.1):
        self.addresses = list(addresses)
        self._index = first % len(self.addresses)
        self._reactor = reactor
        self._timeout = timeout
        self._deadline = deadline
        self._retry_delay = retry_delay
        self._connection: Optional[CustomerClientProtocol] = None
        self.failovers = 0

    @property
    def address(self) -> Address:
        return self.addresses[self._index]

    def _connected(self) -> defer.Deferred:
        d = connect(self.address.endpoint, CustomerClientProtocol(self._timeout, self._reactor),
                    self._timeout, self._reactor)

        def keep(connection):
            self._connection = connection
            return connection

        return d.addCallback(keep)

    def request(self, request: CustomerRequest) -> defer.Deferred:
        """Fires with the reply, or fails once the deadline has passed."""
        return self._attempt(request, self._reactor.seconds())

    def _attempt(self, request, started) -> defer.Deferred:
        connection = self._connection
        if connection is not None and connection.connected:
            d = connection.request(request)
        else:
            d = self._connected().addCallback(lambda connection: connection.request(request))
        d.addCallback(self._check)
        d.addErrback(self._failed_over, request, started)
        return d

    def submit(self, request: CustomerRequest, started: float, on_reply, on_failure) -> None:
        """
        ``request`` with plain callbacks: exactly one of ``on_reply(reply)``
        and ``on_failure(failure)`` is called.  While the connection is up
        and replies succeed no Deferred is made; any failure takes
        ``request``'s failover path, with ``started`` as the first send.
        """
        connection = self._connection
        if connection is None or not connection.connected:
            self._attempt(request, started).addCallbacks(on_reply, on_failure)
            return

        def replied(reply):
            if reply.failed:
                recover(Failure(ReplyFailed(reply)))
            else:
                on_reply(reply)

        def recover(failure):
            d = defer.fail(failure)
            d.addErrback(self._failed_over, request, started)
            d.addCallbacks(on_reply, on_failure)

        connection.send(request, replied, recover)

    @staticmethod
    def _check(reply):
        if reply.failed:
            raise ReplyFailed(reply)
        return reply

    def _failed_over(self, failure, request, started):
        failure.trap(ReplyFailed, defer.TimeoutError, error.ConnectError, error.ConnectionLost,
                     error.ConnectionDone, error.TimeoutError, defer.CancelledError)
        self.drop()
        if self._reactor.seconds() - started >= self._deadline:
            return failure
        self.failovers += 1
        self._index = (self._index + 1) % len(self.addresses)
        return task.deferLater(self._reactor, self._retry_delay, self._attempt, request, started)

    def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.connected:
            connection.transport.abortConnection()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class Latencies:
    """
    Microsecond latencies: exact count, average, min and max; percentiles
    from an HDR histogram, into which the counted values go only when a
    percentile is asked for (L{marketplace.latency} says why).
    """

    def __init__(self):
        self._pending = LatencyCounts()
        self._histogram = new_histogram()
        self.count = 0
        self.total = 0
        self.low: Optional[int] = None
        self.high = 0

    def record(self, microseconds: int) -> None:
        value = self._pending.record(microseconds)
        self.count += 1
        self.total += value
        if value > self.high:
            self.high = value
        if self.low is None or value < self.low:
            self.low = value

    def percentile(self, p: float) -> int:
        if not self.count:
            return 0
        self._pending.fill(self._histogram)
        return self._histogram.get_value_at_percentile(p)

    @property
    def average(self) -> float:
        return self.total / self.count if self.count else 0.0


@attrs.frozen
class RunSummary:
    latencies: Latencies
    elapsed: float
    failed: int
    failovers: int

    @property
    def throughput(self) -> float:
        return self.latencies.count / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> List[str]:
        lat = self.latencies
        return [
            "p50: %d\tp95: %d\tp99: %d\tfailed: %d\tfailovers: %d"
            % (lat.percentile(50), lat.percentile(95), lat.percentile(99), self.failed,
               self.failovers),
            "avg: %.2f\tmin: %d\tmax: %d\tthroughput: %.2f"
            % (lat.average, lat.low or 0, lat.high, self.throughput),
        ]


class LoadRun:
    """The existing client's workload, driven by callbacks (no thread per customer)."""

    def __init__(self, addresses, customers: int, orders: int, request_type: int, reactor,
                 timeout=2.0, deadline=15.0, spread=False, history: Optional[History] = None,
                 first_order: int = 0):
        self.addresses = list(addresses)
        self.customers = customers
        self.orders = orders
        self.request_type = request_type
        self.reactor = reactor
        self.timeout = timeout
        self.deadline = deadline
        self.spread = spread
        self.history = history
        self.first_order = first_order
        self.latencies = Latencies()
        self.failed = 0
        self.done = 0
        self.sessions: List[FailoverSession] = []
        self._stopping = False

    def stop(self) -> None:
        """Finish after the requests in flight (for open-ended runs)."""
        self._stopping = True

    @property
    def total(self) -> int:
        if self.request_type == TYPE_BULK_READ:
            return self.orders
        return self.customers * self.orders

    def run(self) -> defer.Deferred:
        started = self.reactor.seconds()
        if self.request_type == TYPE_BULK_READ:
            loops = [self._loop(0, [CustomerRequest(i, -1, TYPE_READ) for i in range(self.orders)])]
        else:
            loops = [self._loop(c, self._requests_of(c)) for c in range(self.customers)]
        d = defer.gatherResults(loops, consumeErrors=True)
        d.addCallback(lambda _: RunSummary(
            self.latencies, self.reactor.seconds() - started, self.failed,
            sum(session.failovers for session in self.sessions)))
        return d

    def _requests_of(self, customer: int):
        if self.request_type == TYPE_ORDER:
            first = self.first_order
            return (CustomerRequest(customer, n, TYPE_ORDER) for n in range(first, first + self.orders))
        return (CustomerRequest(customer, -1, self.request_type) for _ in range(self.orders))

    def _loop(self, customer: int, requests) -> defer.Deferred:
        first = customer if self.spread else 0
        session = FailoverSession(self.addresses, first, self.reactor, self.timeout, self.deadline)
        self.sessions.append(session)
        finished = defer.Deferred()
        requests = iter(requests)
        seconds = self.reactor.seconds
        # One request in flight per customer (the existing client's closed
        # loop), so the one being answered is always ``current``.
        current = [None, 0.0]

        def send_next():
            request = None if self._stopping else next(requests, None)
            if request is None:
                session.close()
                finished.callback(None)
                return
            sent = seconds()
            current[0] = request
            current[1] = sent
            session.submit(request, sent, answered, failed)

        def answered(reply):
            now = seconds()
            request, sent = current
            self.latencies.record(int((now - sent) * 1_000_000))
            self.done += 1
            self._record(request, reply, sent, now, True)
            send_next()

        def failed(failure):
            request, sent = current
            self.failed += 1
            self.done += 1
            self._record(request, None, sent, seconds(), False)
            send_next()

        send_next()
        return finished

    def _record(self, request, reply, start, end, ok) -> None:
        if self.history is None:
            return
        if request.request_type == TYPE_ORDER:
            self.history.order(request.customer_id, request.order_number, start, end, ok)
        elif ok:
            value = reply.last_order if reply.customer_id >= 0 else None
            self.history.read(request.customer_id, value, start, end)


@attrs.frozen
class Verification:
    #: customer -> {address: last order or None}, for customers replicas disagree on
    disagreements: dict
    unreachable: tuple

    @property
    def ok(self) -> bool:
        return not self.disagreements and not self.unreachable

    def lines(self) -> List[str]:
        lines = [f"verify: replica {address} unreachable" for address in self.unreachable]
        for customer, values in sorted(self.disagreements.items()):
            seen = ", ".join(f"{address} -> {value}" for address, value in values.items())
            lines.append(f"verify: customer {customer} differs: {seen}")
        lines.append("verify: %s" % ("all replicas agree" if self.ok else "DISAGREEMENT"))
        return lines


@defer.inlineCallbacks
def read_replica(address: Address, customers: int, reactor, timeout=2.0):
    """Every customer's record as this one replica holds it (pipelined local reads)."""
    connection = yield connect(address.endpoint, CustomerClientProtocol(), timeout, reactor)
    try:
        replies = yield defer.gatherResults(
            [connection.request(CustomerRequest(c, -1, TYPE_LOCAL_READ)) for c in range(customers)],
            consumeErrors=True,
        ).addTimeout(timeout + customers / 10_000, reactor)
    finally:
        connection.close()
    return {c: (r.last_order if r.customer_id >= 0 else None) for c, r in zip(range(customers), replies)}


@defer.inlineCallbacks
def verify(addresses: Sequence[Address], customers: int, reactor, timeout=2.0, settle=3.0):
    """
    Compare every customer's record on every replica.  Backups learn that an
    entry is committed one heartbeat after the primary, so disagreement is
    re-checked until ``settle`` seconds have passed before it is reported.
    """
    started = reactor.seconds()
    while True:
        results = yield defer.DeferredList(
            [read_replica(address, customers, reactor, timeout) for address in addresses],
            consumeErrors=True,
        )
        books = {str(a): r for a, (ok, r) in zip(addresses, results) if ok}
        unreachable = tuple(str(a) for a, (ok, _) in zip(addresses, results) if not ok)
        disagreements = {}
        for c in range(customers):
            values = {address: book[c] for address, book in books.items()}
            if len(set(values.values())) > 1:
                disagreements[c] = values
        outcome = Verification(disagreements, unreachable)
        if outcome.ok or reactor.seconds() - started >= settle:
            return outcome
        yield task.deferLater(reactor, 0.2, lambda: None)


class Options(ProgramOptions):
    synopsis = "[options] <host> <port> <customers> <orders> <type>"
    longdesc = __doc__
    optParameters = [
        ["timeout", "t", 2.0, "Seconds to wait for one reply before failing over.", positive_float],
        ["deadline", None, 15.0,
         "Seconds one request may keep failing over before it counts as failed.", positive_float],
        ["progress", None, 1.0, "Seconds between progress lines on stderr (0: none).", float],
        ["first-order", None, 0,
         "Type 1: number each customer's orders from this one on.  Order numbers at or below "
         "a customer's recorded one are repeats, applied once and answered without replication, "
         "so repeated load runs against one cluster need a higher start each time.", int],
    ]
    optFlags = [
        ["verify", None, "Afterwards, read every customer from every replica and report "
                         "any disagreement (exit status 1)."],
        ["spread", None, "Start customer i on replica i mod R instead of all on the first."],
    ]

    def __init__(self):
        super().__init__()
        self["replicas"] = []

    def parseOptions(self, options=None):
        """Accept options after the existing client's positional arguments too."""
        argv = sys.argv[1:] if options is None else list(options)
        try:
            found, positional = getopt.gnu_getopt(argv, self.shortOpt, self.longOpt)
        except getopt.GetoptError as problem:
            raise usage.UsageError(str(problem)) from None
        ordered = []
        for option, value in found:
            if option.startswith("--"):
                ordered.append(f"{option}={value}" if value else option)
            else:
                ordered.extend([option, value] if value else [option])
        super().parseOptions(ordered + ["--"] + positional)

    def opt_replica(self, value: str) -> None:
        """Another replica to fail over to, as HOST:PORT; repeat for each."""
        try:
            self["replicas"].append(Address.parse(value))
        except ValueError as problem:
            raise usage.UsageError(f"--replica: {problem}") from None

    opt_r = opt_replica

    def parseArgs(self, host, port, customers, orders, request_type):
        try:
            self["addresses"] = [Address.parse(f"{host}:{port}")] + self["replicas"]
            self["customers"] = int(customers)
            self["orders"] = int(orders)
            self["type"] = int(request_type)
        except ValueError as problem:
            raise usage.UsageError(str(problem)) from None
        if self["customers"] < 0 or self["orders"] < 0:
            raise usage.UsageError("customers and orders must not be negative")
        if self["first-order"] < 0:
            raise usage.UsageError("--first-order must not be negative")
        if self["type"] not in (TYPE_ORDER, TYPE_READ, TYPE_BULK_READ):
            raise usage.UsageError("type must be 1 (orders), 2 (reads) or 3 (bulk read)")


def _progress(run: LoadRun, reactor, out, last: list):
    now = reactor.seconds()
    rate = (run.done - last[0]) / (now - last[1]) if last[1] else 0.0
    last[:] = [run.done, now]
    out.write("progress: %d/%d requests, %.0f/s, %d failed\n" % (run.done, run.total, rate, run.failed))
    out.flush()


@defer.inlineCallbacks
def _main(reactor, options, out, err):
    run = LoadRun(options["addresses"], options["customers"], options["orders"], options["type"],
                  reactor, timeout=options["timeout"], deadline=options["deadline"],
                  spread=options["spread"], first_order=options["first-order"])
    ticker = None
    if options["progress"] > 0:
        ticker = task.LoopingCall(_progress, run, reactor, err, [0, 0.0])
        ticker.clock = reactor
        ticker.start(options["progress"], now=False)
    try:
        summary = yield run.run()
    finally:
        if ticker is not None:
            ticker.stop()
    status = 0 if summary.failed == 0 else 1
    verify_lines = []
    if options["verify"]:
        outcome = yield verify(options["addresses"], options["customers"], reactor,
                               timeout=options["timeout"])
        verify_lines = outcome.lines()
        status = status or (0 if outcome.ok else 1)
    for line in verify_lines + summary.lines():
        out.write(line + "\n")
    out.flush()
    return status


def main(argv=None) -> None:
    options = parse_command_line(Options(), argv)

    def run(reactor):
        return _main(reactor, options, sys.stdout, sys.stderr).addCallback(_exit_with)

    task.react(run)


def _exit_with(status):
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
