"""
Benchmark: the trading chatroom server under tradechat-bench on loopback.

    python benchmarks/tradechat.py [--duration 10] [--repeat 3] [--out benchmarks/out/tradechat.csv]
                                   [--scenarios mixed-100,trade-200] [--stores memory,redis,sentinel]
                                   [--workers 1,2] [--processes 1] [--reactor poll]
                                   [--load-reactor poll] [--sources DIR[,DIR...]]

The matrix is every scenario x store x worker count (x source).  A store is
C{memory} (the embedded store), C{redis} (a private C{redis-server} this
script starts on a free port, without persistence, and empties before each
run), C{sentinel} (a private primary, its replica and a sentinel, reached
through C{redis+sentinel://}, so every money operation waits for the replica:
C{WAIT 1}), C{redis-floor} (the private redis-server, with the money
scripts replaced by one that does nothing: what the Redis path costs
before any store work, see C{benchmarks/redis_floor/}; its conservation
check fails by design) or a C{redis://} URL.  A worker count above 1 runs
C{twistd tradechat --workers N} (a master and N worker processes); it is
skipped, and says so, where the plugin has no C{--workers} option or
refuses the combination (the embedded store is private to one process).

For every scenario and repetition each configuration gets a fresh server
(C{twistd -n --pidfile= tradechat --compat}, so every transfer target exists), one
after the other, so that the configurations of one repetition ran under
the same neighbours' load; tradechat-bench then runs against it in
another process (or --processes load processes).  Each run appends a row
to --out (the bench's CSV columns plus the CPU figures); at the end a
summary table shows the medians of each configuration and, for each
Redis configuration, its ratio to the embedded store with one worker in
the same repetitions (and the Sentinel one's to C{redis} with one worker:
the cost of C{WAIT}), beside the machine it ran on: CPU count and model,
and the load average before and after.

--sources names checkouts to take the server's code from (by default this
one), such as a C{git worktree} of an earlier commit: every configuration
runs once from each, in turn, in every repetition (the load generator is
always this checkout's), and the summary gives each later source's req/s
and CPU per request against the first's in the same repetitions.

The CPU figures are microseconds per request, from /proc: of all server
processes (the master and its workers), of the redis-server, their sum,
and of the load generator.  On a shared host throughput moves with the
neighbours' load by a factor of two, CPU time per request much less, so
that is the figure to compare two versions of the code by.

The server runs on the platform's default reactor (epoll on Linux), as
C{twistd -n tradechat} does.  The load generator runs on tradechat-bench's
own default for the scenario's mix (C{poll} with chat, the platform's
default without; L{marketplace.tradechat.bench.default_reactor} says why).
--reactor and --load-reactor run every server or load generator on the
reactor given, to compare them.

The targets were set for a 2-core machine with client and server sharing it;
figures from a busier or smaller machine are not comparable.
"""

import argparse
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import checkouts
from machine import children_cpu_seconds, cpus, load_average, process_cpu_seconds, tree_cpu_seconds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR_OVERLAY = os.path.join(REPO, "benchmarks", "redis_floor")
sys.path.insert(0, REPO)
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")

