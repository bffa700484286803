"""
The replication state machine over simulated networks: elections, commits,
crashes, freezes, partitions, stale primaries, catch-up and snapshots.
"""

import random

import attrs
from twisted.internet import task
from twisted.python import failure
from twisted.trial import unittest

from marketplace.laptop.history import History, check_history
from marketplace.laptop.replication import (
    CANDIDATE,
    FOLLOWER,
    PRIMARY,
    ReadResult,
    Replica,
    RequestFailed,
    Timeouts,
)
from protocols.laptop import (
    FORWARD_RETRY,
    MAX_FRAME_BODY,
    MAX_VIEW,
    OPCODE_NOOP,
    OPCODE_SET_LAST_ORDER,
    AppendEntries,
    AppendReply,
    Entry,
    ForwardReply,
    ForwardRequest,
    InstallSnapshot,
    SnapshotReply,
    TYPE_ORDER,
    VoteReply,
    VoteRequest,
    encode_replica_message,
)
from tests.laptop.simnet import STEP, SimulatedNetwork

TIMEOUTS = Timeouts()
#: time for a failover by the scheme's own bound (see ``Timeouts``) plus a round trip
FAILOVER_BOUND = TIMEOUTS.election + 2 * TIMEOUTS.election_stagger + TIMEOUTS.election_stagger / 2 + 0.2


class Workload:
    """
    Customers that each place orders 0, 1, 2, ... one at a time, reading
    their record back every few orders, through an entry replica of their
    own; a failed request is retried through the next running replica.
    """

    def __init__(self, net, customers=4, read_every=3, orders=None):
        self.net = net
        self.history = History()
        self.next_order = {c: 0 for c in range(customers)}
        self.entry = {c: c % len(net.ids) for c in range(customers)}
        self.read_every = read_every
        self.limit = orders
        self.failures = []
        self.last_ack_at = {}
        for customer in range(customers):
            self._next(customer)

    def _replica_for(self, customer):
        running = self.net.running()
        if self.entry[customer] not in running and running:
            self.entry[customer] = running[customer % len(running)]
        return self.net.replicas[self.entry[customer]]

    def _next(self, customer):
        number = self.next_order[customer]
        if self.limit is not None and number >= self.limit:
            return
        start = self.net.now
        if number % self.read_every == 2:
            d = self._replica_for(customer).read(customer)
            d.addCallbacks(self._read_done, self._failed, (customer, start), None, (customer, start, "read"))
        else:
            d = self._replica_for(customer).order(customer, number)
            d.addCallbacks(self._order_done, self._failed, (customer, number, start), None, (customer, start, number))

    def _order_done(self, admin_id, customer, number, start):
        self.history.order(customer, number, start, self.net.now, True)
        self.last_ack_at[customer] = self.net.now
        self.next_order[customer] = number + 1
        self._next(customer)

    def _read_done(self, result, customer, start):
        assert isinstance(result, ReadResult)
        self.history.read(customer, result.last_order, start, self.net.now)
        self.next_order[customer] += 1
        self._next(customer)

    def _failed(self, failure, customer, start, what):
        failure.trap(RequestFailed)
        self.failures.append((customer, start, self.net.now))
        if what != "read":
            self.history.order(customer, what, start, self.net.now, False)
        self.entry[customer] = (self.entry[customer] + 1) % len(self.net.ids)
        self._next(customer)

    def acked(self):
        return sum(1 for op in self.history.operations if op.kind == "order" and op.ok)

    def check(self, testcase, ids=None):
        net = self.net
        for i in ids or net.running():
            records = dict(net.replicas[i].book.records())
            problems = check_history(self.history.operations, records)
            testcase.assertEqual(problems, [], f"replica {i}")


def settle(net, work, limit=3.0):
    """Stop placing orders and wait until every running replica committed everything."""
    work.limit = 0
    net.run_until(net.converged, limit)


def elect(net, limit=5.0):
    net.run_until(lambda: net.primary() is not None, limit)
    return net.primary()


class ElectionTests(unittest.TestCase):
    def test_one_primary_elected(self):
        net = SimulatedNetwork()
        at = net.run_until(lambda: net.primary() is not None, 5.0)
        self.assertLess(at, FAILOVER_BOUND + 1)
        net.run(2.0)
        primaries = [i for i, r in net.replicas.items() if r.role == PRIMARY]
        self.assertEqual(len(primaries), 1)
        views = {r.view for r in net.replicas.values()}
        self.assertEqual(len(views), 1)
        self.assertEqual({r.primary_id for r in net.replicas.values()}, {primaries[0]})

    def test_single_replica_is_its_own_majority(self):
        net = SimulatedNetwork(count=1)
        elect(net)
        results = []
        net.replicas[0].order(5, 1).addCallback(results.append)
        net.run(0.1)
        self.assertEqual(results, [0])

    def test_replica_behind_in_view_learns_it_from_a_refused_pre_vote(self):
        """
        A holds the longest log but a lower view than B (B's election in
        a higher view failed when its voter died): with only A and B up, A's
        pre-votes must tell it B's view, or neither can ever win (B's log is
        behind A's, and A keeps asking B for a view B has already seen).
        """
        from marketplace.laptop.replication import CANDIDATE

        net = SimulatedNetwork(seed=1)
        a = elect(net)
        net.run(0.5)
        net.partition([a], [i for i in net.ids if i != a])
        net.replicas[a].order(1, 1).addErrback(lambda failure: None)  # only its log entry matters
        net.run(0.05)
        net.run_until(lambda: any(net.replicas[i].role == CANDIDATE for i in net.ids if i != a))
        b = next(i for i in net.ids if i != a and net.replicas[i].role == CANDIDATE)
        net.crash(next(i for i in net.ids if i not in (a, b)))
        net.run(0.05)
        self.assertGreater(net.replicas[b].view, net.replicas[a].view)
        self.assertGreater(
            net.replicas[a].replicated_log.last_index, net.replicas[b].replicated_log.last_index
        )
        net.heal()
        self.assertEqual(elect(net, 3 * FAILOVER_BOUND), a)
        net.run(0.1)
        self.assertEqual(net.replicas[b].primary_id, a)
        self.assertEqual(net.replicas[b].book.last_order(1), 1)

    def test_no_primary_without_majority(self):
        net = SimulatedNetwork()
        net.crash(1)
        net.crash(2)
        net.run(5.0)
        self.assertIsNone(net.primary())


class CommitTests(unittest.TestCase):
    def test_orders_commit_on_every_replica(self):
        net = SimulatedNetwork()
        elect(net)
        work = Workload(net, customers=6, orders=60)
        net.run_until(lambda: work.acked() >= 6 * 40, 20.0)
        settle(net, work)
        self.assertEqual(work.failures, [])
        work.check(self)
        self.assertEqual(len(net.books()[0]), 6)

    def test_orders_through_backup_are_forwarded(self):
        net = SimulatedNetwork()
        primary = elect(net)
        backup = next(i for i in net.ids if i != primary)
        results = []
        net.replicas[backup].order(7, 3).addCallback(results.append)
        net.run(0.2)
        self.assertEqual(results, [primary])
        net.replicas[backup].read(7).addCallback(results.append)
        net.run(0.2)
        self.assertEqual(results[1], ReadResult(3, primary))

    def _forward_with_one_lost(self, kind):
        """
        An order placed at a backup of a healthy cluster while the first
        message of type ``kind`` cannot be sent (a link refuses messages
        while it is down or congested); returns how long the customer
        waited for its answer, and the primary's log growth.
        """
        net = SimulatedNetwork()
        primary = elect(net)
        backup = next(i for i in net.ids if i != primary)
        net.run(0.5)
        send, refused = net._send, []

        def lossy(source, target, message):
            if type(message) is kind and not refused:
                refused.append(message)
                return False
            return send(source, target, message)

        net._send = lossy
        before = net.replicas[primary].replicated_log.last_index
        start, results = net.now, []
        net.replicas[backup].order(42, 1).addBoth(results.append)
        net.run_until(lambda: results, TIMEOUTS.request + 1.0)
        self.assertTrue(refused)
        self.assertEqual(results, [primary])
        self.assertEqual(net.replicas[primary].book.last_order(42), 1)
        return net.now - start, net.replicas[primary].replicated_log.last_index - before

    def test_forwarded_request_refused_by_the_link_goes_at_the_next_tick(self):
        waited, appended = self._forward_with_one_lost(ForwardRequest)
        self.assertLess(waited, 2 * TIMEOUTS.heartbeat + 0.05)
        self.assertEqual(appended, 1)

    def test_forwarded_request_whose_reply_is_lost_is_resent_and_applied_once(self):
        waited, appended = self._forward_with_one_lost(ForwardReply)
        self.assertLess(waited, TIMEOUTS.retransmit + TIMEOUTS.heartbeat + 0.05)
        self.assertEqual(appended, 1)

    def test_repeated_order_applied_once(self):
        net = SimulatedNetwork()
        primary = elect(net)
        replica = net.replicas[primary]
        before = replica.replicated_log.last_index
        results = []
        for _ in range(3):
            replica.order(1, 4).addCallback(results.append)
        net.run(0.2)
        replica.order(1, 4).addCallback(results.append)
        replica.order(1, 2).addCallback(results.append)
        net.run(0.2)
        self.assertEqual(results, [primary] * 5)
        self.assertEqual(replica.replicated_log.last_index, before + 1)
        self.assertEqual(replica.book.last_order(1), 4)

    def test_read_of_unknown_customer(self):
        net = SimulatedNetwork()
        primary = elect(net)
        results = []
        net.replicas[primary].read(99).addCallback(results.append)
        net.run(0.2)
        self.assertEqual(results, [ReadResult(None, primary)])

    def test_request_fails_after_timeout_without_primary(self):
        net = SimulatedNetwork()
        elect(net)
        net.crash(net.primary())
        survivor = net.running()[0]
        net.crash([i for i in net.running() if i != survivor][0])
        failures = []
        net.replicas[survivor].order(1, 1).addErrback(lambda f: failures.append(f.trap(RequestFailed)))
        net.run(TIMEOUTS.request + 0.1)
        self.assertEqual(failures, [RequestFailed])


