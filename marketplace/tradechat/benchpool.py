"""
C{tradechat-bench --processes N}: the load spread over N processes.

One Python process cannot both keep a few dozen requests in flight and
count the pushes of every chat arriving on every connection: it saturates a
core before the server does.  The parent starts N children (this module run
as a script); each drives its share of the in-flight workers and of the
connections (L{Bench} with C{share}), and they talk to the parent in JSON
lines over their standard input and output:

    child -> parent   {"kind": "ready"}                    all logged in, room joined
    parent -> child   go                                   every child is ready
    child -> parent   {"kind": "tick", ...}                each second: encoded interval histogram
    child -> parent   {"kind": "result", ...}              counts, encoded histogram, ledger
    parent -> child   check
    child -> parent   {"kind": "balances", ...}            BALANCE of each of its accounts
    parent closes the child's stdin                        the child disconnects and exits

The start is a barrier, so no transfer reaches an account before its owner
has read the opening balance.  HDR histograms are merged with their
encode/decode/add operations, and counts and ledgers are summed, so the
report and the conservation check are exactly those of one big process.
"""

from __future__ import annotations

import itertools
import json
import os
import sys

from hdrh.histogram import HdrHistogram
from twisted.internet import defer, protocol, stdio, task
from twisted.protocols.basic import LineOnlyReceiver

from marketplace.net import describe_connection_failure
from marketplace.tradechat.bench import (
    Bench, Ledger, Options, Results, install_reactor, judge_conservation, keys_from_json,
    keys_to_json, report, show_progress, timeline_point,
)

SETUP_GRACE = 30.0
"""Seconds allowed beyond the request timeouts for a child to start, connect,
log in and report."""


class LoadProcessFailed(Exception):
    """A load process ended or stalled before finishing its part."""


class LoadPool:
    """The parent: starts the children, keeps them in step, merges what they report."""

    def __init__(self, reactor, options, argv, out=sys.stdout, progress=sys.stderr) -> None:
        self.reactor = reactor
        self.options = options
        self.argv = list(argv)
        self.out = out
        self.progress = progress
        self.results = Results()
        self._children: list[_Child] = []
        self._seconds: dict[int, list] = {}
        self._latest: dict[int, dict] = {}

    @defer.inlineCallbacks
    def run(self):
        """Fire with whether assets were conserved, after printing the merged report."""
        options = self.options
        count = options["processes"]
        timeout = options["timeout"]
        self._children = [_Child(self, index) for index in range(count)]
        for index, child in enumerate(self._children):
            self.reactor.spawnProcess(
                child, sys.executable,
                [sys.executable, "-m", __name__, str(index), str(count), *self.argv],
                env=_child_environment(), childFDs={0: "w", 1: "r", 2: 2})
        try:
            yield self._from_all("ready", 4 * timeout + SETUP_GRACE)
            self._tell_all("go")
            finished = yield self._from_all("result",
                                            options["duration"] + timeout + SETUP_GRACE)
            elapsed = max(message["elapsed"] for message in finished)
            for message in finished:
                self.results.add(Results.from_json(message["results"]))
            self.progress.write("\n")
            report(options, self.results, elapsed, self.out)
            ledger = Ledger.merged([Ledger.from_json(message["ledger"]) for message in finished])
            self._tell_all("check")
            answers = yield self._from_all("balances", timeout + SETUP_GRACE)
            failed = [answer["error"] for answer in answers if "error" in answer]
            if failed:
                self.out.write(f"conservation: not checked ({failed[0]})\n")
                return False
            actual = {}
            for answer in answers:
                actual.update(keys_from_json(answer["balances"]))
            return judge_conservation(ledger, actual, self.out)
        finally:
            yield self._stop_all()

    def _from_all(self, kind: str, timeout: float) -> defer.Deferred:
        """Fire with every child's next C{kind} message, or fail with the first problem."""
        d = defer.gatherResults(
            [child.next_message(kind).addTimeout(timeout, self.reactor)
             for child in self._children], consumeErrors=True)
        return d.addErrback(_first_error)

    def _tell_all(self, command: str) -> None:
        for child in self._children:
            child.send(command)

    def _stop_all(self) -> defer.Deferred:
        """Close every child's stdin (it then exits); kill any that does not within the grace."""
        ended = []
        for child in self._children:
            child.stop()
            ended.append(child.ended)
        done = defer.gatherResults(ended)
        return done.addTimeout(SETUP_GRACE, self.reactor).addErrback(self._kill_all)

    def _kill_all(self, failure) -> None:
        for child in self._children:
            child.kill()

    def tick(self, index: int, message: dict) -> None:
        """One child's second: once every child has reported it, show the merged second."""
        self._latest[index] = message
        arrived = self._seconds.setdefault(message["second"], [])
        arrived.append(message)
        if len(arrived) < len(self._children):
            return
        del self._seconds[message["second"]]
        interval = HdrHistogram.decode(arrived[0]["interval"].encode("ascii"))
        for other in arrived[1:]:
            interval.decode_and_add(other["interval"].encode("ascii"))
        point = timeline_point(max(m["elapsed"] for m in arrived), interval)
        self.results.timeline.append(point)
        latest = self._latest.values()
        show_progress(self.progress, point, sum(m["total"] for m in latest),
                      sum(m["errors"] for m in latest), sum(m["pushes"] for m in latest))