from marketplace.tradechat.bench import PLATFORM_REACTOR, default_reactor  # noqa: E402
from marketplace.tradechat.benchmain import CONSERVATION_FAILED  # noqa: E402

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
#: The Redis targets: ratios to the embedded store with one worker, and the
#: CPU of server plus redis-server per request against the embedded server's.
REDIS_TARGETS = {"trade-200": 0.6, "mixed-100": 0.75}
REDIS_CPU_TARGET = 2.0
#: Seconds a server may take to listen.
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> bool:
    """Whether C{port} accepts connections before C{process} exits or the start timeout."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class PrivateRedis:
    """A redis-server on a free port in a temporary directory, without persistence."""

    def __init__(self, extra: list[str] = ()) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("the redis store needs redis-server (apt-get install -y redis-server)")
        self.directory = tempfile.mkdtemp(prefix="tradechat-bench-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory, *extra], stdout=subprocess.DEVNULL)
        if not wait_for_port(self.port, self.process):
            raise SystemExit("the private redis-server did not start")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def flush(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateSentinel:
    """
    A primary, its replica and one sentinel (quorum 1: nothing fails over
    here), each a redis-server on a free port without persistence; the
    store URL names the sentinel.  The CPU counted is the primary's.
    """

    def __init__(self) -> None:
        self.primary = PrivateRedis()
        self.replica = PrivateRedis(["--replicaof", "127.0.0.1", str(self.primary.port)])
        self.directory = tempfile.mkdtemp(prefix="tradechat-bench-sentinel-")
        port = free_port()
        config = os.path.join(self.directory, "sentinel.conf")
        with open(config, "w") as out:
            out.write(f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                      f"sentinel monitor bench 127.0.0.1 {self.primary.port} 1\n")
        self.process = subprocess.Popen(["redis-server", config, "--sentinel"],
                                        stdout=subprocess.DEVNULL)
        if not wait_for_port(port, self.process):
            raise SystemExit("the private sentinel did not start")
        self.url = f"redis+sentinel://127.0.0.1:{port}/bench/0?wait=1"
        try:
            self._wait_for_replica()
        except SystemExit:
            self.stop()
            raise

    def _wait_for_replica(self, timeout: float = 30.0) -> None:
        """
        Until the replica's first sync is done, it acknowledges no write:
        every durable write would answer unavailable (a login SERVER_BUSY).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replication = subprocess.run(["redis-cli", "-p", str(self.replica.port), "info", "replication"],
                                         capture_output=True, text=True).stdout
            if "master_link_status:up" in replication:
                return
            time.sleep(0.1)
        raise SystemExit(f"the private replica did not sync with its primary within {timeout:g} s")

    @property
    def pid(self) -> int:
        return self.primary.pid

    def flush(self) -> None:
        self.primary.flush()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.replica.stop()
        self.primary.stop()


def plugin_has_workers() -> bool:
    """Whether this build's tradechat plugin takes --workers."""
    usage = subprocess.run([TWISTD, "tradechat", "--help"], cwd=REPO, capture_output=True, text=True)
    return "--workers" in usage.stdout


class Config:
    """One cell of the matrix: a store and a worker count."""

    def __init__(self, store: str, workers: int, redis: PrivateRedis | PrivateSentinel | None,
                 source: str = REPO, label: str = "") -> None:
        self.store, self.workers, self.redis = store, workers, redis
        #: The checkout the server's code comes from, and its label in the
        #: configuration's name ("" when there is only one source).
        self.source, self.label = source, label

    @property
    def name(self) -> str:
        return config_name(self.store, self.workers, self.label)

    @property
    def url(self) -> str:
        return self.redis.url if self.redis is not None else self.store

    @property
    def environment(self) -> dict:
        """
        The server's environment: its source's code first, and for
        C{redis-floor} benchmarks/redis_floor/ before that.
        """
        if self.store != "redis-floor":
            return checkouts.environment(self.source)
        return checkouts.environment(self.source, FLOOR_OVERLAY)

    @property
    def redis_pid(self):
        return self.redis.pid if self.redis is not None else None


def config_name(store: str, workers: int, label: str = "") -> str:
    """C{redis/1w}, or with a source's label C{redis/1w@da5efe5}."""
    return f"{store}/{workers}w" + (f"@{label}" if label else "")


def start_server(args, config: Config, log_path: str):
    """The server under twistd on a free port, or None if it refused the configuration."""
    port = free_port()
    command = [TWISTD, "-n", "--pidfile=", "--logfile", log_path]
    if args.reactor:
        command.append(f"--reactor={args.reactor}")
    command += ["tradechat", "--listen", f"tcp:{port}:interface=127.0.0.1", "--compat",
                "--store", config.url]
    if config.workers > 1:
        command += ["--workers", str(config.workers)]
    output_path = log_path + ".out"
    with open(output_path, "wb") as output:
        server = subprocess.Popen(command, cwd=config.source, stdout=output, stderr=subprocess.STDOUT,
                                  env=config.environment)
    if wait_for_port(port, server):
        return server, port
    server.kill()
    server.wait(timeout=30)
    with open(output_path, errors="replace") as output:
        said = " ".join(output.read().split())[-300:]
    print(f"--- {config.name}: not run ({said})")
    return None, None


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def server_reactor(args):
    return args.reactor or PLATFORM_REACTOR