class BatchingTests(unittest.TestCase):
    #: ticks far enough apart for each scenario below to fit between two
    TIMEOUTS = Timeouts(heartbeat=0.25, backup=1.0, election=2.0, election_stagger=0.5)

    def _first_batch_half_answered(self):
        """
        A primary with two live backups, right after a heartbeat (so the
        next one is a whole heartbeat away), whose first order reached both
        backups and was answered by ``fast`` only: ``slow`` is frozen.
        Returns the network, the primary's id, ``fast``, ``slow`` and the
        list the orders' outcomes go into.
        """
        net = SimulatedNetwork(timeouts=self.TIMEOUTS)
        leader = elect(net)
        primary = net.replicas[leader]
        net.run_until(lambda: len(primary.live) == 2, 2.0)
        fast, slow = sorted(primary.live)
        net.trace = []
        net.run_until(lambda: net.trace, 1.0)  # an idle primary sends only heartbeats
        net.freeze(slow)
        results = []
        primary.order(1, 1).addCallback(results.append)
        net.run(0.05)
        return net, leader, fast, slow, results

    def test_live_backups_receive_batches_in_step(self):
        """
        A live backup that answered is not sent the next orders while the
        other live backup still has a batch out (the orders could not commit
        before that one answers anyway); once it answers, both get one batch
        holding everything that arrived meanwhile.
        """
        net, leader, fast, slow, results = self._first_batch_half_answered()
        net.trace = []
        net.replicas[leader].order(2, 1).addCallback(results.append)
        net.replicas[leader].order(3, 1).addCallback(results.append)
        net.run(0.05)
        self.assertEqual([m for m in net.trace if m[1] == fast], [])
        self.assertEqual(results, [])
        net.resume(slow)
        net.run(0.05)
        batches = {target: message for source, target, message in net.trace if source == leader}
        self.assertEqual(batches[fast], batches[slow])
        self.assertEqual(
            [(e.customer_id, e.order_number) for e in batches[fast].entries], [(2, 1), (3, 1)]
        )
        self.assertEqual(results, [leader] * 3)

    def test_a_read_is_not_held_for_the_slowest_live_backup(self):
        """
        A read needs a round acknowledged by a majority, not by every live
        backup: while a frozen backup has a batch out, a read of a committed
        order is answered by the primary and the other backup at once, not
        at the next heartbeat.
        """
        net, leader, fast, slow, results = self._first_batch_half_answered()
        primary = net.replicas[leader]
        read = []
        primary.read(7).addCallback(read.append)
        net.run(0.02)
        self.assertEqual(len(read), 1)

    def test_orders_held_for_a_backup_that_dies_go_out_at_once(self):
        """
        When the live backup the others wait for drops out, the orders held
        back for it are sent at once, not at the next heartbeat.
        """
        net, leader, fast, slow, results = self._first_batch_half_answered()
        net.replicas[leader].order(2, 1).addCallback(results.append)
        net.run(0.01)
        net.crash(slow)
        net.run(0.03)
        self.assertEqual(results, [leader] * 2)
        self.assertEqual(net.replicas[leader].live, {fast})


    def _two_orders_answered_together(self):
        """
        A primary with two live backups that has just committed two orders
        in one batch, right after a heartbeat (the next is a whole heartbeat
        away).  Returns the network, the primary's id and the list the
        orders' outcomes go into.
        """
        net = SimulatedNetwork(timeouts=self.TIMEOUTS)
        leader = elect(net)
        primary = net.replicas[leader]
        net.run_until(lambda: len(primary.live) == 2, 2.0)
        net.trace = []
        net.run_until(lambda: net.trace, 1.0)  # an idle primary sends only heartbeats
        results = []
        primary.order(1, 1).addCallback(results.append)
        primary.order(2, 1).addCallback(results.append)
        net.run_until(lambda: len(results) == 2, 0.1)
        net.trace = []
        return net, leader, results

    @staticmethod
    def _batches(net, leader):
        """The orders of each batch the primary sent since the trace was reset."""
        return [
            [(e.customer_id, e.order_number) for e in message.entries]
            for source, _, message in net.trace
            if source == leader and type(message) is AppendEntries and message.entries
        ]

    def test_next_batch_waits_for_the_customers_just_answered(self):
        """
        Two orders answered together: the next order waits for the other
        customer's, so both backups get the two in one batch each instead
        of one batch for each order.
        """
        self.patch(Replica, "batch_hold", 0.05)
        net, leader, results = self._two_orders_answered_together()
        primary = net.replicas[leader]
        primary.order(1, 2).addCallback(results.append)
        net.run(0.02)
        self.assertEqual(self._batches(net, leader), [])
        primary.order(2, 2).addCallback(results.append)
        net.run(0.02)
        self.assertEqual(self._batches(net, leader), [[(1, 2), (2, 2)]] * 2)
        first, second = [m for s, _, m in net.trace if s == leader and type(m) is AppendEntries]
        self.assertIs(first, second, "one message, built once, for both backups")
        self.assertEqual(results, [leader] * 4)

    def test_a_held_batch_goes_after_batch_hold(self):
        """A customer that does not come back holds the other's order up by batch_hold at most."""
        self.patch(Replica, "batch_hold", 0.05)
        net, leader, results = self._two_orders_answered_together()
        net.replicas[leader].order(1, 2).addCallback(results.append)
        net.run(0.04)
        self.assertEqual(results, [leader] * 2)
        net.run(0.03)
        self.assertEqual(self._batches(net, leader), [[(1, 2)]] * 2)
        self.assertEqual(results, [leader] * 3)

    def test_a_lone_customer_is_not_held(self):
        """One order answered and its customer's next one waiting alone: it goes at once."""
        self.patch(Replica, "batch_hold", 0.05)
        net, leader, results = self._two_orders_answered_together()
        primary = net.replicas[leader]
        primary.order(1, 2).addCallback(results.append)
        net.run_until(lambda: len(results) == 3, 0.1)  # alone, after the hold
        net.trace = []
        start = net.now
        primary.order(1, 3).addCallback(results.append)
        net.run_until(lambda: len(results) == 4, 0.1)
        self.assertEqual(self._batches(net, leader), [[(1, 3)]] * 2)
        self.assertLess(net.now - start, 0.04)


