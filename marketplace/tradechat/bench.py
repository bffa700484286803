"""
C{tradechat-bench}: the stress tool, compatible with the existing one.

    tradechat-bench --host 127.0.0.1 --port 9000 --connections 100 --concurrency 16 \\
        --duration 10 --mix mixed --payload-size 32 --out results.csv [--plot run.png]

Each connection says HELLO, logs in as C{u<worker>_<index>} and joins room 0,
exactly as the existing tool does; then C{--concurrency} workers (the
existing C{--threads}) each run a closed loop over their own connections,
one request in flight per worker.  Latencies go into an HDR histogram.

After the run it checks conservation of assets through the protocol: every
benchmark account's final BALANCE must equal its balance at login plus what
the server acknowledged (deposits, withdrawals, transfers in and out), and
the total must match too.  Transfers never target the sender itself (that
hangs the existing server) and go, as in the existing tool, to a random user
id 0..1023; money sent to accounts outside the benchmark is accounted as
leaving the audited set.

Pushes are counted from their headers, never decoded (every connection
receives every chat: hundreds of thousands of frames a second), and no timer
is set per request.  C{--processes N} spreads the connections and the
in-flight workers over N load-generating processes (see
L{marketplace.tradechat.benchpool}; L{marketplace.tradechat.benchmain}
chooses), for machines where one Python process
would saturate a core before the server does.  Their histograms, counts and
ledgers are merged exactly, so the figures and the conservation check mean
the same as with one process.

C{--plot} needs matplotlib, which is not a dependency of this package: the
plot is skipped with a notice when it is not installed.
"""

from __future__ import annotations

import csv
import os
import random
import sys
import time
from collections import Counter

import attrs
from hdrh.histogram import HdrHistogram
from twisted.internet import defer, task
from twisted.python import usage
from twisted.python.failure import Failure

from marketplace.collector import CollectorSettings
from marketplace.latency import LatencyCounts, new_histogram
from marketplace.net import describe_connection_failure
from marketplace.options import (
    ProgramOptions,
    client_endpoint_argument,
    positive_float,
    program_name,
)
from marketplace.tradechat.remote import TradeChatClient
from protocols import tradechat_bodies as bodies
from protocols.nsframe import Status
from protocols.tradechat import code_name

MIXES = {
    "mixed": (("chat", 30), ("transfer", 25), ("withdraw", 20), ("deposit", 15), ("balance", 10)),
    "trade-heavy": (("transfer", 40), ("withdraw", 30), ("deposit", 20), ("balance", 10)),
    "chat-heavy": (("chat", 70), ("transfer", 15), ("balance", 15)),
}
COMPAT_USER_IDS = 1024
CSV_COLUMNS = [
    "host", "port", "connections", "threads", "duration_s", "total", "ok", "err", "rps",
    "p50_us", "p95_us", "p99_us", "err_bad_packet", "err_checksum_fail", "err_unauthorized",
    "err_not_found", "err_insufficient_funds", "err_server_busy", "err_timeout", "err_internal",
    "mix", "payload_size", "p999_us",
]
_STATUS_COLUMNS = {
    Status.BAD_PACKET: "err_bad_packet", Status.CHECKSUM_FAIL: "err_checksum_fail",
    Status.UNAUTHORIZED: "err_unauthorized", Status.NOT_FOUND: "err_not_found",
    Status.INSUFFICIENT_FUNDS: "err_insufficient_funds", Status.SERVER_BUSY: "err_server_busy",
    Status.TIMEOUT: "err_timeout",
}
WITHOUT_COMPAT_HINT = (
    "note: NOT_FOUND means transfers went to user ids that do not exist. This tool's "
    "workload is the existing tool's: it transfers to user ids 0..1023 and spends the "
    "existing server's opening balance, and a server has those accounts only when started "
    "with --compat (twistd -n --pidfile= tradechat --compat). Without it the accounts open "
    "empty (INSUFFICIENT_FUNDS) and most transfer targets are missing (NOT_FOUND).\n")
"""Printed after a run that met missing accounts: the server lacks the existing accounts."""

_SEED_STRIDE = 1_000_003
"""Offsets each load process's --seed so their request sequences differ."""


