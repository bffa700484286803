"""
The floor under the laptop replicas' CPU per order on this host: what the
least primary-backup round costs in Twisted, with no codec, no state, no
log, no timers and no checks.

Three processes on loopback, as in C{benchmarks/laptop.py}: a primary that
reads 12-byte orders from customers, sends the orders that arrived in
one reactor turn to each of two backups in one write, and answers each
customer once both backups have acknowledged its order; and two backups
that acknowledge every order as soon as they read it.  This process drives
it with 8 customers, each with one order in flight (the closed loop of
C{benchmarks/laptop.py --compare}), and prints orders/s and the CPU
microseconds each of the three processes spent per order (from
/proc/PID/stat).

Whatever the real replicas add (the wire codec, the replicated log, the
order book, fencing by view, timeouts, metrics) comes on top of this, so a
CPU-per-order target below this floor cannot be met by any code in this
shape: one process per replica, a TCP connection per customer and per
backup, one order per customer message.

    python benchmarks/replication_floor.py [--orders 40000] [--runs 3]
"""

import argparse
import collections
import selectors
import socket
import statistics
import subprocess
import sys
import time

from machine import cpus, load_average, process_cpu_seconds

ORDER = 12  # bytes of a customer's request in the laptop protocol
ANSWER = 20  # bytes of its order reply
CUSTOMERS = 8


def serve_backup() -> None:
    from twisted.internet import protocol, reactor

    class Backup(protocol.Protocol):
        received = 0

        def dataReceived(self, data):
            self.received += len(data)
            orders, self.received = divmod(self.received, ORDER)
            self.transport.write(b"k" * orders)

    _listen(protocol.Factory.forProtocol(Backup))
    reactor.run()


def serve_primary(backup_ports) -> None:
    from twisted.internet import defer, protocol, reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    class Primary:
        """Each turn's orders go to every backup in one write; answers follow both acks."""

        def __init__(self):
            self.links = []
            self.batch = []
            self.sent = collections.deque()  # the customer of each order sent, in order
            self.answered = 0

        def order(self, customer, count):
            if not self.batch:
                reactor.callLater(0, self.flush)
            self.batch += [customer] * count

        def flush(self):
            batch, self.batch = self.batch, []
            for link in self.links:
                link.transport.write(b"x" * (ORDER * len(batch)))
            self.sent.extend(batch)

        def acknowledged(self):
            through = min(link.acknowledged for link in self.links)
            while self.answered < through:
                self.answered += 1
                self.sent.popleft().transport.write(b"y" * ANSWER)

    class BackupLink(protocol.Protocol):
        acknowledged = 0

        def dataReceived(self, data):
            self.acknowledged += len(data)
            primary.acknowledged()

    class Customer(protocol.Protocol):
        received = 0

        def dataReceived(self, data):
            self.received += len(data)
            orders, self.received = divmod(self.received, ORDER)
            if orders:
                primary.order(self, orders)

    def linked(links):
        primary.links = links
        _listen(protocol.Factory.forProtocol(Customer))

    primary = Primary()
    defer.gatherResults([
        connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), BackupLink())
        for port in backup_ports
    ]).addCallback(linked)
    reactor.run()


def _listen(factory) -> None:
    """Listen on a port the OS picks and tell the parent which."""
    from twisted.internet import reactor

    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    print(port.getHost().port, flush=True)


def _start(*arguments) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, __file__, *arguments], stdout=subprocess.PIPE,
                               text=True)
    return process, int(process.stdout.readline())


def place_orders(port: int, orders_each: int) -> float:
    """8 customers, one order in flight each, until all are answered; the seconds it took."""
    selector = selectors.DefaultSelector()
    customers = {}
    for _ in range(CUSTOMERS):
        customer = socket.create_connection(("127.0.0.1", port))
        customer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(customer, selectors.EVENT_READ)
        customers[customer] = [orders_each, 0]  # orders left to place, answer bytes pending
    started = time.perf_counter()
    for customer, state in customers.items():
        customer.sendall(b"o" * ORDER)
        state[0] -= 1
    waiting = CUSTOMERS
    while waiting:
        for key, _ in selector.select(timeout=10):
            customer = key.fileobj
            state = customers[customer]
            data = customer.recv(4096)
            if not data:
                raise RuntimeError("the primary closed a customer's connection")
            state[1] += len(data)
            if state[1] < ANSWER:
                continue
            state[1] -= ANSWER
            if state[0]:
                state[0] -= 1
                customer.sendall(b"o" * ORDER)
            else:
                waiting -= 1
    elapsed = time.perf_counter() - started
    for customer in customers:
        customer.close()
    return elapsed


def run(orders_each: int):
    """One run on fresh processes: orders/s and CPU us per order of primary, backup, backup."""
    backups = [_start("backup") for _ in range(2)]
    primary = _start("primary", *(str(port) for _, port in backups))
    processes = [primary[0]] + [process for process, _ in backups]
    try:
        place_orders(primary[1], 10)  # every connection up before measuring
        before = [process_cpu_seconds(process.pid) for process in processes]
        elapsed = place_orders(primary[1], orders_each)
        after = [process_cpu_seconds(process.pid) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    orders = CUSTOMERS * orders_each
    return orders / elapsed, [(b - a) * 1e6 / orders for a, b in zip(before, after)]


def main() -> None:
    if sys.argv[1:2] == ["backup"]:
        return serve_backup()
    if sys.argv[1:2] == ["primary"]:
        return serve_primary([int(port) for port in sys.argv[2:]])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=40_000, help="orders per customer per run")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is reported")
    args = parser.parse_args()
    print(f"{cpus()}, load average {load_average()}; {CUSTOMERS} customers x {args.orders} orders")
    results = []
    for _ in range(args.runs):
        rate, cpu = run(args.orders)
        results.append((rate, cpu))
        print(f"{rate:9.0f} orders/s  cpu us/order {cpu[0]:.1f}/{cpu[1]:.1f}/{cpu[2]:.1f}"
              f" = {sum(cpu):.1f}")
    rate = statistics.median(r for r, _ in results)
    total = statistics.median(sum(c) for _, c in results)
    print(f"median {rate:9.0f} orders/s  cpu us/order (primary + 2 backups) {total:.1f}"
          f"; load average {load_average()}")


if __name__ == "__main__":
    main()