class FailureTests(unittest.TestCase):
    def test_backup_crash_does_not_stall_past_timeout(self):
        net = SimulatedNetwork()
        primary = elect(net)
        work = Workload(net, customers=4)
        net.run(1.0)
        backup = next(i for i in net.ids if i != primary)
        net.crash(backup)
        crashed_at = net.now
        acked = work.acked()
        net.run(TIMEOUTS.backup + 0.1)
        self.assertGreater(work.acked(), acked)
        self.assertEqual(work.failures, [])
        slowest = max(op.end - op.start for op in work.history.operations if op.end >= crashed_at)
        self.assertLessEqual(slowest, TIMEOUTS.backup)
        net.restart(backup)
        net.run(1.0)
        self.assertIn(backup, net.replicas[primary].live)
        settle(net, work)
        work.check(self)

    def test_primary_crash_fails_over_and_keeps_acked_orders(self):
        net = SimulatedNetwork()
        old = elect(net)
        work = Workload(net, customers=6)
        net.run(1.0)
        acked_before = {(op.customer_id, op.value) for op in work.history.operations if op.kind == "order" and op.ok}
        net.crash(old)
        crashed_at = net.now
        at = net.run_until(lambda: net.primary() not in (None, old), FAILOVER_BOUND + 0.5)
        self.assertLess(at - crashed_at, FAILOVER_BOUND)
        acked = work.acked()
        net.run(1.0)
        self.assertGreater(work.acked(), acked)
        for i in net.running():
            book = dict(net.books()[i])
            for customer, number in acked_before:
                self.assertGreaterEqual(book[customer], number)
        settle(net, work)
        work.check(self)
        net.restart(old)
        net.run_until(lambda: net.converged() and len(net.running()) == 3, 3.0)

    def test_frozen_backup_does_not_freeze_primary(self):
        net = SimulatedNetwork()
        primary = elect(net)
        work = Workload(net, customers=4)
        net.run(1.0)
        backup = next(i for i in net.ids if i != primary)
        net.freeze(backup)
        frozen_at = net.now
        acked = work.acked()
        net.run(TIMEOUTS.backup + 0.2)
        self.assertGreater(work.acked(), acked + 10)
        slowest = max(op.end - op.start for op in work.history.operations if op.end >= frozen_at)
        # Dropped within one tick of the backup timeout.
        self.assertLessEqual(slowest, TIMEOUTS.backup + TIMEOUTS.heartbeat + 0.02)
        self.assertNotIn(backup, net.replicas[primary].live)
        net.run(3.0)
        net.resume(backup)
        net.run(1.0)
        self.assertEqual(net.primary(), primary, "a resumed backup must not depose the primary")
        self.assertIn(backup, net.replicas[primary].live)
        settle(net, work)
        self.assertEqual(work.failures, [])
        work.check(self)

    def test_stale_primary_cannot_commit(self):
        """
        Resumed from SIGSTOP, the old primary first takes an order and sends
        it in its old view, before any timer runs: it must not commit it.
        """
        net = SimulatedNetwork()
        old = elect(net)
        work = Workload(net, customers=4)
        net.run(1.0)
        net.freeze(old)
        net.run_until(lambda: net.primary() not in (None, old), FAILOVER_BOUND + 0.5)
        new = net.primary()
        net.run(1.0)
        stale = net.replicas[old]
        view_before, commit_before = stale.view, stale.commit_index
        net.frozen.pop(old)
        net.held[old] = []  # what queued up meanwhile is lost, so nothing warns it
        results = []
        stale.order(1000, 1).addBoth(results.append)
        net.clocks[old].advance(0)  # its flush runs, its overdue timers do not
        self.assertEqual(stale.role, PRIMARY)
        self.assertEqual(stale.view, view_before)
        net.run(0.2)
        self.assertNotEqual(stale.role, PRIMARY)
        self.assertGreater(stale.view, view_before)
        self.assertGreaterEqual(stale.commit_index, commit_before)
        net.run(0.5)
        self.assertEqual(results, [new], "committed by the new primary after forwarding")
        settle(net, work)
        work.check(self)
        self.assertEqual(len(set(net.books().values())), 1)

    def test_resumed_stale_primary_timers_first(self):
        """
        Resumed from SIGSTOP, the old primary's overdue timers may run before
        it reads anything: it must give up being primary by itself.
        """
        net = SimulatedNetwork()
        old = elect(net)
        stale = net.replicas[old]
        net.freeze(old)
        net.run_until(lambda: net.primary() not in (None, old), FAILOVER_BOUND + 0.5)
        new = net.primary()
        since = net.frozen.pop(old)
        net.clocks[old].advance(net.now - since)
        self.assertNotEqual(stale.role, PRIMARY)
        results = []
        stale.order(2000, 1).addCallback(results.append)
        for source, message in net.held[old]:
            stale.receive(source, message)
        net.held[old] = []
        net.run(0.5)
        self.assertEqual(results, [new])
        self.assertEqual(stale.primary_id, new)

    def test_minority_primary_steps_down_and_majority_continues(self):
        net = SimulatedNetwork()
        old = elect(net)
        others = [i for i in net.ids if i != old]
        work = Workload(net, customers=4)
        net.run(1.0)
        net.partition([old], others)
        net.run_until(lambda: any(net.replicas[i].role == PRIMARY for i in others), FAILOVER_BOUND + 0.5)
        net.run(TIMEOUTS.election)
        self.assertNotEqual(net.replicas[old].role, PRIMARY)
        net.heal()
        net.run(1.0)
        settle(net, work)
        work.check(self)


class CatchUpTests(unittest.TestCase):
    def test_restarted_replica_catches_up_from_snapshot(self):
        net = SimulatedNetwork(compact_threshold=50)
        primary = elect(net)
        backup = next(i for i in net.ids if i != primary)
        net.crash(backup)
        work = Workload(net, customers=3)
        net.run(2.0)
        self.assertGreater(net.replicas[primary].replicated_log.base_index, 0)
        net.restart(backup)
        net.run_until(lambda: backup in net.replicas[primary].live, 2.0)
        settle(net, work)
        work.check(self)

    def test_snapshot_larger_than_a_frame_goes_in_chunks(self):
        """
        A backup that missed more than the log keeps catches up from a
        snapshot larger than one frame (frames made small here, so a
        thousand records exceed one): it arrives in chunks, every message
        through the codec, and is installed once.
        """
        import protocols.laptop

        self.patch(protocols.laptop, "MAX_FRAME_BODY", 4096)
        self.patch(protocols.laptop, "MAX_SNAPSHOT_RECORDS", 500)
        self.patch(Replica, "snapshot_chunk", 300)
        self.patch(Replica, "max_batch", 100)
        net = SimulatedNetwork(wire=True, compact_threshold=1000)
        leader = elect(net)
        primary = net.replicas[leader]
        backup = next(i for i in net.ids if i != leader)
        net.crash(backup)
        results = []
        for customer in range(1500):
            primary.order(customer, 1).addCallback(results.append)
        net.run_until(lambda: len(results) == 1500, 5.0)
        snapshot = primary._snapshot_records
        self.assertGreater(primary.replicated_log.base_index, 0)
        self.assertGreater(len(snapshot) * 8, protocols.laptop.MAX_FRAME_BODY)
        net.trace = []
        net.restart(backup)
        net.run_until(lambda: backup in primary.live, 5.0)
        chunks = [m for _, target, m in net.trace if target == backup and type(m) is InstallSnapshot]
        self.assertEqual([m.offset for m in chunks], list(range(0, len(snapshot), 300)))
        self.assertEqual(net.replicas[backup]._counters.counts["laptop_snapshots_installed"], 1)
        net.run_until(net.converged, 2.0)

    def test_whole_cluster_restart_recovers_acknowledged_orders(self):
        net = SimulatedNetwork(durable=True, compact_threshold=40)
        elect(net)
        work = Workload(net, customers=4)
        net.run(2.0)
        acked = [(op.customer_id, op.value) for op in work.history.operations if op.kind == "order" and op.ok]
        self.assertTrue(acked)
        work.limit = 0
        for i in net.ids:
            net.crash(i)
        for i in net.ids:
            net.restart(i)
        primary = net.replicas[elect(net)]
        net.run_until(
            lambda: primary.commit_index == primary.replicated_log.last_index and net.converged(), 3.0
        )
        book = dict(net.books()[0])
        for customer, number in acked:
            self.assertGreaterEqual(book[customer], number)


def noop(view):
    return Entry(view, OPCODE_NOOP, -1, -1)


def order(view, customer, number):
    return Entry(view, OPCODE_SET_LAST_ORDER, customer, number)


def restart_with_logs(net, logs):
    """
    Restart every replica of ``net`` (made ``durable``) from the given
    on-disk state: ``{id: (view, voted_for, entries)}``.
    """
    for i in net.ids:
        net.crash(i)
    for i, (view, voted_for, entries) in logs.items():
        disk = net.disks[i]
        disk.view, disk.voted_for, disk.entries = view, voted_for, list(entries)
    for i in net.ids:
        net.restart(i)


