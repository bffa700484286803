"""
Laptop-order benchmark: three replicas (``twist laptop-factory``, one
process each) on loopback and ``laptop-client`` in its own process; 8 and 64
customers, request types 1 (replicated orders) and 2 (linearizable reads);
prints requests/s and p50/p99 latency, then checks that 128 concurrent
customers connect without a single reset or failover.

    python benchmarks/laptop.py [--orders 2000] [--csv benchmarks/out/laptop.csv]

Needs the ``laptop-factory`` plugin to be installed (``pip install -e .``).
Figures depend on the machine and on whatever else runs on it.
"""

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PYTHON = sys.executable
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 30.0


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_replicas(ports, work):
    processes = []
    for i, port in enumerate(ports):
        argv = [PYTHON, "-m", "twisted", f"--log-file={os.path.join(work, f'replica-{i}.log')}",
                "laptop-factory", "--id", str(i), "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024"]
        for peer, peer_port in enumerate(ports):
            if peer != i:
                argv += ["--peer", f"{peer}=tcp:127.0.0.1:{peer_port}"]
        processes.append(subprocess.Popen(argv, cwd=work))
    return processes


def client(ports, customers, orders, request_type, extra=()):
    """Run laptop-client against the first replica, failing over to the others."""
    argv = [PYTHON, "-m", "marketplace.laptop.client", "--progress", "0", "127.0.0.1",
            str(ports[0]), str(customers), str(orders), str(request_type)]
    for port in ports[1:]:
        argv += ["-r", f"127.0.0.1:{port}"]
    done = subprocess.run(argv + list(extra), capture_output=True, text=True, timeout=600,
                          cwd=REPOSITORY)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="requests per customer at 8 customers")
    parser.add_argument("--csv", default=os.path.join(REPOSITORY, "benchmarks", "out", "laptop.csv"),
                        help="write the figures to this CSV file too")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="laptop-bench-")
    ports = free_ports(3)
    processes = start_replicas(ports, work)
    rows = []
    try:
        wait_for_cluster(ports)
        print("customers  type  requests  requests/s      p50 us  p99 us  failed")
        for customers in (8, 64):
            orders = max(1, args.orders * 8 // customers)
            for request_type in (1, 2):
                figures = client(ports, customers, orders, request_type)
                row = (customers, request_type, customers * orders, figures["throughput"],
                       figures["p50"], figures["p99"], figures["failed"])
                rows.append(row)
                print("%9d  %4d  %8d  %10.0f  %10.0f  %6.0f  %6d" % row)
        figures = client(ports, 128, 20, 1)
        print("128 concurrent customers: %d failed, %d failovers (a reset forces a failover)"
              % (figures["failed"], figures["failovers"]))
        healthy = figures["failovers"] == 0 and not any(row[-1] for row in rows)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["customers", "type", "requests", "requests_per_s", "p50_us", "p99_us",
                             "failed"])
            writer.writerows(rows)
    if not healthy:
        raise SystemExit("some requests failed or customers were reset")


if __name__ == "__main__":
    main()
