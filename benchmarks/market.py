"""
Marketplace benchmark driver: starts the services, runs ``market-bench``.

    python benchmarks/market.py                     # memory and redis, 1+1, 10+10, 100+100
    python benchmarks/market.py --stores memory --sizes 100 --ops 200 --csv /tmp/market.csv
    python benchmarks/market.py --sizes 100 --ops 100 --repeat 3   # the Redis target: medians, ratios
    python benchmarks/market.py --sources OLD_CHECKOUT,. --stores redis --sizes 100 --ops 100 --repeat 3

Results are printed and appended to ``benchmarks/out/market.csv`` by default,
each with the CPU a successful operation took in the service processes and
in the redis-server (from /proc: on a shared host throughput moves with the
neighbours' load much more than that does).  With ``--repeat N`` every store
runs N times, interleaved, and the end shows medians and, per size, Redis's
ops/s and CPU against the embedded store's in the same repetitions.

Every service runs in its own subprocess, as on separate hosts (``--layout
spread``, the default); ``--layout split`` keeps the three DB services in one
process sharing one store, and ``--layout single`` runs all five in one.  The
load generator is this process.  On two cores ``spread`` did best: with
Redis, one process holding all three DB services was the bottleneck.
Ports are chosen free on 127.0.0.1.  For ``redis`` a private ``redis-server``
is started on a free port in a temporary directory and stopped afterwards;
the Redis on the default port is never touched.  Front ends use a cheap
password KDF so account setup does not dominate; setup is not timed anyway.

``--sources`` names checkouts to take the services' code from (by default
this one), such as a ``git worktree`` of an earlier commit: in every
repetition each store runs from each checkout in turn (the load generator
is always this process), and the end also gives each later checkout's
ops/s and CPU against the first's in the same repetitions.

``serve`` is the subprocess entry point (internal).
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile

import attrs
from twisted.internet import defer, protocol, task

import checkouts
from machine import cpus, load_average, process_cpu_seconds

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

READY = "READY"
DB_SERVICES = ("customer-db", "product-db", "payments")
FRONT_ENDS = ("seller-front", "buyer-front")
#: Which services share a process.  The DB services of one process share its
#: store; with ``spread`` each has its own (the memory store's domains are
#: disjoint, so nothing is lost).
LAYOUTS = {
    "single": [DB_SERVICES + FRONT_ENDS],
    "split": [DB_SERVICES, *[(name,) for name in FRONT_ENDS]],
    "spread": [(name,) for name in DB_SERVICES + FRONT_ENDS],
}


def _ephemeral_low(default=32768) -> int:
    """The lowest port the kernel hands to outgoing connections (Linux; else a common default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port() -> int:
    """
    A free port below the ephemeral range.  An OS-chosen port (bind to 0) is
    in that range, so an outgoing connection -- a front end's to a DB
    service, a DB service's to Redis -- could take it in the seconds before
    the service meant for it starts listening.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 20000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found below the ephemeral range")


def serve(roles, store, ports):
    """Run the services of ``roles`` until killed; print READY once listening."""
    from twisted.application.service import MultiService
    from twisted.internet import reactor

    from marketplace.market import tap
    from marketplace.store import make_store
    from tests.support.services import listeners_of

    service = MultiService()
    loopback = {name: f"tcp:{port}:interface=127.0.0.1" for name, port in ports.items()}
    peers = {name: f"tcp:127.0.0.1:{port}" for name, port in ports.items()}
    if set(roles) & set(DB_SERVICES):
        shared = make_store(store, key_prefix=tap.KEY_PREFIX)
        shared.setServiceParent(service)
    for name, plugin, maker in (("customer-db", tap.customer_db, tap.make_customer_db),
                                ("product-db", tap.product_db, tap.make_product_db),
                                ("payments", tap.payments, tap.make_payments)):
        if name in roles:
            options = plugin.Options()
            options.parseOptions(["--store", store, "--listen", loopback[name]])
            maker(options, store=shared).setServiceParent(service)
    for name, plugin in (("seller-front", tap.seller_front), ("buyer-front", tap.buyer_front)):
        if name in roles:
            options = plugin.Options()
            # Every simulated user signs up from this one address at once.
            argv = ["--listen", loopback[name], "--cheap-kdf", "--kdf-queue", "10000",
                    "--kdf-per-client", "10000", "--kdf-interval", "0.0001", "--kdf-burst", "10000",
                    "--customer-db", peers["customer-db"], "--product-db", peers["product-db"]]
            if name == "buyer-front":
                argv += ["--payments", peers["payments"]]
            options.parseOptions(argv)
            plugin.makeService(options).setServiceParent(service)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    ready = defer.gatherResults([listener.whenListening() for listener in listeners_of(service)])
    ready.addCallback(lambda _: print(READY, flush=True))
    ready.addErrback(lambda failure: (print(failure.getTraceback(), file=sys.stderr),
                                      reactor.stop()))
    reactor.run()


class _Child(protocol.ProcessProtocol):
    """A subprocess whose ``ready`` fires when its output shows ``ready_text``."""

    def __init__(self, ready_text):
        self.ready_text = ready_text
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self._seen = ""

    def outReceived(self, data):
        if not self.ready.called:
            self._seen = (self._seen + data.decode("utf-8", "replace"))[-4096:]
            if self.ready_text in self._seen:
                self.ready.callback(self)

    def processEnded(self, reason):
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"exited before ready: {self._seen[-500:]}"))
        self.ended.callback(None)


class Processes:
    """Subprocesses that are always stopped, even when the driver fails."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.running = []

    def start(self, argv, ready_text, timeout=30.0, path=None, env=None):
        child = _Child(ready_text)
        self.reactor.spawnProcess(child, argv[0], argv, env=os.environ if env is None else env,
                                  path=path, childFDs={0: "w", 1: "r", 2: 2})
        self.running.append(child)
        return child.ready.addTimeout(timeout, self.reactor)

    def stop_all(self):
        """SIGTERM every child, SIGKILL any still alive after 10 s; fires when all ended."""
        children, self.running = self.running, []
        for child in children:
            _signal(child, "TERM")
        waits = [child.ended.addTimeout(10, self.reactor).addErrback(
            lambda _, child=child: _signal(child, "KILL") or child.ended) for child in children]
        return defer.gatherResults(waits)


def _signal(child, name):
    if child.transport is not None and child.transport.pid is not None:
        child.transport.signalProcess(name)


def start_redis(processes, workdir):
    binary = shutil.which("redis-server")
    if binary is None:
        return defer.fail(RuntimeError("redis-server is not installed"))
    port = free_port()
    d = processes.start([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
                         "--save", "", "--appendonly", "no"], "Ready to accept connections")
    return d.addCallback(lambda _: f"redis://127.0.0.1:{port}/0")


@defer.inlineCallbacks
def start_services(processes, store, layout, source=_REPO):
    """The services, each process running C{source}'s own C{serve} and code."""
    ports = {name: free_port() for name in DB_SERVICES + FRONT_ENDS}
    port_args = [f"{name}={port}" for name, port in ports.items()]
    entry = os.path.join(os.path.abspath(source), "benchmarks", "market.py")
    for roles in LAYOUTS[layout]:
        yield processes.start([sys.executable, entry, "serve", "--store", store,
                               "--roles", ",".join(roles), *port_args], READY, path=source,
                              env=checkouts.environment(source))
    return f"tcp:127.0.0.1:{ports['buyer-front']}", f"tcp:127.0.0.1:{ports['seller-front']}"


@defer.inlineCallbacks
def run_benchmarks(reactor, args):
    from marketplace.market.bench import Bench, BenchConfig, append_csv

    processes = Processes(reactor)
    workdir = tempfile.mkdtemp(prefix="market-bench-")
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    print(f"{cpus()}; load average {load_average()}", flush=True)
    labels = checkouts.labels(args.sources)
    runs = []
    try:
        for repetition in range(args.repeat):
            for store_kind in args.stores:
                for source, label in zip(args.sources, labels):
                    redis = None
                    if store_kind == "memory":
                        store = "memory"
                    else:
                        store = yield start_redis(processes, workdir)
                        redis = processes.running[-1]
                    buyer_front, seller_front = yield start_services(processes, store, args.layout,
                                                                     source)
                    kind = store_kind + (f"@{label}" if label else "")
                    for size in args.sizes:
                        config = BenchConfig(buyer_front, seller_front, size, size, args.ops,
                                             label=f"{kind} {size}+{size}", progress=not args.quiet)
                        before = _cpu_seconds(processes.running, redis)
                        result = yield Bench(config, reactor).run()
                        after = _cpu_seconds(processes.running, redis)
                        cpu = [(a - b) / max(result.successful, 1) * 1e6 for a, b in zip(after, before)]
                        runs.append(Run(repetition, store_kind, label, size, result.ops_per_second,
                                        sum(cpu)))
                        print(result.summary(), result.breakdown(),
                              f"  CPU a successful op: services {cpu[0]:.0f} us + redis-server "
                              f"{cpu[1]:.0f} us = {sum(cpu):.0f} us", sep="\n", flush=True)
                        append_csv(args.csv, result)
                    yield processes.stop_all()
    finally:
        yield processes.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    _print_ratios(runs, args)


def _cpu_seconds(children, redis):
    """CPU seconds so far of the service processes and of the redis-server (0 without one)."""
    def used(child):
        return process_cpu_seconds(child.transport.pid) or 0.0
    services = sum(used(child) for child in children if child is not redis)
    return services, used(redis) if redis is not None else 0.0


@attrs.frozen
class Run:
    """One measured run: its repetition, store, source label, size, ops/s and CPU a successful op."""

    repetition: int
    store: str
    label: str
    size: int
    ops_per_second: float
    cpu_us: float

    @property
    def name(self) -> str:
        return self.store + (f"@{self.label}" if self.label else "")


def _same_repetitions(runs, base, other) -> str:
    """C{other}'s ops/s and CPU against C{base}'s (both C{(store, label, size)}), pairwise."""
    pairs = [(b, r) for b in runs for r in runs if b.repetition == r.repetition
             and (b.store, b.label, b.size) == base and (r.store, r.label, r.size) == other]
    if not pairs:
        return ""
    return checkouts.compared([(b.ops_per_second, r.ops_per_second) for b, r in pairs],
                              [(b.cpu_us, r.cpu_us) for b, r in pairs], "ops/s", "a successful op")


def _print_ratios(runs, args):
    """
    Medians per store, source and size; Redis against memory within each
    repetition; and each later source against the first.
    """
    print(f"\nmedians of {args.repeat} repetition(s); {cpus()}; load average {load_average()}")
    labels = list(dict.fromkeys(run.label for run in runs))
    for size in args.sizes:
        for store_kind in args.stores:
            for label in labels:
                mine = [run for run in runs if (run.store, run.label, run.size) == (store_kind, label, size)]
                if mine:
                    print(f"{mine[0].name} {size}+{size}: "
                          f"{statistics.median(r.ops_per_second for r in mine):,.0f} ops/s, "
                          f"CPU {statistics.median(r.cpu_us for r in mine):.0f} us a successful op")
        for label in labels:
            ratio = _same_repetitions(runs, ("memory", label, size), ("redis", label, size))
            if ratio:
                at = f" @{label}" if label else ""
                print(f"redis/memory{at} {size}+{size}, same repetitions: {ratio} "
                      f"(target >= 0.6x the ops/s at 100+100)")
        for store_kind in args.stores:
            for label in labels[1:]:
                ratio = _same_repetitions(runs, (store_kind, labels[0], size), (store_kind, label, size))
                if ratio:
                    print(f"{store_kind}@{label} against {store_kind}@{labels[0]} {size}+{size}, "
                          f"same repetitions: {ratio}")


def _stores(text):
    stores = [store for store in text.split(",") if store]
    unknown = set(stores) - {"memory", "redis"}
    if unknown or not stores:
        raise argparse.ArgumentTypeError(f"stores are memory and redis, not {sorted(unknown)}")
    return stores


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve", help="run services (used internally)")
    serve_parser.add_argument("--store", default="memory")
    serve_parser.add_argument("--roles", default=",".join(DB_SERVICES + FRONT_ENDS))
    serve_parser.add_argument("ports", nargs="+", help="NAME=PORT")
    parser.add_argument("--stores", default="memory,redis", type=_stores,
                        help="comma-separated: memory, redis (default: %(default)s)")
    parser.add_argument("--sizes", default="1,10,100",
                        type=lambda text: [int(n) for n in text.split(",") if n])
    parser.add_argument("--ops", type=int, default=200, help="operations per user")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="spread")
    parser.add_argument("--repeat", type=int, default=1,
                        help="repetitions of every store and size, the stores interleaved")
    parser.add_argument("--csv", default=os.path.join(_REPO, "benchmarks", "out", "market.csv"),
                        help="append result rows to this CSV file (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--sources", default=[_REPO], type=lambda text: [p for p in text.split(",") if p],
                        help="comma-separated checkouts to take the services' code from, measured "
                             "in turn (by default this one)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        ports = dict((name, int(port)) for name, port in (p.split("=") for p in args.ports))
        serve(args.roles.split(","), args.store, ports)
        return 0
    task.react(run_benchmarks, (args,))


if __name__ == "__main__":
    sys.exit(main())