class CommitRuleTests(unittest.TestCase):
    """
    An entry commits once every live backup and a majority of the
    configured replicas hold it, and only by an entry of the primary's own
    view reaching that (Raft's "figure 8" rule).
    """

    def test_entry_of_an_older_view_is_not_committed_by_counting_replicas(self):
        """
        Replica 0 holds an order of view 1 at index 1 that nobody else has;
        replica 1 was elected in view 2 and holds its no-op of view 2 at index
        1, likewise unsent.  Replica 0 is elected in view 3 with 2's vote
        and copies its view-1 entry to 2, one entry per message: a majority
        now holds it, but committing it then would be wrong, since 1 can
        still win view 4 with 2's vote (its last entry, of view 2, beats
        2's of view 1) and overwrite index 1 on 2.  Only once the no-op of
        view 3 is on a majority is the order committed.
        """
        self.patch(Replica, "max_batch", 1)
        net = SimulatedNetwork(durable=True)
        restart_with_logs(net, {
            0: (1, 0, [noop(1), order(1, 7, 1)]),
            1: (2, 1, [noop(1), noop(2)]),
            2: (2, 1, [noop(1)]),
        })
        holder, rival, voter = (net.replicas[i] for i in net.ids)
        answers = []
        holder.order(7, 1).addBoth(answers.append)
        net.partition([0, 2], [1])
        net.run_until(lambda: holder.role == PRIMARY and holder.view == 3, 5.0)
        net.run_until(lambda: holder._peers[2].match_index >= 1, 1.0)
        self.assertEqual(voter.replicated_log.entry(1), order(1, 7, 1))
        self.assertLess(holder.commit_index, 1, "an entry of view 1 committed in view 3 by count")
        self.assertEqual(answers, [])
        # The no-op of view 3 is lost; 1 wins view 4 and overwrites index 1.
        net.partition([0], [1, 2])
        net.run_until(lambda: rival.role == PRIMARY and rival.view > 3, 5.0)
        net.run_until(lambda: voter.commit_index >= rival.commit_index >= 2, 1.0)
        self.assertEqual(voter.replicated_log.entry(1), noop(2))
        # The customer's order is committed by the new primary, or fails.
        net.heal()
        net.run_until(lambda: answers, TIMEOUTS.request + 1.0)
        net.run_until(net.converged, 3.0)
        if not isinstance(answers[0], failure.Failure):
            self.assertEqual(dict(rival.book.records()).get(7), 1, "acknowledged, then lost")

    def _primary_with_live_backups(self):
        net = SimulatedNetwork()
        leader = elect(net)
        primary = net.replicas[leader]
        net.run_until(lambda: len(primary.live) == 2, 2.0)
        return net, leader, primary

    def test_order_waits_for_every_live_backup(self):
        """
        A live backup that is slow (frozen) holds orders up, even though the
        primary and the other backup are a majority, until it answers or is
        dropped from the live set.
        """
        net, leader, primary = self._primary_with_live_backups()
        fast, slow = sorted(primary.live)
        net.freeze(slow)
        answers = []
        primary.order(1, 1).addCallback(answers.append)
        index = primary.replicated_log.last_index
        net.run_until(lambda: primary._peers[fast].match_index >= index, 1.0)
        net.run(2 * STEP)
        self.assertEqual(answers, [], "acknowledged while a live backup lacks it")
        self.assertLess(primary.commit_index, index)
        net.resume(slow)
        net.run_until(lambda: answers, 1.0)
        self.assertEqual(answers, [leader])

    def test_no_commit_without_a_majority(self):
        """
        A primary cut off from both backups drops them from the live set
        after the backup timeout and steps down only after the election
        timeout; orders in between must not commit: it holds them alone.
        """
        net, leader, primary = self._primary_with_live_backups()
        net.partition([leader], [i for i in net.ids if i != leader])
        net.run_until(lambda: not primary.live, TIMEOUTS.backup + 0.2)
        answers = []
        primary.order(1, 1).addBoth(answers.append)
        index = primary.replicated_log.last_index
        net.run(0.2)
        self.assertEqual(primary.role, PRIMARY)
        self.assertEqual(answers, [], "acknowledged by the primary alone")
        self.assertLess(primary.commit_index, index)


class StaleViewTests(unittest.TestCase):
    """A backup refuses a primary's messages of a view older than its own."""

    def _backup_in_view_3(self):
        lone = LoneReplica()
        replies = lone.receive(0, AppendEntries(3, 0, -1, -1, 0, 1, (noop(3), order(3, 5, 1))))
        self.assertEqual(replies, [(0, AppendReply(3, 1, True, 1, 1))])
        return lone

    def test_entries_of_an_older_view_are_refused(self):
        lone = self._backup_in_view_3()
        replica = lone.replica
        replies = lone.receive(2, AppendEntries(2, 2, 0, 3, 1, 7, (order(2, 5, 9),)))
        self.assertEqual(replies, [(2, AppendReply(3, 1, False, -1, 7))])
        self.assertEqual(replica.replicated_log.entries_from(0, 5), (noop(3), order(3, 5, 1)))
        self.assertEqual((replica.view, replica.primary_id, replica.commit_index), (3, 0, 0))

    def test_snapshot_of_an_older_view_is_refused(self):
        lone = self._backup_in_view_3()
        replica = lone.replica
        replies = lone.receive(2, InstallSnapshot(2, 2, 5, 2, 7, 1, 0, ((5, 9),)))
        self.assertEqual(replies, [(2, AppendReply(3, 1, False, -1, 7))])
        self.assertEqual((replica.commit_index, replica.book.records()), (0, ()))
        self.assertEqual(replica.replicated_log.last_index, 1)
        self.assertEqual(replica.primary_id, 0)


class DivergedLogTests(unittest.TestCase):
    """After a failover a backup may hold entries the new primary overruled."""

    def test_backup_refuses_entries_after_a_mismatch_and_drops_the_overruled_suffix(self):
        lone = LoneReplica()
        replica = lone.replica
        lone.receive(0, AppendEntries(1, 0, -1, -1, 0, 1, (noop(1), order(1, 5, 1), order(1, 6, 1))))
        self.assertEqual(replica.commit_index, 0)
        # Primary 2 of view 2 holds (2, noop) at index 1 instead.
        replies = lone.receive(2, AppendEntries(2, 2, 1, 2, 1, 1, (order(2, 7, 1),)))
        self.assertEqual(replies, [(2, AppendReply(2, 1, False, 0, 1))], "resume after the commit")
        self.assertEqual(replica.replicated_log.last_index, 2)
        replies = lone.receive(2, AppendEntries(2, 2, 0, 1, 1, 2, (noop(2), order(2, 7, 1))))
        self.assertEqual(replies, [(2, AppendReply(2, 1, True, 2, 2))])
        self.assertEqual(replica.replicated_log.entries_from(0, 5), (noop(1), noop(2), order(2, 7, 1)))
        self.assertEqual(dict(replica.book.records()), {})

    def test_deposed_primary_restarts_and_its_longer_log_is_overruled(self):
        """
        A primary cut off with more orders than the new primary's log holds
        restarts: the new primary probes it from the end of its own log,
        where the two logs hold entries of different views; the restarted
        replica refuses, the new primary goes back to its commit index, and
        every log ends identical, without the overruled orders.
        """
        net = SimulatedNetwork(durable=True)
        old = elect(net)
        deposed = net.replicas[old]
        net.run_until(lambda: len(deposed.live) == 2, 2.0)
        others = [i for i in net.ids if i != old]
        net.partition([old], others)
        for customer in range(30):
            deposed.order(100 + customer, 1)
        net.run(0.05)
        net.run_until(lambda: net.primary() in others, FAILOVER_BOUND)
        new = net.primary()
        answers = []
        for customer in range(5):
            net.replicas[new].order(customer, 1).addCallback(answers.append)
        net.run_until(lambda: len(answers) == 5, 1.0)
        self.assertLess(
            net.replicas[new].replicated_log.last_index, deposed.replicated_log.last_index
        )
        net.crash(old)
        net.heal()
        net.trace = []
        net.restart(old)
        net.run_until(lambda: net.converged(net.ids), 3.0)
        restarted = net.replicas[old]
        refusals = [
            m for source, _, m in net.trace
            if source == old and type(m) is AppendReply and not m.success
        ]
        # Restarted, it knows nothing committed: the primary resends everything.
        self.assertEqual([m.match_index for m in refusals], [-1])
        log, primary_log = restarted.replicated_log, net.replicas[new].replicated_log
        self.assertEqual(log.entries_from(0, 100), primary_log.entries_from(0, 100))
        self.assertEqual(dict(restarted.book.records()), {customer: 1 for customer in range(5)})