def load_reactor(args, name):
    return args.load_reactor or default_reactor(SCENARIOS[name][2])


def run_once(args, name, config: Config, csv_path: str, log_path: str):
    """
    One run of scenario C{name} on C{config}, its row appended to C{csv_path}.

    @return: the CPU seconds the server processes, the redis-server and the
        load generator used during the run (None where unknown), or None
        if the server refused the configuration.
    """
    connections, concurrency, mix, payload, _, _ = SCENARIOS[name]
    if config.redis is not None:
        config.redis.flush()
    server, port = start_server(args, config, log_path)
    if server is None:
        return None
    try:
        time.sleep(0.5)  # the compatibility accounts are opened once the store runs
        server_before = tree_cpu_seconds(server.pid)
        redis_before = process_cpu_seconds(config.redis_pid) if config.redis_pid else None
        load_before = children_cpu_seconds()
        bench = [sys.executable, "-m", "marketplace.tradechat.benchmain",
                 "--reactor", load_reactor(args, name), "--port", str(port),
                 "--connections", str(connections), "--concurrency", str(concurrency),
                 "--mix", mix, "--payload-size", str(payload), "--duration", str(args.duration),
                 "--processes", str(args.processes), "--out", csv_path]
        result = subprocess.run(bench, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, timeout=args.duration + 120)
        server_cpu = _delta(server_before, tree_cpu_seconds(server.pid))
        redis_cpu = _delta(redis_before,
                           process_cpu_seconds(config.redis_pid) if config.redis_pid else None)
        load_cpu = children_cpu_seconds() - load_before
        sys.stdout.write(f"--- {name} on {config.name} (server reactor {server_reactor(args)}, "
                         f"load generator reactor {load_reactor(args, name)})\n{result.stdout}")
        # The floor's balances never move, so its conservation check (and
        # only that: status 3) fails by design.
        forgiven = CONSERVATION_FAILED if config.store == "redis-floor" else None
        if result.returncode not in (0, forgiven):
            said = " ".join(result.stderr.split())[-300:]
            raise SystemExit(f"tradechat-bench failed in {name} on {config.name}: {said}")
        return server_cpu, redis_cpu, load_cpu
    finally:
        stop_server(server)


def _delta(before, after):
    return None if before is None or after is None else after - before


def configs(args, private: dict) -> list[Config]:
    workers = [int(n) for n in args.workers.split(",")]
    if any(n > 1 for n in workers) and not plugin_has_workers():
        print("the tradechat plugin has no --workers option: worker counts above 1 are skipped")
        workers = [n for n in workers if n == 1]
    sources = args.sources.split(",")
    return [Config(store, n, private.get(store), source, label)
            for n in workers for store in args.stores.split(",")
            for source, label in zip(sources, checkouts.labels(sources))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="memory,redis",
                        help="comma-separated: memory, redis (a private redis-server), sentinel (a "
                             "private primary, replica and sentinel), redis-floor (redis with money "
                             "scripts that do nothing) or redis:// URLs")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1,
                        help="load-generating processes of tradechat-bench")
    parser.add_argument("--reactor", default=None,
                        help="Twisted reactor of every server (e.g. epoll, poll, select; by default "
                             "the platform's default)")
    parser.add_argument("--load-reactor", default=None,
                        help="Twisted reactor of every scenario's load generator (by default "
                             "each scenario's own)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--sources", default=REPO,
                        help="comma-separated checkouts to take the server's code from, measured in "
                             "turn (by default this one)")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "out", "tradechat.csv"))
    args = parser.parse_args()
    names = args.scenarios.split(",")
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    private = {}
    try:
        stores = args.stores.split(",")
        for store, start in (("redis", PrivateRedis), ("sentinel", PrivateSentinel)):
            if store in stores:
                private[store] = start()
        if "redis-floor" in stores:
            private["redis-floor"] = private.get("redis") or PrivateRedis()
        run_matrix(args, names, configs(args, private))
    finally:
        for server in set(private.values()):
            server.stop()