def run_pool(reactor, options, argv) -> defer.Deferred:
    """
    The parent's whole run; fire with whether assets were conserved.  A load
    process that fails or stalls ends the run with a one-line message.
    """
    return LoadPool(reactor, options, argv).run().addErrback(_pool_failed)


def _pool_failed(failure) -> None:
    failure.trap(LoadProcessFailed, defer.TimeoutError)
    raise SystemExit(f"tradechat-bench: {failure.getErrorMessage()}")


def _first_error(failure):
    failure.trap(defer.FirstError)
    return failure.value.subFailure


def _child_environment() -> dict:
    """This environment, with the code this process runs importable from any directory."""
    source_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ,
            "PYTHONPATH": source_root if not path else source_root + os.pathsep + path}


class _Child(protocol.ProcessProtocol):
    """The parent's end of one load process: JSON lines in, commands out."""

    def __init__(self, pool: LoadPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.ended = defer.Deferred()
        self._partial = b""
        self._waiting: dict[str, defer.Deferred] = {}
        self._arrived: dict[str, dict] = {}
        self._running = True

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            message = json.loads(line)
            kind = message.pop("kind")
            if kind == "tick":
                self.pool.tick(self.index, message)
            elif kind in self._waiting:
                self._waiting.pop(kind).callback(message)
            else:
                self._arrived[kind] = message

    def next_message(self, kind: str) -> defer.Deferred:
        if kind in self._arrived:
            return defer.succeed(self._arrived.pop(kind))
        if not self._running:
            return defer.fail(LoadProcessFailed(f"load process {self.index} has ended"))
        waiter = self._waiting[kind] = defer.Deferred()
        return waiter

    def send(self, command: str) -> None:
        if self._running:
            self.transport.write(command.encode("ascii") + b"\n")

    def stop(self) -> None:
        if self._running:
            self.transport.closeStdin()

    def kill(self) -> None:
        if self._running:
            self.transport.signalProcess("KILL")

    def processEnded(self, reason) -> None:
        self._running = False
        waiting, self._waiting = self._waiting, {}
        for kind, waiter in waiting.items():
            waiter.errback(LoadProcessFailed(
                f"load process {self.index} ended before sending {kind}: "
                f"{reason.getErrorMessage()}"))
        self.ended.callback(None)


class _Parent(LineOnlyReceiver):
    """A child's end: commands from the parent on stdin, JSON lines to stdout."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self._waiting: dict[str, defer.Deferred] = {}
        self._arrived: set[str] = set()
        self.lost = defer.Deferred()

    def send(self, **message) -> None:
        self.sendLine(json.dumps(message).encode("ascii"))

    def next_command(self, command: str) -> defer.Deferred:
        if command in self._arrived:
            self._arrived.discard(command)
            return defer.succeed(None)
        if self.lost.called:
            return defer.fail(LoadProcessFailed("the parent went away"))
        waiter = self._waiting[command] = defer.Deferred()
        return waiter

    def lineReceived(self, line: bytes) -> None:
        command = line.decode("ascii")
        waiter = self._waiting.pop(command, None)
        if waiter is not None:
            waiter.callback(None)
        else:
            self._arrived.add(command)

    def connectionLost(self, reason=None) -> None:
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            waiter.errback(LoadProcessFailed("the parent went away"))
        self.lost.callback(None)


@defer.inlineCallbacks
def serve_parent(reactor, options, index: int, processes: int):
    """A child's whole life: set up, wait for go, load, report, answer the check."""
    parent = _Parent()
    stdio.StandardIO(parent, reactor=reactor)
    bench = Bench(reactor, options, out=sys.stderr, progress=sys.stderr,
                  share=(index, processes))
    try:
        try:
            yield bench.setup()
        except Exception as error:
            reason = error.subFailure if isinstance(error, defer.FirstError) else error
            sys.stderr.write(f"load process {index}: could not set up: "
                             f"{describe_connection_failure(reason)}\n")
            raise SystemExit(1)
        parent.send(kind="ready")
        yield parent.next_command("go")
        seconds = itertools.count(1)

        def tick(elapsed, interval):
            results = bench.results
            parent.send(kind="tick", second=next(seconds), elapsed=elapsed,
                        interval=interval.encode().decode("ascii"), total=results.total,
                        errors=sum(results.errors.values()), pushes=bench.pushes_received())

        bench.on_tick = tick
        elapsed = yield bench.load()
        parent.send(kind="result", elapsed=elapsed, results=bench.results.to_json(),
                    ledger=bench.ledger.to_json())
        yield parent.next_command("check")
        try:
            balances = yield bench.fetch_balances()
        except Exception as error:
            parent.send(kind="balances", error=str(error))
        else:
            parent.send(kind="balances", balances=keys_to_json(balances))
        yield parent.lost
    finally:
        bench.close()


def main(argv=None) -> None:
    index, processes, *bench_arguments = sys.argv[1:] if argv is None else argv
    options = Options()
    options.parseOptions(bench_arguments)
    install_reactor(options["reactor"])
    task.react(lambda reactor: serve_parent(reactor, options, int(index), int(processes)))


if __name__ == "__main__":
    main()
