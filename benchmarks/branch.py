"""
Benchmark: one aggregator run against many branch servers on loopback.

    python benchmarks/branch.py [--branches 200] [--silent 10] [--repeat 3]

A child process serves every branch (each on its own port, each with its own
CSV) plus the silent branches (accept, never answer).  This process then
times full runs of the aggregator (query all, append to main.csv in a temp
directory) first against the answering branches only, then with the silent
ones in their place, where a run must end within the reply timeout plus a
small margin.  Figures go to stdout, one CSV line per run to --out if given.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def serve(count, silent, directory):
    """
    Child side: serve C{count} branches and C{silent} silent listeners,
    print their endpoint strings as one JSON line, run until stdin closes.
    """
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Factory, Protocol

    from marketplace.branch.tap import branch_listener
    from marketplace.net import Listener

    listeners = []
    for n in range(count):
        path = os.path.join(directory, f"branch{n}.csv")
        with open(path, "w") as f:
            f.write("date,amount\n" + "".join(f"2025-01-{d:02},{n}.{d:02}\n" for d in range(1, 29)))
        listeners.append(branch_listener(f"B{n}", path, listen="tcp:0:interface=127.0.0.1"))
    silent_factory = Factory.forProtocol(Protocol)
    listeners += [Listener("tcp:0:interface=127.0.0.1", silent_factory) for _ in range(silent)]
    for listener in listeners:
        listener.startService()

    class ExitOnEOF(Protocol):
        def connectionLost(self, reason):
            reactor.stop()

    def announce():
        ports = [f"tcp:127.0.0.1:{listener.port.getHost().port}" for listener in listeners]
        sys.stdout.write(json.dumps({"branches": ports[:count], "silent": ports[count:]}) + "\n")
        sys.stdout.flush()

    reactor.callWhenRunning(announce)
    stdio.StandardIO(ExitOnEOF())
    reactor.run()


def measure(args, endpoints):
    from twisted.internet.defer import inlineCallbacks
    from twisted.internet.task import react

    from marketplace.branch.aggregate import Limits, aggregate_into

    limits = Limits(connect=args.connect_timeout, reply=args.reply_timeout, run=args.run_timeout)
    main = os.path.join(args.directory, "main.csv")
    silent_run = endpoints["branches"][: len(endpoints["branches"]) - len(endpoints["silent"])]
    silent_run += endpoints["silent"]
    plans = [("all answering", endpoints["branches"])] * args.repeat
    if endpoints["silent"]:
        plans.append((f"{len(endpoints['silent'])} silent", silent_run))

    @inlineCallbacks
    def run_all(reactor):
        print(f"{len(os.sched_getaffinity(0))} CPUs, reply timeout {limits.reply:g}s")
        print("run,branches,answered,wall_s,branches_per_s")
        for label, plan in plans:
            started = time.perf_counter()
            results = yield aggregate_into(main, plan, limits, 10.0, reactor)
            wall = time.perf_counter() - started
            answered = sum(result.answered for result in results)
            line = f"{label},{len(plan)},{answered},{wall:.3f},{len(plan) / wall:.0f}"
            print(line)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
            if label.endswith("silent"):
                bound = limits.reply + args.margin
                verdict = "within" if wall <= bound else "OVER"
                print(f"  {verdict} reply timeout + margin ({bound:g}s)")

    react(run_all)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--silent", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="runs with all branches answering")
    parser.add_argument("--connect-timeout", type=float, default=3.0)
    parser.add_argument("--reply-timeout", type=float, default=2.0)
    parser.add_argument("--run-timeout", type=float, default=10.0)
    parser.add_argument("--margin", type=float, default=0.5, help="allowed slack for silent runs")
    parser.add_argument("--out", help="append one CSV line per run to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 <= args.silent <= args.branches:
        parser.error("--silent must be between 0 and --branches")
    if args.serve:
        with tempfile.TemporaryDirectory(prefix="branch-csv-") as directory:
            serve(args.branches, args.silent, directory)
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--branches", str(args.branches),
         "--silent", str(args.silent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        endpoints = json.loads(child.stdout.readline())
        with tempfile.TemporaryDirectory(prefix="branch-bench-") as args.directory:
            measure(args, endpoints)
    finally:
        child.stdin.close()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