class LoneReplica:
    """
    One replica (id 1 of 0, 1, 2, or of ``peers``) driven message by
    message, with what it sends kept in ``sent`` as (peer, message).
    """

    def __init__(self, storage=None, peers=(0, 2)):
        self.clock = task.Clock()
        self.sent = []
        self.replica = Replica(
            1, peers, self.clock, lambda peer, message: self.sent.append((peer, message)) or True,
            storage=storage,
        )
        self.replica.start()

    def receive(self, sender, message):
        """Deliver ``message``; return what the replica sent in answer."""
        del self.sent[:]
        self.replica.receive(sender, message)
        return list(self.sent)


def chunk(view, primary, offset, records, total=3, last_index=10, last_view=1, round_=1):
    return InstallSnapshot(view, primary, last_index, last_view, round_, total, offset, records)


class SnapshotChunkTests(unittest.TestCase):
    """A snapshot in chunks: installed once whole, from one view's primary only."""

    def test_installed_only_once_complete(self):
        lone = LoneReplica()
        replica = lone.replica
        self.assertEqual(
            lone.receive(0, chunk(1, 0, 0, ((1, 1), (2, 2)))), [(0, SnapshotReply(1, 1, 10, 2, 1))]
        )
        self.assertEqual((replica.commit_index, replica.book.records()), (-1, ()))
        self.assertEqual(
            lone.receive(0, chunk(1, 0, 1, ((2, 2),))), [(0, SnapshotReply(1, 1, 10, 2, 1))],
            "a chunk out of place is not added; the primary hears where to go on",
        )
        self.assertEqual(
            lone.receive(0, chunk(1, 0, 2, ((3, 3),))), [(0, AppendReply(1, 1, True, 10, 1))]
        )
        self.assertEqual(replica.commit_index, 10)
        self.assertEqual(replica.book.records(), ((1, 1), (2, 2), (3, 3)))
        self.assertEqual(replica.replicated_log.base_index, 10)

    def test_view_change_midway_discards_the_chunks(self):
        """
        Chunks received from the primary of view 1 are not completed by the
        same snapshot's last chunk sent in view 2, even by the same replica:
        a new view starts the snapshot again, and view 1 is refused.
        """
        lone = LoneReplica()
        replica = lone.replica
        lone.receive(0, chunk(1, 0, 0, ((1, 1), (2, 2))))
        lone.receive(0, VoteRequest(2, 0, 10, 1, False))
        self.assertEqual(replica.view, 2)
        self.assertEqual(
            lone.receive(0, chunk(2, 0, 2, ((3, 3),))), [(0, SnapshotReply(2, 1, 10, 0, 1))]
        )
        self.assertEqual(
            lone.receive(0, chunk(1, 0, 2, ((3, 3),))), [(0, AppendReply(2, 1, False, -1, 1))]
        )
        self.assertEqual((replica.commit_index, replica.book.records()), (-1, ()))

    def test_a_whole_chunk_fits_one_frame(self):
        records = ((1, 1),) * Replica.snapshot_chunk
        frame = encode_replica_message(InstallSnapshot(1, 0, 10, 1, 1, 10**7, 0, records))
        self.assertLessEqual(len(frame) - 8, MAX_FRAME_BODY)

    def test_chunks_of_another_primary_are_not_combined(self):
        """
        A view has one primary: a chunk from another replica claiming the
        same view is refused (counted), and the primary's snapshot goes on.
        """
        lone = LoneReplica()
        replica = lone.replica
        lone.receive(0, chunk(1, 0, 0, ((1, 1), (2, 2))))
        self.assertEqual(lone.receive(2, chunk(1, 2, 2, ((3, 3),))), [])
        self.assertEqual(replica._counters.counts["laptop_refused_second_primary"], 1)
        self.assertEqual((replica.commit_index, replica.book.records(), replica.primary_id),
                         (-1, (), 0))
        self.assertEqual(
            lone.receive(0, chunk(1, 0, 2, ((3, 3),))), [(0, AppendReply(1, 1, True, 10, 1))]
        )


class RandomFaultTests(unittest.TestCase):
    """Random crashes, freezes and partitions; the history must stay consistent."""

    def _run_with_faults(self, seed):
        net = SimulatedNetwork(seed=seed, durable=True, compact_threshold=200)
        elect(net)
        work = Workload(net, customers=4)
        rng = net.random
        for _ in range(6):
            net.run(rng.uniform(0.5, 2.0))
            fault = rng.choice(["crash", "freeze", "partition"])
            victim = rng.choice(net.ids)
            if fault == "crash":
                net.crash(victim)
                net.run(rng.uniform(0.2, 2.5))
                net.restart(victim)
            elif fault == "freeze":
                net.freeze(victim)
                net.run(rng.uniform(0.2, 2.5))
                net.resume(victim)
            else:
                net.partition([victim], [i for i in net.ids if i != victim])
                net.run(rng.uniform(0.2, 2.5))
                net.heal()
        work.limit = 0
        net.run(TIMEOUTS.request + 1.0)
        net.run_until(lambda: net.converged(net.ids), 5.0)
        self.assertGreater(work.acked(), 100)
        work.check(self, net.ids)

    def test_seeds(self):
        for seed in range(8):
            self._run_with_faults(seed)

    def test_seeds_with_snapshots_of_one_record_per_chunk(self):
        """Catch-up from snapshots sent a record at a time, so faults strike mid-snapshot."""
        self.patch(Replica, "snapshot_chunk", 1)
        for seed in range(8, 12):
            self._run_with_faults(seed)


class PreVoteTests(unittest.TestCase):
    """What a follower answers a replica asking whether it would vote for it."""

    def test_refused_while_the_primary_was_heard_within_the_election_timeout(self):
        """
        A rejoining replica cannot depose a primary its peers still hear
        from: a pre-vote is granted only once the primary has been silent
        for the election timeout.
        """
        lone = LoneReplica()
        lone.clock.advance(0.5)
        lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),)))
        ask = VoteRequest(2, 2, 0, 1, True)
        self.assertEqual(lone.receive(2, ask), [(2, VoteReply(1, 1, False, True))])
        lone.clock.advance(TIMEOUTS.election - STEP)
        self.assertEqual(lone.receive(2, ask), [(2, VoteReply(1, 1, False, True))])
        lone.clock.advance(STEP)
        self.assertEqual(lone.receive(2, ask), [(2, VoteReply(2, 1, True, True))])
        self.assertEqual(lone.replica.view, 1, "nobody adopts the view a pre-vote asks for")

    def test_refused_for_a_view_not_above_this_replicas(self):
        lone = LoneReplica()
        lone.receive(0, AppendEntries(3, 0, -1, -1, -1, 1, (noop(3),)))
        lone.clock.advance(TIMEOUTS.election * 2)
        for view in (2, 3):
            self.assertEqual(lone.receive(2, VoteRequest(view, 2, 5, 3, True)),
                             [(2, VoteReply(3, 1, False, True))], view)


#: timeouts that are sums of powers of two, so that a tick falls exactly on each of them
EXACT_TIMEOUTS = Timeouts(heartbeat=1 / 16, backup=0.75, election=1.0, election_stagger=0.25,
                          request=5.0, retransmit=2.0)


class LoneCandidate:
    """
    Replica 0 of 0 and ``peers`` (1 and 2 by default) on EXACT_TIMEOUTS,
    driven message by message, once its first pre-vote round is out; what
    it sends is kept in ``sent`` as (peer, message).
    """

    def __init__(self, peers=(1, 2)):
        self.clock = task.Clock()
        self.sent = []
        self.replica = Replica(
            0, peers, self.clock, lambda peer, message: self.sent.append((peer, message)) or True,
            timeouts=EXACT_TIMEOUTS,
        )
        self.replica.start()
        self.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger)

    def run(self, seconds, answering=()):
        """
        Let ``seconds`` pass, a heartbeat at a time, the ``answering``
        backups acknowledging every AppendEntries; return the AppendEntries
        sent to the others meanwhile, as (peer, message).
        """
        unanswered = []
        for _ in range(round(seconds / EXACT_TIMEOUTS.heartbeat)):
            self.clock.advance(EXACT_TIMEOUTS.heartbeat)
            unanswered += self.acknowledge(*answering)
        return unanswered

    def take(self, kind=object):
        """The messages of ``kind`` sent and not yet taken, as (peer, message)."""
        taken = [(peer, message) for peer, message in self.sent if isinstance(message, kind)]
        self.sent[:] = [sent for sent in self.sent if not isinstance(sent[1], kind)]
        return taken

    def acknowledge(self, *backups):
        """
        ``backups`` answer the AppendEntries last sent to them, holding all
        it carried; return those sent to the others, as (peer, message).
        """
        sent = self.take(AppendEntries)
        last = dict(sent)
        for backup in backups:
            message = last.get(backup)
            if message is not None:
                self.replica.receive(backup, AppendReply(
                    message.view, backup, True, message.prev_index + len(message.entries),
                    message.round))
        self.clock.advance(0)
        return [(peer, message) for peer, message in sent if peer not in backups]


