"""
Three replicas as real processes on loopback, driven by the client library:
a full run, kill -9 of a backup and of the primary under load, SIGSTOP and
SIGCONT, a stale primary, and bad input.  Every history of acknowledged
orders and reads is checked against one serial order.

Tests wait for events (orders acknowledged), each wait bounded; how long
failover or a frozen backup holds orders up is asserted over the simulated
network (``test_replication``), where time is the test's own.
"""

from twisted.internet import defer, reactor
from twisted.trial import unittest

from marketplace.laptop.client import FailoverSession, LoadRun, read_replica, verify
from marketplace.laptop.history import History, check_history
from marketplace.net import connect
from protocols.laptop import CustomerRequest, encode_request, encode_role
from protocols.laptop_client import CustomerClientProtocol
from protocols.peerauth import MAGIC, NONCE_SIZE
from tests.laptop.processes import ProcessCluster
from tests.laptop.rawpeer import RawClient

PROBE_CUSTOMER = 1_000_000
#: the longest any one wait for progress may take before the test fails:
#: a safety net for a stuck cluster, not a latency bound
PROGRESS_LIMIT = 30.0


class WatchedHistory(History):
    """A history that counts acknowledged requests and says when a count is reached."""

    def __init__(self):
        super().__init__()
        self.acked = 0
        #: (count, Deferred) of every wait not fired yet
        self._waits = []

    def when_acked(self, count, limit=PROGRESS_LIMIT) -> defer.Deferred:
        """Fires once ``count`` requests in all were acknowledged; fails after ``limit`` s."""
        if self.acked >= count:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self._waits.append((count, waiting))
        return waiting.addTimeout(limit, reactor)

    def _recorded(self, ok) -> None:
        if not ok:
            return
        self.acked += 1
        if self._waits:
            reached = [wait for wait in self._waits if wait[0] <= self.acked]
            self._waits = [wait for wait in self._waits if wait[0] > self.acked]
            for _, waiting in reached:
                if not waiting.called:
                    waiting.callback(None)

    def order(self, customer_id, order_number, start, end, ok) -> None:
        super().order(customer_id, order_number, start, end, ok)
        self._recorded(ok)

    def read(self, customer_id, value, start, end, ok=True) -> None:
        super().read(customer_id, value, start, end, ok)
        self._recorded(ok)