def run_matrix(args, names, matrix):
    load_before = load_average()
    print(f"{cpus()}; client and server share them; configurations {', '.join(c.name for c in matrix)}; "
          f"reactors {server_reactor(args)} (server), {args.load_reactor or 'per scenario'} (load); "
          f"{args.processes} load process(es); load average {load_before}")
    medians, ratios = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        log_path = os.path.join(scratch, "server.log")
        for name in names:
            rows = {config.name: [] for config in matrix}
            for _ in range(args.repeat):
                for config in matrix:
                    csv_path = os.path.join(scratch, f"{name}-{len(rows[config.name])}.csv")
                    cpu = run_once(args, name, config, csv_path, log_path)
                    if cpu is None:
                        continue
                    (row,) = list(csv.DictReader(open(csv_path)))
                    row.update({"scenario": name, "store": config.store, "workers": config.workers,
                                "source": config.label or checkouts.label(config.source)},
                               **cpu_per_request(row, *cpu))
                    rows[config.name].append(row)
                    os.remove(csv_path)
            for config in matrix:
                _append_rows(args.out, rows[config.name])
                if rows[config.name]:
                    medians[name, config.name] = {key: median_of(rows[config.name], key) for key in (
                        "rps", "p50_us", "p99_us", "err", "server_cpu_us_per_req",
                        "redis_cpu_us_per_req", "total_cpu_us_per_req", "load_cpu_us_per_req")}
            ratios.update(same_run_ratios(name, matrix, rows))
    print(f"\nmedians of {args.repeat} run(s) of {args.duration:g}s; rows in {args.out}")
    print(f"{cpus()}; load average {load_before} before, {load_average()} after")
    width = max(14, *(len(config.name) + 1 for config in matrix))
    print(f"{'scenario':<17}{'config':>{width}}{'req/s':>9}{'p50 us':>9}{'p99 us':>9}{'errors':>8}"
          f"{'cpu us/req: server + redis = total; load':>44}  target")
    for name in names:
        for config in matrix:
            median = medians.get((name, config.name))
            if median is None:
                continue
            *_, target_rps, target_p99 = SCENARIOS[name]
            target = "-"
            if target_rps and (config.store, config.workers) == ("memory", 1):
                met = median["rps"] >= target_rps and median["p99_us"] <= target_p99
                target = f">= {target_rps} req/s, p99 <= {target_p99} us: {'met' if met else 'NOT met'}"
            if (name, config.name) in ratios:
                target = ratios[name, config.name] if target == "-" else f"{target}; {ratios[name, config.name]}"
            print(f"{name:<17}{config.name:>{width}}{median['rps']:>9.0f}{median['p50_us']:>9.0f}"
                  f"{median['p99_us']:>9.0f}{median['err']:>8.0f}{cpu_column(median):>44}  {target}")


def same_run_ratios(name, matrix, rows) -> dict:
    """
    For each configuration but the embedded store with one worker: the
    median over repetitions of its req/s and total CPU per request
    divided by the embedded store's (of the same source) in the same
    repetition; for a Sentinel configuration also against C{redis}; and
    for each source after the first, against the first source's same
    configuration.
    """
    first_label = matrix[0].label
    found = {}
    for config in matrix:
        if not rows[config.name]:
            continue
        texts = []
        embedded = config_name("memory", 1, config.label)
        if config.name != embedded and rows.get(embedded):
            texts.append(_embedded_ratio(name, config, rows[embedded], rows[config.name]))
        if config.store == "sentinel":
            texts.append(_wait_cost(config, rows))
        if config.label != first_label:
            texts.append(_against_first_source(config, rows, first_label))
        texts = [text for text in texts if text]
        if texts:
            found[name, config.name] = "; ".join(texts)
    return found