class LonePrimary(LoneCandidate):
    """A LoneCandidate that a majority voted for (1, then 2...): primary of view 1."""

    def __init__(self, peers=(1, 2)):
        super().__init__(peers)
        voters = peers[: self.replica.majority - 1]
        for pre in (True, False):
            for voter in voters:
                self.replica.receive(voter, VoteReply(1, voter, True, pre))
        assert self.replica.role == PRIMARY
        self.take()
        self.clock.advance(0)

    def serve_forwarded_order(self, tag: int, customer_id: int) -> None:
        """Backups in step, backup 1 forwards order 0 of ``customer_id``; it goes to the backups."""
        self.acknowledge(1, 2)
        self.replica.receive(1, ForwardRequest(tag, customer_id, 0, TYPE_ORDER))
        self.clock.advance(0)
        self.take()

    def commit_orders(self, customer_id: int, count: int) -> None:
        """Backups 1 and 2 in step, ``count`` orders of ``customer_id`` committed one by one."""
        self.acknowledge(1, 2)
        for number in range(count):
            self.replica.order(customer_id, number)
            self.clock.advance(0)
            self.acknowledge(1, 2)


class RetransmitTests(unittest.TestCase):
    def test_an_unanswered_backup_is_sent_again_what_it_was_not_known_to_hold(self):
        """
        After the retransmit timeout a backup's message counts as lost: it
        is sent again from the entry after the last it acknowledged, not
        from the start of the log.
        """
        lone = LonePrimary()
        primary = lone.replica
        lone.commit_orders(5, 3)
        self.assertEqual(primary.commit_index, 3)
        primary.order(5, 3)
        lone.clock.advance(0)
        [(_, lost)] = lone.acknowledge(1)
        self.assertEqual((lost.prev_index, len(lost.entries)), (3, 1))
        timeouts = EXACT_TIMEOUTS
        self.assertEqual(lone.run(timeouts.retransmit - timeouts.heartbeat, answering=[1]), [])
        [(_, again)] = lone.run(timeouts.heartbeat, answering=[1])
        self.assertEqual((again.prev_index, again.entries), (3, lost.entries))
        self.assertNotIn(2, primary.live, "dropped after the backup timeout")


class FailureDetectorTests(unittest.TestCase):
    def test_a_live_backup_silent_for_the_backup_timeout_leaves_the_live_set(self):
        lone = LonePrimary()
        primary = lone.replica
        lone.acknowledge(1, 2)
        self.assertEqual(primary.live, {1, 2})
        timeouts = EXACT_TIMEOUTS
        lone.run(timeouts.backup - timeouts.heartbeat, answering=[1])
        self.assertEqual(primary.live, {1, 2})
        lone.run(timeouts.heartbeat, answering=[1])
        self.assertEqual(primary.live, {1})
        self.assertEqual(primary._counters.counts["laptop_backup_dropped"], 1)


class StepDownTests(unittest.TestCase):
    def test_a_forwarded_order_still_waiting_is_sent_elsewhere(self):
        """
        A primary that steps down before an order it serves for a backup
        commits tells that backup to retry elsewhere, so the customer is
        not left waiting for the request timeout.
        """
        lone = LonePrimary()
        primary = lone.replica
        lone.serve_forwarded_order(7, 5)
        primary.receive(2, AppendReply(2, 2, False, -1, 0))
        self.assertEqual(primary.role, FOLLOWER)
        self.assertEqual(lone.take(ForwardReply), [(1, ForwardReply(7, FORWARD_RETRY, -1, -1))])


class CandidateTests(unittest.TestCase):
    def test_a_candidate_whose_election_went_unanswered_asks_again_as_a_follower(self):
        """
        An election nobody answered ends with the next election timeout: the
        candidate asks for pre-votes again, as a follower, and a majority of
        them starts the election of the next view.
        """
        lone = LoneCandidate()
        replica = lone.replica
        replica.receive(1, VoteReply(1, 1, True, True))
        self.assertEqual((replica.role, replica.view), (CANDIDATE, 1))
        lone.take()
        lone.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger)
        self.assertEqual((replica.role, replica.view), (FOLLOWER, 1))
        self.assertEqual(lone.take(VoteRequest), [(1, VoteRequest(2, 0, -1, -1, True)),
                                                  (2, VoteRequest(2, 0, -1, -1, True))])
        replica.receive(2, VoteReply(2, 2, True, True))
        self.assertEqual((replica.role, replica.view), (CANDIDATE, 2))

    def test_a_candidate_follows_the_primary_of_its_view(self):
        """Another replica won the view: its entries make this candidate its follower."""
        lone = LoneCandidate()
        replica = lone.replica
        replica.receive(1, VoteReply(1, 1, True, True))
        self.assertEqual((replica.role, replica.view), (CANDIDATE, 1))
        replica.receive(2, AppendEntries(1, 2, -1, -1, -1, 1, (noop(1),)))
        self.assertEqual((replica.role, replica.view, replica.primary_id), (FOLLOWER, 1, 2))
        self.assertNotIn("laptop_step_downs", replica._counters.counts, "it was no primary")
        replica.receive(1, VoteReply(1, 1, True, False))
        self.assertEqual(replica.role, FOLLOWER, "a view has one primary")

    def test_replicas_stand_in_the_order_of_their_ids(self):
        """
        Each replica waits ``election_stagger`` longer than the one before
        it, plus a jitter of at most half of that: never as long as the
        next replica's wait.
        """

        class HighestDraw:
            def uniform(self, low, high):
                return high

        timeouts = attrs.evolve(EXACT_TIMEOUTS, heartbeat=1 / 64)
        for rank in range(3):
            clock = task.Clock()
            sent = []
            replica = Replica(rank, [i for i in range(3) if i != rank], clock,
                              lambda peer, message: sent.append(message) or True,
                              timeouts=timeouts, rng=HighestDraw())
            replica.start()
            span = timeouts.election + (rank + 0.5) * timeouts.election_stagger
            ticks = round(span / timeouts.heartbeat)
            for _ in range(ticks - 1):
                clock.advance(timeouts.heartbeat)
            self.assertEqual(sent, [], rank)
            clock.advance(timeouts.heartbeat)
            self.assertEqual({type(message) for message in sent}, {VoteRequest}, rank)

    def test_an_id_below_zero_waits_as_the_first(self):
        """Ids are not negative (the tap refuses them); one that is waits as id 0 would."""
        clock = task.Clock()
        sent = []
        replica = Replica(-1, [0, 1], clock, lambda peer, message: sent.append(message) or True,
                          timeouts=EXACT_TIMEOUTS, rng=random.Random(0))
        replica.start()
        for _ in range(round(EXACT_TIMEOUTS.election / EXACT_TIMEOUTS.heartbeat) - 1):
            clock.advance(EXACT_TIMEOUTS.heartbeat)
        self.assertEqual(sent, [])


class PreVoteReplyTests(unittest.TestCase):
    def test_a_primary_is_not_moved_by_pre_votes_it_did_not_ask_for(self):
        lone = LonePrimary()
        primary = lone.replica
        for peer in (1, 2):
            primary.receive(peer, VoteReply(2, peer, True, True))
        self.assertEqual((primary.role, primary.view), (PRIMARY, 1))
        self.assertEqual(lone.take(VoteRequest), [])

    def test_a_refusal_in_this_replicas_own_view_changes_nothing(self):
        """Refused pre-votes carry the refuser's view: only a higher one is news."""
        lone = LoneReplica()
        follower = lone.replica
        lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),)))
        follower.receive(2, VoteReply(1, 2, False, True))
        self.assertEqual((follower.view, follower.primary_id), (1, 0))
        primary = LonePrimary().replica
        primary.receive(2, VoteReply(1, 2, False, True))
        self.assertEqual((primary.role, primary.view), (PRIMARY, 1))

    def test_a_granted_pre_vote_for_another_view_does_not_count(self):
        """Only pre-votes for the view this round asks for (view 1 here) count."""
        lone = LoneCandidate()
        replica = lone.replica
        replica.receive(2, VoteReply(0, 2, True, True))
        replica.receive(2, VoteReply(2, 2, True, True))
        self.assertEqual((replica.role, replica.view), (FOLLOWER, 0))
        replica.receive(2, VoteReply(1, 2, True, True))
        self.assertEqual((replica.role, replica.view), (CANDIDATE, 1))

    def test_a_candidate_is_not_moved_by_pre_votes_it_did_not_ask_for(self):
        lone = LoneCandidate()
        candidate = lone.replica
        candidate.receive(1, VoteReply(1, 1, True, True))
        self.assertEqual((candidate.role, candidate.view), (CANDIDATE, 1))
        for peer in (1, 2):
            candidate.receive(peer, VoteReply(2, peer, True, True))
        self.assertEqual((candidate.role, candidate.view), (CANDIDATE, 1))


