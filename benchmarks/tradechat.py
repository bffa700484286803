"""
Benchmark: the trading chatroom server under tradechat-bench on loopback.

    python benchmarks/tradechat.py [--duration 10] [--repeat 3] [--out benchmarks/out/tradechat.csv]
                                   [--scenarios mixed-100,trade-200] [--store memory]
                                   [--processes 1] [--reactor epoll]

For every scenario and repetition a fresh server process is started
(compatibility profile, so every transfer target exists; embedded store
unless --store says otherwise; one process), then tradechat-bench runs
against it in another process (or --processes load processes).  Each run
appends a row to --out (the bench's CSV columns); at the end a summary table
shows the median of the runs of each scenario next to the issue's targets
where it has one, and the machine it ran on: CPU count and model, and the
load average before and after, since other work on the machine skews the
figures.  --reactor runs the server on another Twisted reactor (as
C{twistd --reactor NAME} would), to compare them.

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

from machine import cpus, load_average

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

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
    if reactor_name:
        from twisted.application.reactors import installReactor
        installReactor(reactor_name)
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


def run_once(args, name, csv_path):
    connections, concurrency, mix, payload, _, _ = SCENARIOS[name]
    serve_arguments = ["--serve", "--store", args.store]
    if args.reactor:
        serve_arguments += ["--reactor", args.reactor]
    server = subprocess.Popen([sys.executable, __file__, *serve_arguments],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        port = json.loads(server.stdout.readline())["port"]
        bench = [sys.executable, "-m", "marketplace.tradechat.bench", "--port", str(port),
                 "--connections", str(connections), "--concurrency", str(concurrency),
                 "--mix", mix, "--payload-size", str(payload), "--duration", str(args.duration),
                 "--processes", str(args.processes), "--out", csv_path]
        result = subprocess.run(bench, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, timeout=args.duration + 120)
        sys.stdout.write(f"--- {name}\n{result.stdout}")
        if result.returncode != 0:
            raise SystemExit(f"tradechat-bench failed in {name}")
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
                        help="Twisted reactor of the server (e.g. epoll, poll, select)")
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
          f"server reactor {args.reactor or 'default'}; {args.processes} load process(es); "
          f"load average {load_before}")
    medians = {}
    for name in names:
        with tempfile.NamedTemporaryFile("r", suffix=".csv") as scratch:
            for _ in range(args.repeat):
                run_once(args, name, scratch.name)
            rows = list(csv.DictReader(open(scratch.name)))
        _append_rows(args.out, rows)
        medians[name] = {key: statistics.median(float(row[key]) for row in rows)
                         for key in ("rps", "p50_us", "p99_us", "p999_us", "err")}
    print(f"\nmedians of {args.repeat} run(s) of {args.duration:g}s; rows in {args.out}")
    print(f"{cpus()}; load average {load_before} before, {load_average()} after")
    print(f"{'scenario':<17}{'req/s':>9}{'p50 us':>9}{'p99 us':>9}{'p999 us':>9}{'errors':>8}  target")
    for name, median in medians.items():
        *_, target_rps, target_p99 = SCENARIOS[name]
        target = "-"
        if target_rps:
            met = median["rps"] >= target_rps and median["p99_us"] <= target_p99
            target = f">= {target_rps} req/s, p99 <= {target_p99} us: {'met' if met else 'NOT met'}"
        print(f"{name:<17}{median['rps']:>9.0f}{median['p50_us']:>9.0f}{median['p99_us']:>9.0f}"
              f"{median['p999_us']:>9.0f}{median['err']:>8.0f}  {target}")


def _append_rows(path, rows):
    if not rows:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