PLATFORM_REACTOR = "default"
"""C{--reactor} value for the platform's default reactor (epoll on Linux)."""


class Options(ProgramOptions):
    synopsis = "[options]"
    optFlags = [["encrypt", None, "Obfuscate request bodies (XOR 0xA5), as the existing tool's --encrypt."]]
    optParameters = [
        ["host", None, "127.0.0.1", "Server address."],
        ["port", None, 9000, "Server port.", int],
        ["connect", None, None, "Client endpoint string instead of --host/--port "
                                "(e.g. tls:HOST:PORT:trustRoots=CA_DIR)."],
        ["connections", None, 100, "Connections to open.", int],
        ["concurrency", "t", 16, "Requests in flight at most (the existing tool's --threads).", int],
        ["duration", None, 10.0, "Seconds of load.", positive_float],
        ["mix", None, "mixed", "Request mix: " + ", ".join(MIXES) + "."],
        ["payload-size", None, 32, "Chat message bytes.", int],
        ["timeout", None, 5.0, "Seconds to wait for each reply.", positive_float],
        ["out", None, None, "Append one CSV row (header written if the file is new)."],
        ["plot", None, None, "Write a PNG of percentiles and throughput (needs matplotlib)."],
        ["seed", None, None, "Random seed, for repeatable request sequences.", int],
        ["processes", "P", 1, "Load-generating processes sharing the connections and the "
                              "requests in flight; their results are merged exactly.", int],
        ["reactor", None, None, "Twisted reactor to run on (poll, epoll, select, ...); by default "
                                "poll for mixes with chat, the platform's default otherwise."],
    ]

    def opt_threads(self, value):
        """Alias of --concurrency."""
        self["concurrency"] = int(value)

    def postOptions(self):
        if self["mix"] not in MIXES:
            raise usage.UsageError(f"--mix must be one of {', '.join(MIXES)}")
        if self["connections"] < 1 or self["concurrency"] < 1:
            raise usage.UsageError("--connections and --concurrency must be at least 1")
        if not 0 <= self["payload-size"] <= bodies.MAX_CHAT_MESSAGE:
            raise usage.UsageError(f"--payload-size must be 0..{bodies.MAX_CHAT_MESSAGE}")
        self["concurrency"] = min(self["concurrency"], self["connections"])
        if not 1 <= self["processes"] <= self["concurrency"]:
            raise usage.UsageError("--processes must be 1..the requests in flight")
        if self["connect"] is None:
            self["connect"] = f"tcp:{self['host']}:{self['port']}"
        self["connect"] = client_endpoint_argument(self["connect"])
        if self["reactor"] is None:
            self["reactor"] = default_reactor(self["mix"])
        elif self["reactor"] not in _reactor_names():
            raise usage.UsageError(f"--reactor must be one of {', '.join(sorted(_reactor_names()))}")


def default_reactor(mix: str) -> str:
    """
    The reactor that measured faster for C{mix}.  With chat, every
    connection gets pushes, so the tool stops and resumes reading a
    connection around each of its requests: C{poll} changes that
    registration in memory where epoll makes a system call.  Without chat
    it reads every connection all the time, and the default (epoll) does
    not rescan them all at each wait.
    """
    return "poll" if any(op == "chat" for op, _ in MIXES[mix]) else PLATFORM_REACTOR


def _reactor_names() -> set[str]:
    from twisted.application.reactors import getReactorTypes
    return {PLATFORM_REACTOR} | {reactor.shortName for reactor in getReactorTypes()}


def install_reactor(name: str) -> None:
    """
    Install reactor C{name} (a C{--reactor} value) before anything imports
    the default one.
    """
    if name != PLATFORM_REACTOR:
        from twisted.application.reactors import installReactor
        installReactor(name)


