"""
Laptop-order benchmark: three replicas (``twist laptop-factory``, one
process each) on loopback and ``laptop-client`` in its own process; 8 and 64
customers, request types 1 (replicated orders) and 2 (linearizable reads);
prints the median of ``--runs`` runs of requests/s and p50/p99 latency, and
the CPU time each process spent per request, then checks that 128 concurrent
customers connect without a single reset or failover.

    python benchmarks/laptop.py [--orders 2000] [--runs 3] [--csv benchmarks/out/laptop.csv]
    python benchmarks/laptop.py --compare OTHER_CHECKOUT [--pairs 3] [--orders 10000] [--fsync]

``--compare`` measures this checkout against another build of the servers
(another checkout of the repository, run by the Python of its ``.venv``),
both driven by this checkout's client: 8 customers placing orders, runs
interleaved other, this, other, this (a fresh cluster for each run), and
prints each run and the medians of orders/s, p50/p99 and the CPU
microseconds each replica spent per acknowledged order (from
/proc/PID/stat), with this build's figures as a ratio of the other's.
With ``--fsync`` the replicas keep their state on disk and fsync it
(``--fsync``) instead of running ``--memory-only``; the plain
``--orders``/``--runs`` mode takes ``--fsync`` too.

Every type 1 run places orders with numbers no run used before: a repeated
order number is answered without replication, which would flatter the
figures.  Figures depend on the machine and on whatever else runs on it, so
the machine and its load average are printed with them.
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from machine import children_cpu_seconds, cpus, load_average, process_cpu_seconds

PYTHON = sys.executable
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

from tests.support.services import free_ports  # noqa: E402  (needs the repository on the path)

START_TIMEOUT = 30.0


def start_replicas(ports, work, fsync=False, repository=REPOSITORY, python=PYTHON):
    """
    Three replicas of the build in C{repository}, run by C{python}: in
    memory only, or keeping their state under C{work} and fsyncing it.
    """
    processes = []
    durability = ["--fsync"] if fsync else ["--memory-only"]
    for i, port in enumerate(ports):
        argv = [python, "-m", "twisted", f"--log-file={os.path.join(work, f'replica-{i}.log')}",
                "laptop-factory", "--id", str(i), *durability,
                "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024"]
        for peer, peer_port in enumerate(ports):
            if peer != i:
                argv += ["--peer", f"{peer}=tcp:127.0.0.1:{peer_port}"]
        processes.append(subprocess.Popen(argv, cwd=work, env=_environment(repository)))
    return processes


def stop_replicas(processes):
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=10)


def _environment(repository=REPOSITORY):
    """The repository on the path, so the plugin is found without an install."""
    environment = dict(os.environ)
    path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = repository + (os.pathsep + path if path else "")
    return environment


def client(ports, customers, orders, request_type, extra=()):
    """Run laptop-client against the first replica, failing over to the others."""
    argv = [PYTHON, "-m", "marketplace.laptop.client", "--progress", "0", "127.0.0.1",
            str(ports[0]), str(customers), str(orders), str(request_type)]
    for port in ports[1:]:
        argv += ["-r", f"127.0.0.1:{port}"]
    done = subprocess.run(argv + list(extra), capture_output=True, text=True, timeout=600,
                          cwd=REPOSITORY, env=_environment())
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or len(lines) < 2:
        raise RuntimeError(f"laptop-client failed ({done.returncode}): {done.stdout}{done.stderr}")
    figures = {}
    for line in lines[-2:]:
        for field in line.split("\t"):
            name, value = field.split(": ")
            figures[name] = float(value)
    return figures


def wait_for_cluster(ports):
    """A first order succeeds once a primary is elected (bounded by START_TIMEOUT)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            client(ports, 1, 1, 1, ["--deadline", "5"])
            return
        except RuntimeError:
            time.sleep(0.5)
    raise RuntimeError("the cluster did not elect a primary in time")


def measure(ports, processes, customers, orders, request_type, first_order):
    """
    One client run; adds each replica's CPU microseconds per request (highest
    first: the primary's) and the client's, which includes its start-up.
    """
    replicas_before = [process_cpu_seconds(process.pid) for process in processes]
    client_before = children_cpu_seconds()
    extra = ["--first-order", str(first_order)] if request_type == 1 else []
    figures = client(ports, customers, orders, request_type, extra)
    requests = customers * orders
    replica_cpu = [process_cpu_seconds(process.pid) - before
                   for process, before in zip(processes, replicas_before)]
    figures["replica_cpu_us"] = sorted((1e6 * spent / requests for spent in replica_cpu),
                                       reverse=True)
    figures["client_cpu_us"] = 1e6 * (children_cpu_seconds() - client_before) / requests
    return figures


COMPARED_CUSTOMERS = 8


def primary_first(ports, work):
    """
    C{ports} with the primary's first, read from the replicas' logs (each
    tells only of itself): a client sent to a backup has every order forwarded, which
    costs another hop and would make runs incomparable.
    """
    for i, port in enumerate(ports):
        with open(os.path.join(work, f"replica-{i}.log")) as log:
            if "is primary of view" in log.read():
                return [port] + [p for p in ports if p != port]
    return ports


def compare_run(repository, python, orders, fsync):
    """One run of 8 customers placing orders on a fresh cluster of the build in C{repository}."""
    work = tempfile.mkdtemp(prefix="laptop-compare-")
    ports = free_ports(3)
    processes = start_replicas(ports, work, fsync, repository, python)
    started = list(processes)
    try:
        wait_for_cluster(ports)
        ordered = primary_first(ports, work)
        processes = [processes[ports.index(port)] for port in ordered]
        return measure(ordered, processes, COMPARED_CUSTOMERS, orders, 1, 1_000_000)
    finally:
        stop_replicas(started)
        shutil.rmtree(work, ignore_errors=True)


