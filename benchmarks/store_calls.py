"""
Benchmark: what one ledger call costs the process that makes it, on the
embedded store and on Redis, without a server or network clients around it.

    python benchmarks/store_calls.py [--calls withdraw,transfer,balance] [--stores memory,redis]
                                     [--count 40000] [--in-flight 16] [--repeat 5]
                                     [--sources DIR[,DIR...]]

Each measurement is a fresh process that opens 100 accounts, then keeps
--in-flight calls of one kind going (each answered call starts the next)
until --count have been answered, and reports its own CPU time per call
(user + system, from getrusage) and calls a second.  On Redis (a private
redis-server this script starts on a free port, without persistence) it
also reports the redis-server's CPU per call, from /proc.

This is the store path alone: the Python a call runs through on its way to
Redis and back (packing, the Deferred, the reply's parsing) and the system
calls of its round trip, shared among the calls of one reactor turn as they
are in a server.  A change to that path is not lost there among the
server's other work and the load generator's; on a shared host a run still
moves by a fifth from the next, so compare many interleaved pairs.
--sources names checkouts to take the store code from (the default: this
one), such as a ``git worktree`` of an earlier commit; every repetition
measures each source in turn (old, new, old, new), and the summary gives
the median of each.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import checkouts
from machine import cpus, load_average, process_cpu_seconds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNTS = 100


def measure(store_url: str, call: str, count: int, in_flight: int) -> dict:
    """One measurement, in this process: C{count} calls, C{in_flight} at a time."""
    from twisted.internet import defer, reactor
    from marketplace.store.factory import make_store

    store = make_store(store_url, reactor=reactor, key_prefix="bench:")
    store.startService()
    ledger = store.ledger
    calls = {
        "withdraw": lambda n: ledger.withdraw(str(n % ACCOUNTS), 1, idempotency_key=f"w{n}"),
        "transfer": lambda n: ledger.transfer(str(n % ACCOUNTS), str((n + 1) % ACCOUNTS), 1,
                                              idempotency_key=f"t{n}"),
        "balance": lambda n: ledger.balance(str(n % ACCOUNTS)),
    }
    start_call = calls[call]
    result = {}

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @defer.inlineCallbacks
    def run():
        try:
            for account in range(ACCOUNTS):
                yield ledger.open_account(str(account), 10**12)
            state = {"started": 0, "lanes": in_flight}
            done = defer.Deferred()

            def lane(_=None):
                # An embedded store answers at once: loop rather than recurse.
                while state["started"] < count:
                    state["started"] += 1
                    answered = start_call(state["started"])
                    if not answered.called:
                        answered.addBoth(lane)
                        return
                    answered.addErrback(lambda failure: None)
                state["lanes"] -= 1
                if state["lanes"] == 0:
                    done.callback(None)

            cpu, wall = cpu_seconds(), time.perf_counter()
            for _ in range(in_flight):
                reactor.callLater(0, lane)
            yield done
            cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
            result.update(cpu_us=cpu * 1e6 / count, calls_per_s=count / wall)
        finally:
            yield store.stopService()
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    return result


def child_main(argv) -> None:
    store_url, call, count, in_flight = argv
    print(json.dumps(measure(store_url, call, int(count), int(in_flight))))


def run_one(source: str, store_url: str, call: str, args, redis) -> dict:
    redis_cpu = process_cpu_seconds(redis.pid) if redis else None
    if redis:
        redis.flush()
    child = subprocess.run(
        [sys.executable, __file__, "--child", store_url, call, str(args.count), str(args.in_flight)],
        env=checkouts.environment(source), capture_output=True, text=True, timeout=600)
    if child.returncode != 0:
        raise SystemExit(f"the measurement failed ({call} on {store_url}):\n{child.stderr}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    if redis:
        # The accounts' opening is in it too: 100 scripts against count calls.
        result["redis_us"] = (process_cpu_seconds(redis.pid) - redis_cpu) * 1e6 / args.count
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="withdraw,transfer,balance")
    parser.add_argument("--stores", default="memory,redis")
    parser.add_argument("--count", type=int, default=40_000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sources", default=REPO,
                        help="comma-separated checkouts to take the store code from")
    args = parser.parse_args()
    sources = args.sources.split(",")
    labels = [checkouts.label(source) for source in sources]
    stores = args.stores.split(",")
    redis = None
    if "redis" in stores:
        sys.path.insert(0, REPO)
        from tradechat import PrivateRedis
        redis = PrivateRedis()
    print(f"{cpus()}; load average {load_average()} before")
    results = {}
    try:
        for repetition in range(args.repeat):
            for call in args.calls.split(","):
                for store in stores:
                    for source, label in zip(sources, labels):
                        url = redis.url if store == "redis" else "memory"
                        result = run_one(source, url, call, args, redis if store == "redis" else None)
                        results.setdefault((call, store, label), []).append(result)
                        print(f"  {repetition + 1}: {call:8} {store:6} {label:10} "
                              f"{result['cpu_us']:6.1f} us a call, {result['calls_per_s']:8.0f}/s"
                              + (f", redis-server {result['redis_us']:5.1f} us" if "redis_us" in result else ""),
                              flush=True)
    finally:
        if redis:
            redis.stop()
    print(f"load average {load_average()} after; medians of {args.repeat}:")
    print(f"{'call':9} {'store':6} {'source':10} {'us a call':>9} {'calls/s':>9} {'redis us':>9}")
    for (call, store, label), runs in results.items():
        redis_us = [run["redis_us"] for run in runs if "redis_us" in run]
        print(f"{call:9} {store:6} {label:10} {statistics.median(r['cpu_us'] for r in runs):9.1f} "
              f"{statistics.median(r['calls_per_s'] for r in runs):9.0f} "
              + (f"{statistics.median(redis_us):9.1f}" if redis_us else f"{'-':>9}"))


if __name__ == "__main__":
    main()
