"""
Benchmark: the trading chatroom server under tradechat-bench on loopback.

    python benchmarks/tradechat.py [--duration 10] [--repeat 3] [--out benchmarks/out/tradechat.csv]
                                   [--scenarios mixed-100,trade-200] [--store memory]
                                   [--processes 1] [--reactor poll] [--load-reactor poll]

For every scenario and repetition a fresh server process is started
(compatibility profile, so every transfer target exists; embedded store
unless --store says otherwise; one process), then tradechat-bench runs
against it in another process (or --processes load processes).  Each run
appends a row to --out (the bench's CSV columns); at the end a summary table
shows the median of the runs of each scenario next to the issue's targets
where it has one, and the machine it ran on: CPU count and model, and the
load average before and after, since other work on the machine skews the
figures.

The server runs on the platform's default reactor (epoll on Linux), as
C{twistd -n tradechat} does.  The load generator runs on tradechat-bench's
own default for the scenario's mix (C{poll} with chat, the platform's
default without; L{marketplace.tradechat.bench.default_reactor} says why),
and the output names it.  --reactor and --load-reactor run every
scenario's server or load generator on the reactor given, to compare them
(C{poll} and epoll measured the same for the server, which writes at once
and so no longer changes registrations per write).

Beside each scenario's figures it prints the CPU microseconds per request
of the server (during the load) and of the load generator (its whole
process, start-up included): on a shared host throughput moves with the
neighbours' load by a factor of two, CPU time per request much less, so
that is the figure to compare two versions of the code by.

The targets were set for a 2-core machine with client and server sharing it;
figures from a busier or smaller machine are not comparable.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

from machine import children_cpu_seconds, cpus, load_average, process_cpu_seconds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from marketplace.tradechat.bench import PLATFORM_REACTOR, default_reactor, install_reactor  # noqa: E402

# name: (connections, concurrency, mix, payload, target rps, target p99 us)
SCENARIOS = {
    "mixed-100": (100, 16, "mixed", 32, 15_000, 4_000),
    "trade-200": (200, 32, "trade-heavy", 32, 25_000, 3_000),
    "chat-100": (100, 16, "chat-heavy", 32, None, None),
    "mixed-100-p256": (100, 16, "mixed", 256, None, None),
    "mixed-100-p1024": (100, 16, "mixed", 1024, None, None),
    "chat-100-p256": (100, 16, "chat-heavy", 256, None, None),
    "chat-100-p1024": (100, 16, "chat-heavy", 1024, None, None),
}


def serve(store, reactor_name):
    """Child side: run the server on a free port, print it, run until stdin closes."""
    install_reactor(reactor_name)
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Protocol

    from marketplace.tradechat.tap import Options, makeService

    options = Options()
    options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--compat", "--store", store])
    root = makeService(options)

    class ExitOnEOF(Protocol):
        def connectionLost(self, reason):
            root.stopService().addBoth(lambda _: reactor.stop())

    def announce(port):
        sys.stdout.write(json.dumps({"port": port.getHost().port, "pid": os.getpid()}) + "\n")
        sys.stdout.flush()

    root.startService()
    root.getServiceNamed("tradechat").whenListening().addCallback(announce)
    stdio.StandardIO(ExitOnEOF())
    reactor.run()


def server_reactor(args):
    return args.reactor or PLATFORM_REACTOR


def load_reactor(args, name):
    return args.load_reactor or default_reactor(SCENARIOS[name][2])


def run_once(args, name, csv_path):
    """
    One run of scenario C{name}, its row appended to C{csv_path}.

    @return: the CPU seconds the server and the load generator used during
        the run (the server's is None where /proc is missing).
    """
    connections, concurrency, mix, payload, _, _ = SCENARIOS[name]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--store", args.store,
         "--reactor", server_reactor(args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        started = json.loads(server.stdout.readline())
        port, server_cpu_before = started["port"], process_cpu_seconds(started["pid"])
        load_cpu_before = children_cpu_seconds()
        bench = [sys.executable, "-m", "marketplace.tradechat.benchmain",
                 "--reactor", load_reactor(args, name), "--port", str(port),
                 "--connections", str(connections), "--concurrency", str(concurrency),
                 "--mix", mix, "--payload-size", str(payload), "--duration", str(args.duration),
                 "--processes", str(args.processes), "--out", csv_path]
        result = subprocess.run(bench, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, timeout=args.duration + 120)
        sys.stdout.write(f"--- {name} (server reactor {server_reactor(args)}, "
                         f"load generator reactor {load_reactor(args, name)})\n{result.stdout}")
        if result.returncode != 0:
            raise SystemExit(f"tradechat-bench failed in {name}")
        server_cpu_after = process_cpu_seconds(started["pid"])
        server_cpu = None if server_cpu_before is None else server_cpu_after - server_cpu_before
        return server_cpu, children_cpu_seconds() - load_cpu_before
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", default="memory")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1,
                        help="load-generating processes of tradechat-bench")
    parser.add_argument("--reactor", default=None,
                        help="Twisted reactor of every scenario's server (e.g. epoll, poll, "
                             "select; by default the platform's default)")
    parser.add_argument("--load-reactor", default=None,
                        help="Twisted reactor of every scenario's load generator (by default "
                             "each scenario's own)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "out", "tradechat.csv"))
    args = parser.parse_args()
    if args.serve:
        serve(args.store, args.reactor)
        return
    names = args.scenarios.split(",")
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    load_before = load_average()
    print(f"{cpus()}; client and server share them; store {args.store}; "
          f"reactors {server_reactor(args)} (server), "
          f"{args.load_reactor or 'per scenario'} (load); {args.processes} load process(es); "
          f"load average {load_before}")
    medians = {}
    for name in names:
        with tempfile.NamedTemporaryFile("r", suffix=".csv") as scratch:
            cpu = [run_once(args, name, scratch.name) for _ in range(args.repeat)]
            rows = list(csv.DictReader(open(scratch.name)))
        for row, (server_cpu, load_cpu) in zip(rows, cpu):
            row.update(cpu_per_request(row, server_cpu, load_cpu))
        _append_rows(args.out, rows)
        medians[name] = {key: median_of(rows, key)
                         for key in ("rps", "p50_us", "p99_us", "p999_us", "err",
                                     "server_cpu_us_per_req", "load_cpu_us_per_req")}
    print(f"\nmedians of {args.repeat} run(s) of {args.duration:g}s; rows in {args.out}; "
          f"reactors: server/load generator")
    print(f"{cpus()}; load average {load_before} before, {load_average()} after")
    print(f"{'scenario':<17}{'reactors':>16}{'req/s':>9}{'p50 us':>9}{'p99 us':>9}{'p999 us':>9}"
          f"{'errors':>8}{'cpu us/req':>12}  target")
    for name, median in medians.items():
        *_, target_rps, target_p99 = SCENARIOS[name]
        target = "-"
        if target_rps:
            met = median["rps"] >= target_rps and median["p99_us"] <= target_p99
            target = f">= {target_rps} req/s, p99 <= {target_p99} us: {'met' if met else 'NOT met'}"
        reactors = f"{server_reactor(args)}/{load_reactor(args, name)}"
        print(f"{name:<17}{reactors:>16}{median['rps']:>9.0f}"
              f"{median['p50_us']:>9.0f}{median['p99_us']:>9.0f}{median['p999_us']:>9.0f}"
              f"{median['err']:>8.0f}{cpu_column(median):>12}  {target}")


def median_of(rows: list, key: str):
    """The median of column C{key}, or None if no row has a value there."""
    values = [float(row[key]) for row in rows if row[key] != ""]
    return statistics.median(values) if values else None


def cpu_per_request(row: dict, server_cpu, load_cpu: float) -> dict:
    """
    CPU microseconds per request of the server and of the load generator:
    on a shared host throughput moves with the neighbours' load much more
    than these do, so they are what to compare between two versions.
    """
    requests = max(int(row["total"]), 1)
    return {"server_cpu_us_per_req": "" if server_cpu is None else round(server_cpu / requests * 1e6, 1),
            "load_cpu_us_per_req": round(load_cpu / requests * 1e6, 1)}


def cpu_column(median: dict) -> str:
    """C{"server/load"} CPU microseconds per request."""
    server = median["server_cpu_us_per_req"]
    return f"{'-' if server is None else f'{server:.0f}'}/{median['load_cpu_us_per_req']:.0f}"


def _append_rows(path, rows):
    if not rows:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != list(rows[0]):
            # Rows of an older column set: keep them beside, start afresh.
            os.replace(path, path + ".old")
            print(f"{path} had other columns: moved to {path}.old")
            new = True
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