@attrs.define
class Ledger:
    """
    What the benchmark expects each of its accounts to hold.

    C{expected} covers this process's accounts; money transferred to any
    other account is kept per recipient in C{sent_elsewhere}, so that
    L{merged} can credit it to an account another load process owns and
    count only the rest as leaving the audited set.
    """

    expected: dict = attrs.Factory(dict)
    sent_elsewhere: Counter = attrs.Factory(Counter)
    deposited: int = 0
    withdrawn: int = 0
    uncertain: int = 0

    @property
    def sent_outside(self) -> int:
        """Money transferred to accounts outside the run."""
        return sum(self.sent_elsewhere.values())

    def apply(self, op: str, user_id: int, request, reply_ok: bool) -> None:
        if not reply_ok:
            return
        if op == "deposit":
            self.expected[user_id] += request.amount
            self.deposited += request.amount
        elif op == "withdraw":
            self.expected[user_id] -= request.amount
            self.withdrawn += request.amount
        elif op == "transfer":
            self.expected[user_id] -= request.amount
            self._credit(request.to_user_id, request.amount)

    def _credit(self, user_id: int, amount: int) -> None:
        if user_id in self.expected:
            self.expected[user_id] += amount
        else:
            self.sent_elsewhere[user_id] += amount

    @classmethod
    def merged(cls, ledgers) -> "Ledger":
        """One ledger for the accounts of several load processes."""
        merged = cls()
        for ledger in ledgers:
            merged.expected.update(ledger.expected)
            merged.deposited += ledger.deposited
            merged.withdrawn += ledger.withdrawn
            merged.uncertain += ledger.uncertain
        for ledger in ledgers:
            for user_id, amount in ledger.sent_elsewhere.items():
                merged._credit(user_id, amount)
        return merged

    def to_json(self) -> dict:
        return {"expected": keys_to_json(self.expected),
                "sent_elsewhere": keys_to_json(self.sent_elsewhere),
                "deposited": self.deposited, "withdrawn": self.withdrawn,
                "uncertain": self.uncertain}

    @classmethod
    def from_json(cls, data: dict) -> "Ledger":
        return cls(keys_from_json(data["expected"]),
                   Counter(keys_from_json(data["sent_elsewhere"])),
                   data["deposited"], data["withdrawn"], data["uncertain"])


@attrs.define
class Results:
    ok: int = 0
    errors: Counter = attrs.Factory(Counter)
    histogram: HdrHistogram = attrs.Factory(new_histogram)
    interval: HdrHistogram = attrs.Factory(new_histogram)
    timeline: list = attrs.Factory(list)
    pushes: int = 0
    # Latencies not yet in the histograms, folded in once a second.
    _unfolded: LatencyCounts = attrs.field(factory=LatencyCounts, init=False)

    @property
    def total(self) -> int:
        return self.ok + sum(self.errors.values())

    def record(self, latency_us: int) -> None:
        self._unfolded.record(latency_us)

    def fold(self) -> None:
        """Put the latencies recorded since the last fold into both histograms."""
        self._unfolded.fill(self.histogram, self.interval)

    def add(self, other: "Results") -> None:
        """Fold another process's results into these (counts and histogram, exactly)."""
        self.ok += other.ok
        self.errors.update(other.errors)
        self.histogram.add(other.histogram)
        self.pushes += other.pushes

    def to_json(self) -> dict:
        self.fold()
        return {"ok": self.ok, "errors": keys_to_json(self.errors),
                "histogram": self.histogram.encode().decode("ascii"), "pushes": self.pushes}

    @classmethod
    def from_json(cls, data: dict) -> "Results":
        return cls(data["ok"], Counter(keys_from_json(data["errors"])),
                   HdrHistogram.decode(data["histogram"].encode("ascii")), pushes=data["pushes"])


def timeline_point(elapsed: float, interval: HdrHistogram) -> tuple:
    """One second of the run: (elapsed, requests, p50, p99, p99.9)."""
    return (elapsed, interval.get_total_count(), interval.get_value_at_percentile(50),
            interval.get_value_at_percentile(99), interval.get_value_at_percentile(99.9))


def keys_to_json(mapping) -> dict:
    """JSON objects have string keys; user ids and statuses are ints."""
    return {str(key): value for key, value in mapping.items()}


def keys_from_json(mapping) -> dict:
    return {int(key): value for key, value in mapping.items()}


