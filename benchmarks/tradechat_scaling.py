"""
What bounds the trading chatroom on Redis as load grows: the figures behind
docs/scaling.md.

    python benchmarks/tradechat_scaling.py [--requests 2000] [--connections 2000]
                                           [--duration 5] [--skip-throughput]

It starts a private redis-server (no persistence) on a free port and the
server under twistd against it, then measures:

- Redis work per request: the commands Redis executed (those a Lua
  script runs included) and Redis's CPU time, per request of each kind,
  from INFO commandstats and INFO cpu around a run of one kind;
- pub/sub fan-out: Redis CPU per chat message as the processes subscribed
  to the room grow (each subscriber is one more write per message);
- memory per connection: the serving process's resident set before and
  after opening --connections logged-in idle connections;
- throughput with 1 and 2 workers (tradechat-bench, trade-heavy and mixed,
  --duration seconds each), unless --skip-throughput.

The figures depend on the machine and on what else runs on it: it prints
the CPU count and model and the load average with them.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

from machine import cpus, load_average

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


class Redis:
    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory], stdout=subprocess.DEVNULL)
        wait_for_port(self.port)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def info(self, section: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), "info", section],
                              capture_output=True, text=True, check=True).stdout

    def snapshot(self):
        calls = {name: int(n) for name, n in
                 re.findall(r"cmdstat_([\w|]+):calls=(\d+)", self.info("commandstats"))}
        cpu = dict(re.findall(r"(used_cpu_(?:user|sys)):([\d.]+)", self.info("cpu")))
        return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


class Server:
    def __init__(self, store: str, workers: int, directory: str, *extra: str) -> None:
        """The plugin's defaults but a large opening balance: no request is refused."""
        self.port = free_port()
        self.process = subprocess.Popen(
            [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile", os.devnull,
             "tradechat", "--listen", f"tcp:{self.port}:interface=127.0.0.1",
             "--store", store, "--workers", str(workers), "--opening-balance", "1000000000",
             *extra],
            cwd=directory)
        wait_for_port(self.port)

    def rss_kib(self) -> int:
        """The resident set of the serving process and of its workers, if any."""
        pids = [self.process.pid] + [
            int(pid) for pid in subprocess.run(["pgrep", "-P", str(self.process.pid)],
                                               capture_output=True, text=True).stdout.split()]
        total = 0
        for pid in pids:
            with open(f"/proc/{pid}/status") as status:
                total += int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def per_request(redis: Redis, run, count: int):
    """Run C{run()} and return (Redis commands by name, Redis CPU us) per request."""
    calls_before, cpu_before = redis.snapshot()
    run()
    calls_after, cpu_after = redis.snapshot()
    delta = {name: (calls_after[name] - calls_before.get(name, 0)) / count
             for name in calls_after
             if calls_after[name] != calls_before.get(name, 0) and name != "info"}
    return delta, (cpu_after - cpu_before) * 1e6 / count


def drive(port: int, scenario: str, count: int, members: int = 0) -> None:
    """Send C{count} requests of one kind through one client (its own process)."""
    subprocess.run([sys.executable, __file__, "--client", scenario, "--port", str(port),
                    "--requests", str(count), "--members", str(members)], check=True)


def client_main(scenario: str, port: int, count: int, members: int) -> None:
    from twisted.internet import defer, task

    from marketplace.tradechat.remote import TradeChatClient

    @defer.inlineCallbacks
    def main(reactor):
        address = f"tcp:127.0.0.1:{port}"
        listeners = []
        for n in range(members):
            listener = yield TradeChatClient.connect(address, reactor, on_push=lambda _: None)
            yield listener.login(f"listener{n}")
            yield listener.join(1)
            listeners.append(listener)
        if scenario == "login":
            for n in range(count):
                client = yield TradeChatClient.connect(address, reactor)
                yield client.login(f"login{n}")
                yield client.close()
            return
        payee = yield TradeChatClient.connect(address, reactor)
        payee_id = (yield payee.login("payee")).user_id
        client = yield TradeChatClient.connect(address, reactor)
        yield client.login("driver")
        yield client.join(1)
        for n in range(count):
            if scenario == "deposit":
                yield client.deposit(1)
            elif scenario == "transfer":
                yield client.transfer(payee_id, 1)
            elif scenario == "balance":
                yield client.balance()
            elif scenario == "chat":
                yield client.say(1, b"x" * 32)
        for other in [*listeners, payee, client]:
            yield other.close()

    task.react(main)