def _pairs(base_rows, rows):
    """
    The req/s of C{base_rows} and C{rows} paired by repetition, and their
    total CPU per request likewise (where both are known).
    """
    pairs = list(zip(base_rows, rows))
    rates = [(float(b["rps"]), float(r["rps"])) for b, r in pairs]
    cpu = [(float(b["total_cpu_us_per_req"]), float(r["total_cpu_us_per_req"]))
           for b, r in pairs if r["total_cpu_us_per_req"] != "" and b["total_cpu_us_per_req"] != ""]
    return rates, cpu


def _median_ratio(pairs) -> float:
    return statistics.median(other / base for base, other in pairs)


def _embedded_ratio(name, config, base_rows, rows) -> str:
    rates, cpu_pairs = _pairs(base_rows, rows)
    rps = _median_ratio(rates)
    text = f"{rps:.2f}x the embedded req/s"
    cpu = _median_ratio(cpu_pairs) if cpu_pairs else None
    if cpu is not None:
        text += f", {cpu:.2f}x its CPU a request"
    if config.store == "redis-floor":
        text += " (the floor: money scripts that do nothing)"
    elif config.store != "memory" and name in REDIS_TARGETS:
        met = rps >= REDIS_TARGETS[name] and (cpu is None or cpu <= REDIS_CPU_TARGET)
        text += (f" (target >= {REDIS_TARGETS[name]}x, CPU <= {REDIS_CPU_TARGET:g}x: "
                 f"{'met' if met else 'NOT met'})")
    return text


def _wait_cost(config, rows) -> str:
    """For a Sentinel configuration: its req/s and CPU against C{redis} in the same repetitions."""
    plain = rows.get(config_name("redis", config.workers, config.label), [])
    if not plain:
        return ""
    rates, cpu_pairs = _pairs(plain, rows[config.name])
    text = f"WAIT: {_median_ratio(rates):.2f}x the redis req/s"
    if cpu_pairs:
        text += f", {statistics.median(r - b for b, r in cpu_pairs):+.0f} us CPU a request"
    return text


def _against_first_source(config, rows, first_label) -> str:
    """This configuration's req/s and CPU against the first source's in the same repetitions."""
    first = config_name(config.store, config.workers, first_label)
    if not rows.get(first):
        return ""
    return f"against {first}: " + checkouts.compared(*_pairs(rows[first], rows[config.name]),
                                                      "req/s", "a request")


def median_of(rows: list, key: str):
    """The median of column C{key}, or None if no row has a value there."""
    values = [float(row[key]) for row in rows if row[key] not in ("", None)]
    return statistics.median(values) if values else None


def cpu_per_request(row: dict, server_cpu, redis_cpu, load_cpu: float) -> dict:
    """
    CPU microseconds per request of the server processes, the redis-server,
    both, and the load generator: on a shared host throughput moves with
    the neighbours' load much more than these do, so they are what to
    compare between two versions.
    """
    requests = max(int(row["total"]), 1)

    def per_request(seconds):
        return "" if seconds is None else round(seconds / requests * 1e6, 1)

    total = None if server_cpu is None else server_cpu + (redis_cpu or 0)
    return {"server_cpu_us_per_req": per_request(server_cpu),
            "redis_cpu_us_per_req": per_request(redis_cpu),
            "total_cpu_us_per_req": per_request(total),
            "load_cpu_us_per_req": per_request(load_cpu)}


def cpu_column(median: dict) -> str:
    """C{"server + redis = total; load"} CPU microseconds per request."""
    def shown(key):
        value = median[key]
        return "-" if value is None else f"{value:.0f}"
    return (f"{shown('server_cpu_us_per_req')} + {shown('redis_cpu_us_per_req')} = "
            f"{shown('total_cpu_us_per_req')}; {shown('load_cpu_us_per_req')}")


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