class Worker:
    """One closed loop: one request in flight, over its own connections in turn."""

    def __init__(self, bench: "Bench", connections: list) -> None:
        self.bench = bench
        self.connections = connections
        self.finished = defer.Deferred()
        self._turn = 0
        # (client, op, request, started, req_id) of the request in flight
        self._in_flight = None

    def expire(self, now: float, timeout: float) -> None:
        """
        Cancel the request in flight if it is older than C{timeout}.  One sweep
        a second for all workers costs far less than a timer per request,
        which would weigh on the very latencies being measured.
        """
        in_flight = self._in_flight
        if in_flight is not None and now - in_flight[3] > timeout:
            client, *_, req_id = in_flight
            client.protocol.forget(req_id)
            self._settled(Failure(defer.CancelledError()))

    def start(self) -> None:
        self._next()

    def _next(self) -> None:
        bench = self.bench
        if bench.stopping:
            if not self.finished.called:
                self.finished.callback(None)
            return
        client = self.connections[self._turn % len(self.connections)]
        self._turn += 1
        op, request = bench.choose(client.user_id)
        started = time.perf_counter()
        req_id = client.protocol.send(request, self._settled)
        self._in_flight = (client, op, request, started, req_id)

    def _settled(self, outcome) -> None:
        """Account for a reply or a failure, then send the next request."""
        client, op, request, started, _ = self._in_flight
        self._in_flight = None
        if isinstance(outcome, Failure):
            self._failed(outcome, client, op, request)
        else:
            self._replied(outcome, client, op, request, started)
        self._next()

    def _replied(self, frame, client, op, request, started) -> None:
        results = self.bench.results
        results.record(int((time.perf_counter() - started) * 1_000_000))
        if frame.status == Status.OK:
            results.ok += 1
        else:
            results.errors[frame.status] += 1
        self.bench.ledger.apply(op, client.user_id, request, frame.status == Status.OK)

    def _failed(self, failure, client, op, request) -> None:
        status = Status.TIMEOUT if failure.check(defer.CancelledError) else Status.INTERNAL
        self.bench.results.errors[status] += 1
        if op in ("deposit", "withdraw", "transfer"):
            self.bench.ledger.uncertain += request.amount
        if client.protocol.closed:
            self.connections = [c for c in self.connections if not c.protocol.closed]
            if not self.connections:
                self.connections = [client]
                self.bench.stopping = True