def hold_connections(port: int, count: int, join: bool) -> None:
    """
    Open C{count} logged-in idle connections (members of room 1 with
    C{join}), report, then wait for stdin to close.
    """
    from twisted.internet import defer, stdio, task
    from twisted.internet.protocol import Protocol

    from marketplace.tradechat.remote import TradeChatClient

    @defer.inlineCallbacks
    def main(reactor):
        address = f"tcp:127.0.0.1:{port}"
        clients = []
        for n in range(count):
            client = yield TradeChatClient.connect(address, reactor, timeout=30)
            yield client.login(f"idle{n}")
            if join:
                yield client.join(1)
            clients.append(client)
        print("connected", flush=True)
        done = defer.Deferred()

        class UntilEOF(Protocol):
            def connectionLost(self, reason):
                done.callback(None)
        stdio.StandardIO(UntilEOF())
        yield done

    task.react(main)


def measure_memory(redis: Redis, directory: str, connections: int) -> float:
    server = Server(redis.url, 1, directory)
    try:
        drive(server.port, "balance", 100)  # warm up: code paths, store connection
        before = server.rss_kib()
        holder = subprocess.Popen([sys.executable, __file__, "--hold", "--port", str(server.port),
                                   "--connections", str(connections)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holder.stdout.readline()
        after = server.rss_kib()
        holder.stdin.close()
        holder.wait()
        return (after - before) * 1024 / connections
    finally:
        server.stop()


def throughput(redis_url: str, workers: int, mix: str, duration: float, directory: str) -> str:
    server = Server(redis_url, workers, directory, "--compat")  # the bench's transfer targets
    try:
        if workers > 1:
            time.sleep(3)  # the workers start after the master listens (a benchmark, not a test)
        result = subprocess.run(
            [os.path.join(BIN, "tradechat-bench"), "--port", str(server.port), "--connections",
             "200" if mix == "trade-heavy" else "100", "--concurrency", "32", "--mix", mix,
             "--duration", str(duration)], capture_output=True, text=True)
        return result.stdout.strip().splitlines()[0] if result.stdout else result.stderr[-300:]
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--members", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(args.client, args.port, args.requests, args.members)
    if args.hold:
        return hold_connections(args.port, args.connections, args.members > 0)

    print(f"machine: {cpus()}, load average {load_average()}")
    with tempfile.TemporaryDirectory() as directory:
        redis = Redis(directory)
        try:
            server = Server(redis.url, 1, directory)
            try:
                print(f"\nRedis work per request ({args.requests} requests each, one client):")
                for scenario, count in (("login", args.requests // 4), ("deposit", args.requests),
                                        ("transfer", args.requests), ("balance", args.requests),
                                        ("chat", args.requests)):
                    calls, cpu_us = per_request(
                        redis, lambda: drive(server.port, scenario, count), count)
                    described = ", ".join(f"{name} {n:.2f}" for name, n in sorted(calls.items())
                                          if n >= 0.01)
                    print(f"  {scenario:9} {sum(calls.values()):5.2f} commands, "
                          f"{cpu_us:6.1f} us Redis CPU  ({described})")
                print("\nchat fan-out: Redis CPU per message by subscribed processes:")
                for subscribers in (1, 2, 4, 8):
                    extra = [Server(redis.url, 1, directory) for _ in range(subscribers - 1)]
                    try:
                        # The driver's process is a member; one more in each other process. of the room in each other process.
                        holders = [subprocess.Popen(
                            [sys.executable, __file__, "--hold", "--port", str(other.port),
                             "--connections", "1", "--members", "1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True) for other in extra]
                        for holder in holders:
                            holder.stdout.readline()
                        calls, cpu_us = per_request(
                            redis, lambda: drive(server.port, "chat", args.requests, members=0),
                            args.requests)
                        print(f"  {subscribers} process(es): {cpu_us:6.1f} us per message")
                        for holder in holders:
                            holder.stdin.close()
                            holder.wait()
                    finally:
                        for other in extra:
                            other.stop()
            finally:
                server.stop()
            per_connection = measure_memory(redis, directory, args.connections)
            print(f"\nmemory: {per_connection / 1024:.1f} KiB per logged-in idle connection "
                  f"({args.connections} connections, one process)")
            if not args.skip_throughput:
                print(f"\nthroughput ({args.duration:g} s each, tradechat-bench on this machine):")
                for mix in ("trade-heavy", "mixed"):
                    for workers in (1, 2):
                        line = throughput(redis.url, workers, mix, args.duration, directory)
                        print(f"  {mix:11} workers={workers}: {line}")
        finally:
            redis.stop()
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