class StaleVoteTests(unittest.TestCase):
    """Vote requests and replies of an older view change nothing."""

    def test_a_primary_stays_primary(self):
        lone = LonePrimary()
        primary = lone.replica
        lone.acknowledge(1, 2)
        primary.receive(2, VoteRequest(0, 2, 5, 0, False))
        primary.receive(2, VoteReply(0, 2, True, False))
        self.assertEqual((primary.role, primary.view), (PRIMARY, 1))

    def test_a_candidate_stays_candidate(self):
        lone = LoneCandidate()
        candidate = lone.replica
        candidate.receive(1, VoteReply(1, 1, True, True))
        candidate.receive(2, VoteReply(0, 2, False, False))
        self.assertEqual((candidate.role, candidate.view), (CANDIDATE, 1))

    def test_a_vote_granted_in_an_older_view_does_not_count(self):
        lone = LoneCandidate()
        candidate = lone.replica
        candidate.receive(1, VoteReply(1, 1, True, True))
        lone.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger)
        candidate.receive(1, VoteReply(2, 1, True, True))
        self.assertEqual((candidate.role, candidate.view), (CANDIDATE, 2))
        candidate.receive(2, VoteReply(1, 2, True, False))
        self.assertEqual((candidate.role, candidate.view), (CANDIDATE, 2))

    def test_a_primary_refuses_pre_votes(self):
        """It never heard of another primary, yet it is one: nobody may take over its view."""
        lone = LonePrimary()
        primary = lone.replica
        lone.take()
        primary.receive(2, VoteRequest(2, 2, 5, 1, True))
        self.assertEqual(lone.take(VoteReply), [(2, VoteReply(1, 0, False, True))])

    def test_a_primary_refuses_a_vote_in_its_own_view(self):
        """A primary of view 1 already holds view 1: another candidate of it cannot win."""
        lone = LonePrimary()
        primary = lone.replica
        lone.take()
        primary.receive(2, VoteRequest(1, 2, 5, 1, False))
        self.assertEqual((primary.role, primary.view), (PRIMARY, 1))
        self.assertEqual(lone.take(VoteReply), [(2, VoteReply(1, 0, False, False))])


class HighViewTests(unittest.TestCase):
    def test_a_replica_at_the_last_view_does_not_stand(self):
        """Views stop at MAX_VIEW: a replica there waits for a primary instead."""
        lone = LoneReplica()
        replica = lone.replica
        # MAX_VIEW + 0: a new int object, as a decoded frame holds
        lone.receive(0, AppendEntries(MAX_VIEW + 0, 0, -1, -1, -1, 1, (noop(MAX_VIEW),)))
        self.assertEqual(replica.view, MAX_VIEW)
        lone.clock.pump([TIMEOUTS.heartbeat] * round(3 * TIMEOUTS.election / TIMEOUTS.heartbeat))
        self.assertEqual([message for _, message in lone.sent if isinstance(message, VoteRequest)],
                         [])
        self.assertGreater(replica._counters.counts["laptop_view_limit_reached"], 0)

    def test_elections_in_views_beyond_small_numbers(self):
        """Views go up to 2**30: a pre-vote and an election far up that range still succeed."""
        lone = LoneCandidate()
        replica = lone.replica
        view = 100_000
        replica.receive(1, AppendEntries(view, 1, -1, -1, -1, 1, (noop(view),)))
        self.assertEqual((replica.view, replica.primary_id), (view, 1))
        lone.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger / 2)
        self.assertEqual(lone.take(VoteRequest)[-1], (2, VoteRequest(view + 1, 0, 0, view, True)))
        replica.receive(2, VoteReply(view + 1, 2, True, True))
        self.assertEqual((replica.role, replica.view), (CANDIDATE, view + 1))
        replica.receive(2, VoteReply(view + 1, 2, True, False))
        self.assertEqual((replica.role, replica.view), (PRIMARY, view + 1))


class VoteTests(unittest.TestCase):
    def test_a_request_of_an_older_view_gets_no_vote(self):
        """A vote belongs to one view: a request of an older one neither gets nor spends it."""
        lone = LoneReplica()
        replica = lone.replica
        lone.receive(0, AppendEntries(3, 0, -1, -1, -1, 1, (noop(3),)))
        self.assertEqual(
            lone.receive(2, VoteRequest(2, 2, 5, 3, False)), [(2, VoteReply(3, 1, False, False))]
        )
        self.assertIsNone(replica.voted_for)
        self.assertEqual(
            lone.receive(2, VoteRequest(4, 2, 5, 3, False)), [(2, VoteReply(4, 1, True, False))]
        )
        self.assertEqual(replica.voted_for, 2)

    def test_a_candidate_asking_again_gets_its_vote_again(self):
        """A request repeated (its reply lost, say) is granted again, in any view."""
        for view in (1, 100_001):
            lone = LoneReplica()
            if view > 1:
                lone.receive(0, AppendEntries(view - 1, 0, -1, -1, -1, 1, ()))
            for _ in range(2):
                # view + 0: a new int object each time, as each decoded frame holds
                self.assertEqual(lone.receive(2, VoteRequest(view + 0, 2, -1, -1, False)),
                                 [(2, VoteReply(view, 1, True, False))], view)

    def test_one_vote_per_view(self):
        lone = LoneReplica()
        self.assertEqual(
            lone.receive(2, VoteRequest(1, 2, -1, -1, False)), [(2, VoteReply(1, 1, True, False))]
        )
        self.assertEqual(
            lone.receive(0, VoteRequest(1, 0, -1, -1, False)), [(0, VoteReply(1, 1, False, False))]
        )
        self.assertEqual(lone.replica.voted_for, 2)

    def test_a_candidate_that_follows_another_keeps_its_vote_for_itself(self):
        for view in (1, 100_001):
            lone = LoneCandidate()
            candidate = lone.replica
            if view > 1:
                candidate.receive(1, AppendEntries(view - 1, 1, -1, -1, -1, 1, ()))
                lone.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger / 2)
            candidate.receive(1, VoteReply(view, 1, True, True))
            self.assertEqual((candidate.role, candidate.view), (CANDIDATE, view))
            candidate.receive(2, AppendEntries(view, 2, -1, -1, -1, 1, (noop(view),)))
            self.assertEqual((candidate.role, candidate.voted_for), (FOLLOWER, 0))
            lone.take()
            candidate.receive(1, VoteRequest(view, 1, 0, view, False))
            self.assertEqual(lone.take(VoteReply), [(1, VoteReply(view, 0, False, False))])


class NewPrimaryTests(unittest.TestCase):
    def test_a_retried_order_already_in_the_log_is_not_appended_again(self):
        """
        An order the last primary appended but did not commit is the new
        primary's to commit: the customer's retry joins that entry.
        """
        lone = LoneCandidate()
        replica = lone.replica
        replica.receive(1, AppendEntries(1, 1, -1, -1, 0, 1, (noop(1), order(1, 5, 3))))
        self.assertEqual(replica.commit_index, 0)
        lone.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger / 2)
        replica.receive(2, VoteReply(2, 2, True, True))
        replica.receive(2, VoteReply(2, 2, True, False))
        self.assertEqual((replica.role, replica.view), (PRIMARY, 2))
        log = replica.replicated_log
        self.assertEqual((log.last_index, log.entry(2)), (2, noop(2)))
        lone.clock.advance(0)
        # Backups likely hold what it holds: it probes from the end of its log.
        [probe] = [message for peer, message in lone.sent
                   if peer == 2 and isinstance(message, AppendEntries)]
        self.assertEqual((probe.prev_index, probe.prev_view, probe.entries), (1, 1, (noop(2),)))
        results = []
        replica.order(5, 3).addCallback(results.append)
        replica.order(5, 2).addCallback(results.append)
        lone.clock.advance(0)
        self.assertEqual(log.last_index, 2)
        self.assertEqual(replica._counters.counts["laptop_repeated_orders"], 2)
        self.assertEqual(results, [])
        lone.acknowledge(2)
        self.assertEqual(results, [0, 0])