def compare(args):
    """Interleaved runs of the other build and this one; medians, and this one's ratios."""
    other = os.path.abspath(args.compare)
    other_python = os.path.join(other, ".venv", "bin", "python")
    if not os.path.exists(other_python):
        raise SystemExit(f"{other_python} is missing: create the other checkout's virtualenv first")
    builds = (("other", other, other_python), ("this", REPOSITORY, PYTHON))
    results = {name: [] for name, _, _ in builds}
    print(f"{cpus()}, load average {load_average()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"other: {other}; {'--fsync' if args.fsync else '--memory-only'}; "
          f"{COMPARED_CUSTOMERS} customers x {args.orders} orders")
    print("build  orders/s  p50 us  p99 us  cpu us/order: replicas (primary first) = total  load")
    for _ in range(args.pairs):
        for name, repository, python in builds:
            run = compare_run(repository, python, args.orders, args.fsync)
            if run["failed"]:
                raise SystemExit(f"{name}: {int(run['failed'])} orders failed")
            results[name].append(run)
            cpu = run["replica_cpu_us"]
            print("%-5s  %8.0f  %6.0f  %6.0f  %s = %.0f  %s" % (
                name, run["throughput"], run["p50"], run["p99"],
                "/".join("%.0f" % us for us in cpu), sum(cpu), load_average()))
    medians = {}
    for name, runs in results.items():
        medians[name] = {
            "throughput": statistics.median(run["throughput"] for run in runs),
            "p50": statistics.median(run["p50"] for run in runs),
            "p99": statistics.median(run["p99"] for run in runs),
            "cpu": [statistics.median(run["replica_cpu_us"][i] for run in runs) for i in range(3)],
            "total": statistics.median(sum(run["replica_cpu_us"]) for run in runs),
        }
        m = medians[name]
        print("median %-5s  %8.0f orders/s  p50 %.0f us  p99 %.0f us  cpu us/order %s = %.0f"
              % (name, m["throughput"], m["p50"], m["p99"], "/".join("%.0f" % us for us in m["cpu"]),
                 m["total"]))
    print("this / other: orders/s %.2fx, cpu per order %.2fx"
          % (medians["this"]["throughput"] / medians["other"]["throughput"],
             medians["this"]["total"] / medians["other"]["total"]))
    print(f"load average {load_average()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=None,
                        help="requests per customer at 8 customers (default 2000; 10000 with --compare)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--fsync", action="store_true",
                        help="replicas keep their state on disk and fsync it (default: --memory-only)")
    parser.add_argument("--compare", metavar="CHECKOUT",
                        help="compare with the servers of another checkout (with a .venv)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="with --compare: interleaved pairs of runs")
    parser.add_argument("--csv", default=os.path.join(REPOSITORY, "benchmarks", "out", "laptop.csv"),
                        help="write the figures to this CSV file too")
    args = parser.parse_args()
    if args.compare:
        args.orders = args.orders or 10_000
        compare(args)
        return
    args.orders = args.orders or 2000
    work = tempfile.mkdtemp(prefix="laptop-bench-")
    ports = free_ports(3)
    print(f"{cpus()}, load average {load_average()}")
    processes = start_replicas(ports, work, args.fsync)
    rows = []
    # Order numbers of earlier runs (and of the start-up probe) lie below this.
    first_order = 1_000_000
    try:
        wait_for_cluster(ports)
        print("customers  type  requests  requests/s      p50 us  p99 us  failed"
              "  cpu us/request: replicas; client")
        for customers in (8, 64):
            orders = max(1, args.orders * 8 // customers)
            for request_type in (1, 2):
                runs = []
                for _ in range(max(1, args.runs)):
                    runs.append(measure(ports, processes, customers, orders, request_type,
                                        first_order))
                    first_order += orders

                def median(key):
                    return statistics.median(run[key] for run in runs)

                replica_cpu = [statistics.median(run["replica_cpu_us"][i] for run in runs)
                               for i in range(len(processes))]
                row = (customers, request_type, customers * orders, median("throughput"),
                       median("p50"), median("p99"), int(sum(run["failed"] for run in runs)),
                       round(replica_cpu[0]), round(replica_cpu[1]), round(replica_cpu[2]),
                       round(median("client_cpu_us")))
                rows.append(row)
                print("%9d  %4d  %8d  %10.0f  %10.0f  %6.0f  %6d  %d/%d/%d; %d" % row)
        figures = client(ports, 128, 20, 1, ["--first-order", str(first_order)])
        print("128 concurrent customers: %d failed, %d failovers (a reset forces a failover)"
              % (figures["failed"], figures["failovers"]))
        print(f"{cpus()}, load average {load_average()}")
        healthy = figures["failovers"] == 0 and not any(row[6] for row in rows)
    finally:
        stop_replicas(processes)
        shutil.rmtree(work, ignore_errors=True)
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["customers", "type", "requests", "requests_per_s", "p50_us", "p99_us",
                             "failed", "primary_cpu_us", "backup_a_cpu_us", "backup_b_cpu_us",
                             "client_cpu_us"])
            writer.writerows(rows)
    if not healthy:
        raise SystemExit("some requests failed or customers were reset")


if __name__ == "__main__":
    main()