class ClusterTestCase(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def start_cluster(self, **options):
        self.cluster = ProcessCluster(self, **options)
        yield self.cluster.start_all()
        self.history = WatchedHistory()
        self._probes = 0
        self.primary = yield self.probe()

    @defer.inlineCallbacks
    def probe(self, first=0):
        """Place an order through any replica; the reply says who committed it."""
        session = FailoverSession(self.cluster.addresses, first, reactor, timeout=1.0, deadline=15.0)
        self._probes += 1
        reply = yield session.request(CustomerRequest(PROBE_CUSTOMER, self._probes, 1))
        session.close()
        return reply.admin_id

    def load(self, customers=8, orders=10**6, addresses=None, spread=True):
        run = LoadRun(addresses or self.cluster.addresses, customers, orders, 1, reactor,
                      timeout=1.0, deadline=20.0, spread=spread, history=self.history)
        return run, run.run()

    @defer.inlineCallbacks
    def finish(self, run, done, replicas=None, stop=True):
        if stop:
            run.stop()
        summary = yield done.addTimeout(60, reactor)
        replicas = list(range(3)) if replicas is None else replicas
        addresses = [self.cluster.addresses[i] for i in replicas]
        outcome = yield verify(addresses, run.customers, reactor, timeout=2.0, settle=5.0)
        self.assertTrue(outcome.ok, "\n".join(outcome.lines()))
        book = yield read_replica(addresses[0], run.customers, reactor)
        self.assertEqual(check_history(self.history.operations, book), [])
        return summary

    def acked_count(self):
        return self.history.acked

    def acked_more(self, count):
        """Fires once ``count`` more requests than now were acknowledged."""
        return self.history.when_acked(self.history.acked + count)


class FullRunTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_eight_customers_thousand_orders_identical(self):
        yield self.start_cluster()
        run, done = self.load(customers=8, orders=1000)
        summary = yield self.finish(run, done, stop=False)
        self.assertEqual(summary.failed, 0)
        self.assertEqual(summary.latencies.count, 8000)
        self.assertEqual(self.acked_count(), 8000)

    @defer.inlineCallbacks
    def test_128_customers_connect_at_once(self):
        """
        Customers connecting all at once, on a cluster with authenticated
        replica links on ports of their own: nobody is reset, and replica
        traffic does not starve behind them (no backup leaves the live set,
        no view change).
        """
        yield self.start_cluster(replica_ports=True)
        run, done = self.load(customers=128, orders=20, spread=False)
        summary = yield self.finish(run, done, stop=False)
        self.assertEqual((summary.failed, summary.failovers), (0, 0), "no customer was reset")
        views = [line for i in range(3) for line in self.cluster.log_lines(i, "is primary of view")]
        self.assertEqual(len(views), 1, views)
        for i in range(3):
            self.assertEqual(self.cluster.log_lines(i, "left the live set"), [])


class FailureTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_kill_backup_under_load_then_rejoin(self):
        yield self.start_cluster()
        backup = (self.primary + 1) % 3
        addresses = [a for i, a in enumerate(self.cluster.addresses) if i != backup]
        run, done = self.load(addresses=addresses)
        yield self.acked_more(500)
        yield self.cluster.kill(backup)
        yield self.acked_more(500)
        self.assertEqual(run.failed, 0)
        yield self.cluster.start(backup)
        yield self.acked_more(500)
        summary = yield self.finish(run, done)
        self.assertEqual(summary.failed, 0)

    @defer.inlineCallbacks
    def test_kill_primary_under_load(self):
        yield self.start_cluster()
        old = self.primary
        run, done = self.load()
        yield self.acked_more(500)
        killed_at = reactor.seconds()
        yield self.cluster.kill(old)
        acked_before = [op for op in self.history.operations if op.ok and op.end <= killed_at]
        new = yield self.probe(first=(old + 1) % 3)
        self.assertNotEqual(new, old)
        yield self.acked_more(500)
        survivors = [i for i in range(3) if i != old]
        summary = yield self.finish(run, done, replicas=survivors)
        self.assertEqual(summary.failed, 0, "clients continue on the other replicas")
        self.assertTrue(acked_before)
        # Orders acknowledged before the kill are on every live replica:
        # finish() checked the history against each survivor's book.

    @defer.inlineCallbacks
    def test_frozen_backup_then_resumed(self):
        yield self.start_cluster()
        backup = (self.primary + 1) % 3
        addresses = [a for i, a in enumerate(self.cluster.addresses) if i != backup]
        run, done = self.load(addresses=addresses)
        yield self.acked_more(500)
        self.cluster.freeze(backup)
        yield self.acked_more(1000)
        self.cluster.resume(backup)
        yield self.acked_more(500)
        summary = yield self.finish(run, done)
        self.assertEqual(summary.failed, 0)

    @defer.inlineCallbacks
    def test_stale_primary_cannot_commit(self):
        yield self.start_cluster()
        old = self.primary
        # A customer of the old primary, connected before it freezes.
        stale_customer = yield connect(self.cluster.addresses[old].endpoint,
                                       CustomerClientProtocol(), 2.0, reactor)
        others = [a for i, a in enumerate(self.cluster.addresses) if i != old]
        run, done = self.load(addresses=others)
        yield self.acked_more(200)
        self.cluster.freeze(old)
        stale_reply = stale_customer.request(CustomerRequest(4242, 7, 1))
        new = yield self.probe(first=(old + 1) % 3)
        self.assertNotEqual(new, old)
        self.cluster.resume(old)
        reply = yield stale_reply.addTimeout(PROGRESS_LIMIT, reactor)
        # Either refused, or committed by the new primary through forwarding:
        # never acknowledged by the deposed one on its own.
        self.assertIn(reply.admin_id, [new] if not reply.failed else [old, new])
        stale_customer.close()
        summary = yield self.finish(run, done)
        self.assertEqual(summary.failed, 0)
        book = yield self._book_of(old)
        if not reply.failed:
            self.assertEqual(book.get(4242), 7)

    def _book_of(self, i):
        return read_replica(self.cluster.addresses[i], 4243, reactor)


class DurabilityTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_whole_cluster_restart_keeps_acknowledged_orders(self):
        yield self.start_cluster(data_dirs=True)
        run, done = self.load(customers=4)
        yield self.acked_more(1000)
        run.stop()
        yield defer.gatherResults([self.cluster.kill(i) for i in range(3)])
        yield self.cluster.start_all()
        # The restarted replicas hold the orders in their logs but apply them
        # only once a new primary commits an entry of its own view; until
        # then every book is empty, and empty books agree.  A probe order
        # waits for that commit (the retried in-flight requests may all have
        # been answered before it).
        yield self.probe()
        # Requests in flight during the kill are retried against the restarted cluster.
        yield self.finish(run, done, stop=False)


class BadInputTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_bad_input_closes_cleanly_and_replica_keeps_serving(self):
        yield self.start_cluster()
        target = self.cluster.addresses[(self.primary + 1) % 3]
        cases = [
            encode_role(7),  # wrong role word
            encode_role(1) + b"\x00" * 24,  # legacy replication, refused
            b"GET / HTTP/1.0\r\n\r\n",  # garbage as a role word
        ]
        for data in cases:
            raw = yield connect(target.endpoint, RawClient(), 2.0, reactor)
            raw.transport.write(data)
            received = yield raw.closed.addTimeout(5, reactor)
            self.assertEqual(received, b"", data)
        # A replica link that cannot prove the secret gets the challenge, nothing more.
        raw = yield connect(target.endpoint, RawClient(), 2.0, reactor)
        raw.transport.write(encode_role(2) + b"\x00\x00\x00\x63\x00\x00\x00\x00" * 8)
        received = yield raw.closed.addTimeout(5, reactor)
        self.assertEqual(received[:len(MAGIC)], MAGIC)
        self.assertEqual(len(received), len(MAGIC) + NONCE_SIZE)
        # A truncated request followed by a hang-up.
        raw = yield connect(target.endpoint, RawClient(), 2.0, reactor)
        raw.transport.write(encode_role(0) + encode_request(CustomerRequest(1, 1, 1))[:5])
        raw.transport.loseConnection()
        yield raw.closed.addTimeout(5, reactor)
        # The replica is alive and serves.
        admin = yield self.probe(first=(self.primary + 1) % 3)
        self.assertEqual(admin, self.primary)
        self.assertTrue(all(p.running for p in self.cluster.processes.values()))
        customer = yield connect(target.endpoint, CustomerClientProtocol(), 2.0, reactor)
        reply = yield customer.request(CustomerRequest(3, -1, 9)).addTimeout(5, reactor)
        customer.close()
        self.assertTrue(reply.failed, "an unknown request type gets the failure reply")