class ForwardingTests(unittest.TestCase):
    def test_a_request_waiting_for_a_primary_goes_to_it_once_known(self):
        lone = LoneReplica()
        lone.replica.order(5, 0)
        self.assertEqual(lone.sent, [])
        sent = lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),)))
        self.assertIn((0, ForwardRequest(0, 5, 0, TYPE_ORDER)), sent)


class FiveReplicaTests(unittest.TestCase):
    """Majorities of five: three replicas, the candidate or primary and two others."""

    def test_a_candidate_needs_two_votes_besides_its_own(self):
        lone = LoneCandidate(peers=(1, 2, 3, 4))
        candidate = lone.replica
        candidate.receive(1, VoteReply(1, 1, True, True))
        self.assertEqual((candidate.role, candidate.view), (FOLLOWER, 0), "one pre-vote of two")
        candidate.receive(2, VoteReply(1, 2, True, True))
        self.assertEqual((candidate.role, candidate.view), (CANDIDATE, 1))
        candidate.receive(1, VoteReply(1, 1, True, False))
        self.assertEqual(candidate.role, CANDIDATE)
        candidate.receive(3, VoteReply(1, 3, True, False))
        self.assertEqual(candidate.role, PRIMARY)

    def test_a_primary_hearing_from_one_backup_of_four_steps_down(self):
        lone = LonePrimary(peers=(1, 2, 3, 4))
        primary = lone.replica
        lone.acknowledge(1, 2, 3, 4)
        lone.run(EXACT_TIMEOUTS.election - EXACT_TIMEOUTS.heartbeat, answering=[1])
        self.assertEqual(primary.role, PRIMARY)
        lone.run(EXACT_TIMEOUTS.heartbeat, answering=[1])
        self.assertEqual(primary.role, FOLLOWER)

    def test_two_backups_of_four_are_enough(self):
        lone = LonePrimary(peers=(1, 2, 3, 4))
        primary = lone.replica
        lone.acknowledge(1, 2, 3, 4)
        lone.run(EXACT_TIMEOUTS.election * 2, answering=[1, 3])
        self.assertEqual((primary.role, primary.view), (PRIMARY, 1))


class MajorityContactTests(unittest.TestCase):
    def test_a_primary_steps_down_when_no_backup_was_heard_for_the_election_timeout(self):
        lone = LonePrimary()
        primary = lone.replica
        lone.acknowledge(1, 2)
        lone.run(EXACT_TIMEOUTS.election - EXACT_TIMEOUTS.heartbeat)
        self.assertEqual(primary.role, PRIMARY)
        lone.run(EXACT_TIMEOUTS.heartbeat)
        self.assertEqual((primary.role, primary.primary_id), (FOLLOWER, None))

    def test_one_backup_heard_is_enough(self):
        lone = LonePrimary()
        primary = lone.replica
        lone.acknowledge(1, 2)
        lone.run(EXACT_TIMEOUTS.election * 3, answering=[1])
        self.assertEqual((primary.role, primary.view), (PRIMARY, 1))


class StallCreditTests(unittest.TestCase):
    """Which late ticks of a primary count as a pause of its own (see ``_credit_stall``)."""

    def late_tick(self, lone, late_by):
        """The next tick runs ``late_by`` seconds late; return the stalls counted so far."""
        lone.clock.advance(EXACT_TIMEOUTS.heartbeat + late_by)
        return lone.replica._counters.counts.get("laptop_primary_stalls", 0)

    def test_a_tick_late_by_half_the_backup_timeout_is_a_stall(self):
        lone = LonePrimary()
        lone.acknowledge(1, 2)
        half = EXACT_TIMEOUTS.backup / 2
        self.assertEqual(self.late_tick(lone, half - EXACT_TIMEOUTS.heartbeat), 0)
        lone.acknowledge(1, 2)
        self.assertEqual(self.late_tick(lone, half), 1)

    def test_a_pause_as_long_as_the_election_timeout_is_not_credited(self):
        """The backups may have elected another primary meanwhile."""
        lone = LonePrimary()
        lone.acknowledge(1, 2)
        below = EXACT_TIMEOUTS.election - EXACT_TIMEOUTS.heartbeat
        self.assertEqual(self.late_tick(lone, below), 1)
        lone.acknowledge(1, 2)
        self.assertEqual(self.late_tick(lone, EXACT_TIMEOUTS.election), 1)
        self.assertEqual(lone.replica.role, FOLLOWER)

    def test_only_the_pause_is_credited(self):
        """
        A backup already silent before the pause is dropped once silent for
        the backup timeout, not counting the pause.
        """
        lone = LonePrimary()
        primary = lone.replica
        lone.acknowledge(1, 2)
        timeouts = EXACT_TIMEOUTS
        lone.run(timeouts.backup / 2, answering=[1])
        pause = timeouts.backup * 2 / 3
        self.assertEqual(self.late_tick(lone, pause), 1)
        lone.acknowledge(1)
        self.assertEqual(primary.live, {1, 2})
        silent = timeouts.backup / 2 + timeouts.heartbeat
        lone.run(timeouts.backup - silent - timeouts.heartbeat, answering=[1])
        self.assertEqual(primary.live, {1, 2})
        lone.run(timeouts.heartbeat, answering=[1])
        self.assertEqual(primary.live, {1})


class LinkTests(unittest.TestCase):
    """What a replica does when a link to a peer drops and comes back."""

    def test_a_request_forwarded_before_the_primarys_link_dropped_goes_again_once_back(self):
        lone = LoneReplica()
        replica = lone.replica
        lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),)))
        del lone.sent[:]
        replica.order(5, 0)
        self.assertEqual(lone.sent, [(0, ForwardRequest(0, 5, 0, TYPE_ORDER))])
        del lone.sent[:]
        replica.peer_lost(0)
        replica.peer_connected(0)
        self.assertEqual(lone.sent, [(0, ForwardRequest(0, 5, 0, TYPE_ORDER))])

    def test_a_primary_probes_a_reconnected_backup_from_the_end_of_its_log(self):
        """It may come back restarted with less: what it holds is asked again."""
        lone = LonePrimary()
        primary = lone.replica
        lone.commit_orders(5, 3)
        last = primary.replicated_log.last_index
        primary.peer_lost(2)
        primary.peer_connected(2)
        [(_, probe)] = [sent for sent in lone.take(AppendEntries) if sent[0] == 2]
        self.assertEqual((probe.prev_index, probe.entries), (last, ()))

    def test_stale_replies_do_not_depose_a_primary(self):
        lone = LonePrimary()
        primary = lone.replica
        lone.acknowledge(1, 2)
        primary.receive(2, AppendReply(0, 2, False, -1, 0))
        primary.receive(2, SnapshotReply(0, 2, 9, 0, 0))
        self.assertEqual((primary.role, primary.view), (PRIMARY, 1))

    def test_a_second_primary_of_a_high_view_is_refused(self):
        lone = LoneReplica()
        replica = lone.replica
        view = 100_000
        lone.receive(0, AppendEntries(view, 0, -1, -1, -1, 1, (noop(view),)))
        # view + 0: a new int object, as a decoded frame holds
        lone.receive(2, AppendEntries(view + 0, 2, 0, view, -1, 1, (order(view, 5, 1),)))
        self.assertEqual((replica.primary_id, replica.replicated_log.last_index), (0, 0))
        self.assertEqual(replica._counters.counts["laptop_refused_second_primary"], 1)

    def test_a_primary_with_a_high_id_is_followed_from_message_to_message(self):
        clock = task.Clock()
        sent = []
        replica = Replica(1, [1000, 2000], clock, lambda peer, message: sent.append(message) or True)
        replica.start()
        primary = 1000
        replica.receive(primary, AppendEntries(1, primary + 0, -1, -1, -1, 1, (noop(1),)))
        # primary + 0: a new int object, as each decoded frame holds
        replica.receive(primary, AppendEntries(1, primary + 0, 0, 1, 0, 2, (order(1, 5, 1),)))
        self.assertEqual((replica.primary_id, replica.commit_index), (1000, 0))
        self.assertEqual(sent[-1], AppendReply(1, 1, True, 1, 2))

    def test_a_view_below_zero_is_refused(self):
        lone = LoneReplica()
        self.assertEqual(lone.receive(2, VoteRequest(-1, 2, 5, 0, False)), [])
        self.assertEqual(lone.replica._counters.counts["laptop_refused_view_out_of_range"], 1)