class Bench:
    """
    The load of one process: with C{share=(index, processes)} it drives the
    in-flight workers whose number is C{index} modulo C{processes}, and the
    connections those workers own, under the same names and with the same
    request mix as a single process would.
    """

    def __init__(self, reactor, options, out=sys.stdout, progress=sys.stderr,
                 share: tuple[int, int] = (0, 1)) -> None:
        self.reactor = reactor
        self.options = options
        self.out = out
        self.progress = progress
        index, processes = share
        seed = options["seed"]
        self.rng = random.Random(None if seed is None else seed + _SEED_STRIDE * index)
        self.results = Results()
        self.ledger = Ledger()
        self.stopping = False
        self.clients: list[TradeChatClient] = []
        self.worker_numbers = range(index, options["concurrency"], processes)
        self.on_tick = self._show_progress
        self._loops: list[Worker] = []
        # One entry per percentage point of the mix: indexing it with one
        # random() is several times cheaper than random.choices, and the
        # tool's CPU is taken from the server it measures.
        self._op_table = [op for op, weight in MIXES[options["mix"]] for _ in range(weight)]
        self._payload = b"x" * options["payload-size"]

    def choose(self, user_id: int):
        random = self.rng.random
        table = self._op_table
        op = table[int(random() * len(table))]
        if op == "chat":
            return op, bodies.ChatSend(0, self._payload)
        if op == "transfer":
            target = int(random() * (COMPAT_USER_IDS - 1))
            if target >= user_id:
                target += 1  # uniform over 0..1023 without the sender itself
            return op, bodies.Transfer(target, 1 + int(random() * 50))
        if op == "withdraw":
            return op, bodies.Withdraw(1 + int(random() * 100))
        if op == "deposit":
            return op, bodies.Deposit(1 + int(random() * 100))
        return op, bodies.Balance()

    @defer.inlineCallbacks
    def run(self):
        """
        The whole run in this process: set up, load, report, check
        conservation.  A setup that cannot connect or log in ends the
        program with one line saying why, and status 1.
        """
        try:
            yield self.setup()
        except Exception as error:
            reason = error.subFailure if isinstance(error, defer.FirstError) else error
            print(f"{program_name()}: cannot set up against {self.options['connect']}: "
                  f"{describe_connection_failure(reason)}", file=sys.stderr)
            self.close()
            raise SystemExit(1)
        elapsed = yield self.load()
        self.progress.write("\n")
        report(self.options, self.results, elapsed, self.out)
        conserved = yield self.check_conservation()
        self.close()
        return conserved

    @defer.inlineCallbacks
    def setup(self):
        """Connect, log in and join room 0 on this process's connections."""
        options = self.options
        workers = options["concurrency"]
        mine = set(self.worker_numbers)
        numbers = [n for n in range(options["connections"]) if n % workers in mine]
        self.clients = yield defer.gatherResults([
            TradeChatClient.connect(options["connect"], self.reactor, options["timeout"],
                                    obfuscate=options["encrypt"], idle_reading=False)
            for _ in numbers], consumeErrors=True)
        replies = yield defer.gatherResults(
            [self._setup(client, n % workers, n // workers)
             for n, client in zip(numbers, self.clients)],
            consumeErrors=True)
        for reply in replies:
            self.ledger.expected[reply.user_id] = reply.balance
        self._loops = [
            Worker(self, [client for n, client in zip(numbers, self.clients) if n % workers == k])
            for k in self.worker_numbers]

    @defer.inlineCallbacks
    def _setup(self, client, worker, index):
        reply = yield client.login(f"u{worker}_{index}")
        yield client.join(0)
        return reply

    @defer.inlineCallbacks
    def load(self):
        """Run the closed loops for --duration; fire with the seconds they took."""
        loops = self._loops
        started = self.reactor.seconds()
        ticker = task.LoopingCall(self._tick, started, loops)
        ticker.clock = self.reactor
        ticker.start(1.0, now=False)
        self.reactor.callLater(self.options["duration"], setattr, self, "stopping", True)
        # The tool's own collector passes would be measured as latency and
        # take CPU from the server it shares the machine with.
        collector = CollectorSettings()
        collector.startService()
        try:
            for loop in loops:
                loop.start()
            yield defer.gatherResults([loop.finished for loop in loops])
        finally:
            collector.stopService()
        elapsed = self.reactor.seconds() - started
        ticker.stop()
        self.results.fold()
        self.results.pushes = self.pushes_received()
        return elapsed

    def pushes_received(self) -> int:
        return sum(c.protocol.pushes_received for c in self.clients)

    def _tick(self, started, loops) -> None:
        now = time.perf_counter()
        for loop in loops:
            loop.expire(now, self.options["timeout"])
        self.results.fold()
        interval = self.results.interval
        self.on_tick(self.reactor.seconds() - started, interval)
        interval.reset()

    def _show_progress(self, elapsed: float, interval: HdrHistogram) -> None:
        point = timeline_point(elapsed, interval)
        self.results.timeline.append(point)
        results = self.results
        show_progress(self.progress, point, results.total, sum(results.errors.values()),
                      self.pushes_received())

    def fetch_balances(self) -> defer.Deferred:
        """Fire with {user id: BALANCE} for this process's accounts, asked over the protocol."""
        by_user = {}
        for client in self.clients:
            by_user.setdefault(client.user_id, client)
        users = list(self.ledger.expected)
        d = defer.gatherResults([by_user[user_id].balance() for user_id in users],
                                consumeErrors=True)
        return d.addCallback(lambda balances: dict(zip(users, balances)))

    @defer.inlineCallbacks
    def check_conservation(self):
        """Read every benchmark account's balance through the protocol and compare."""
        try:
            actual = yield self.fetch_balances()
        except Exception as error:
            self.out.write(f"conservation: not checked ({error})\n")
            return False
        return judge_conservation(self.ledger, actual, self.out)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def show_progress(stream, point: tuple, total: int, errors: int, pushes: int) -> None:
    """The live progress line (stderr), rewritten every second."""
    elapsed, count, p50, p99, _ = point
    stream.write(f"\r[{elapsed:5.1f}s] total={total} rps={count} p50={p50}us "
                 f"p99={p99}us err={errors} pushes={pushes}   ")
    stream.flush()


def summary(options, results: Results, elapsed: float) -> dict:
    """The CSV row of a run."""
    histogram = results.histogram
    row = {
        "host": options["host"], "port": options["port"],
        "connections": options["connections"], "threads": options["concurrency"],
        "duration_s": f"{elapsed:.2f}", "total": results.total, "ok": results.ok,
        "err": sum(results.errors.values()),
        "rps": f"{results.total / elapsed:.0f}" if elapsed > 0 else "0",
        "p50_us": histogram.get_value_at_percentile(50),
        "p95_us": histogram.get_value_at_percentile(95),
        "p99_us": histogram.get_value_at_percentile(99),
        "mix": options["mix"], "payload_size": options["payload-size"],
        "p999_us": histogram.get_value_at_percentile(99.9),
    }
    for column in _STATUS_COLUMNS.values():
        row[column] = 0
    row["err_internal"] = 0
    for status, count in results.errors.items():
        row[_STATUS_COLUMNS.get(status, "err_internal")] += count
    return row


def report(options, results: Results, elapsed: float, out) -> None:
    """Print the summary lines, append the CSV row and draw the plot if asked."""
    row = summary(options, results, elapsed)
    write = out.write
    write(f"connections={row['connections']} threads={row['threads']} "
          f"duration={row['duration_s']}s total={row['total']} ok={row['ok']} err={row['err']} "
          f"rps={row['rps']} p50={row['p50_us']}us p95={row['p95_us']}us "
          f"p99={row['p99_us']}us\n")
    push_rate = results.pushes / elapsed if elapsed > 0 else 0
    write(f"mix={row['mix']} payload={row['payload_size']} p999={row['p999_us']}us "
          f"pushes_received={results.pushes} ({push_rate:.0f}/s)\n")
    if results.errors:
        write("errors by status: " + ", ".join(
            f"{code_name(Status, status)}={count}"
            for status, count in sorted(results.errors.items())) + "\n")
    if results.errors[Status.NOT_FOUND]:
        write(WITHOUT_COMPAT_HINT)
    if options["out"]:
        _append_csv(options["out"], row)
    if options["plot"]:
        plot(options, results.timeline, options["plot"], out)


def judge_conservation(ledger: Ledger, actual: dict, out) -> bool:
    """Compare the balances the server reports with what the ledger expects; print the verdict."""
    wrong = {u: (ledger.expected[u], actual[u]) for u in ledger.expected
             if actual[u] != ledger.expected[u]}
    total = sum(actual.values())
    negative = [u for u, balance in actual.items() if balance < 0]
    summary_line = (f"{len(actual)} accounts, total {total} = expected "
                    f"{sum(ledger.expected.values())} (deposits {ledger.deposited}, "
                    f"withdrawals {ledger.withdrawn}, "
                    f"sent to accounts outside the run {ledger.sent_outside})")
    if ledger.uncertain:
        out.write(f"conservation: INDETERMINATE, {ledger.uncertain} moved by requests with "
                  f"no reply; {summary_line}\n")
        return not negative
    conserved = not wrong and not negative
    out.write(f"conservation: {'OK' if conserved else 'VIOLATED'}: {summary_line}\n")
    for user_id, (expected, got) in sorted(wrong.items())[:10]:
        out.write(f"  user {user_id}: expected {expected}, server says {got}\n")
    return conserved


def plot(options, timeline: list, path: str, out) -> None:
    """Write a PNG of per-second percentiles and throughput (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        out.write("--plot skipped: matplotlib is not installed\n")
        return
    seconds = [point[0] for point in timeline]
    figure, (latency, throughput) = pyplot.subplots(2, 1, sharex=True, figsize=(8, 6))
    for index, label in ((2, "p50"), (3, "p99"), (4, "p99.9")):
        latency.plot(seconds, [point[index] for point in timeline], label=label)
    latency.set_ylabel("latency (us)")
    latency.legend()
    throughput.plot(seconds, [point[1] for point in timeline])
    throughput.set_ylabel("requests/s")
    throughput.set_xlabel("seconds")
    figure.suptitle(f"{options['mix']}, {options['connections']} connections")
    figure.savefig(path)
    out.write(f"plot written to {path}\n")


def _append_csv(path: str, row: dict) -> None:
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
