"""
The replication state machine against a replica that sends anything: the
forged frames of the two reported attacks, and arbitrary messages from a
buggy or compromised replica (hypothesis), over the simulated network.
Whatever arrives, no handler raises and no replica's committed entries or
committed orders change.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from marketplace.laptop.replication import PRIMARY
from protocols.laptop import (
    MAX_VIEW,
    AppendEntries,
    AppendReply,
    Entry,
    ForwardReply,
    ForwardRequest,
    InstallSnapshot,
    SnapshotReply,
    VoteReply,
    VoteRequest,
)
from tests.laptop.simnet import SimulatedNetwork
from tests.laptop.test_replication import elect

INT32 = 2**31 - 1


def place_orders(net, orders):
    """Commit ``orders`` ({customer: last order}) through the primary, one by one."""
    primary = net.replicas[net.primary()]
    for customer, last in orders.items():
        for number in range(last + 1):
            primary.order(customer, number)
    net.run_until(net.converged, 5.0)


class CommittedState:
    """
    What each replica has committed so far; ``check`` fails if any of it
    changed: the commit index went back, a committed entry still in the
    log differs, or a committed order number went down or vanished.
    """

    def __init__(self, testcase, net):
        self.testcase = testcase
        self.net = net
        self.seen = {}
        self.record()

    def _state(self, replica):
        log = replica.replicated_log
        first = log.base_index + 1
        entries = dict(
            enumerate(log.entries_from(first, replica.commit_index - log.base_index), first)
        )
        return replica.commit_index, entries, dict(replica.book.records())

    def record(self):
        self.seen = {i: self._state(r) for i, r in self.net.replicas.items()}

    def check(self):
        for i, replica in self.net.replicas.items():
            commit, entries, book = self.seen[i]
            now_commit, now_entries, now_book = self._state(replica)
            self.testcase.assertGreaterEqual(now_commit, commit, f"replica {i} commit index")
            for index, entry in now_entries.items():
                if index in entries:
                    self.testcase.assertEqual(entry, entries[index], f"replica {i} entry {index}")
            for customer, order in book.items():
                self.testcase.assertGreaterEqual(
                    now_book.get(customer, -1), order, f"replica {i} customer {customer}"
                )
        self.record()


class ReportedForgeriesTests(unittest.TestCase):
    """The two reported frames, as the state machine receives them from a link."""

    def test_forged_snapshot_rolls_nothing_back(self):
        """
        InstallSnapshot of the current view, ``last_index`` 10**9 and
        records {0: 5, 999: 424242}, delivered to every replica as if from
        every replica (the report's frame came with ``Hello(0)``).
        """
        net = SimulatedNetwork()
        elect(net)
        place_orders(net, {0: 54, 1: 3})
        books = net.books()
        committed = CommittedState(self, net)
        view = net.replicas[net.primary()].view
        for sender in net.ids:
            forged = InstallSnapshot(view, sender, 10**9, view, 0, 2, 0, ((0, 5), (999, 424242)))
            for target in net.ids:
                net.replicas[target].receive(sender, forged)
        net.run(2.0)
        committed.check()
        self.assertEqual(net.books(), books)
        refused = sum(
            r._counters.counts.get("laptop_refused_snapshot_loses_commits", 0)
            + r._counters.counts.get("laptop_refused_second_primary", 0)
            + r._counters.counts.get("laptop_refused_unknown_sender", 0)
            for r in net.replicas.values()
        )
        self.assertEqual(refused, 9, "every copy is refused and counted")

    def test_backup_reporting_more_than_it_was_sent_is_not_believed(self):
        """The primary's tick raised IndexError on a match index from beyond its log."""
        net = SimulatedNetwork()
        primary_id = elect(net)
        place_orders(net, {0: 3})
        primary = net.replicas[primary_id]
        backup = next(i for i in net.ids if i != primary_id)
        for match in (10**9, 2**63 - 1, -(2**63)):
            for success in (True, False):
                primary.receive(backup, AppendReply(primary.view, backup, success, match, 2**62))
                net.run(0.5)
        place_orders(net, {0: 10})
        self.assertTrue(net.converged())
        self.assertEqual(net.books()[backup], ((0, 10),))

    def test_view_at_the_field_limit_is_refused_and_elections_go_on(self):
        """The report's frame: every replica adopted view 2**31-1 and no election could follow."""
        net = SimulatedNetwork(durable=True)
        old = elect(net)
        forged = InstallSnapshot(INT32, 0, 0, INT32, 0, 0, 0, ())
        for target in net.ids:
            for sender in net.ids:
                net.replicas[target].receive(sender, forged)
                net.replicas[target].receive(sender, VoteRequest(INT32, sender, 0, 0, False))
        self.assertTrue(all(r.view <= MAX_VIEW for r in net.replicas.values()))
        net.crash(old)
        new = elect(net)
        self.assertNotEqual(new, old)
        net.restart(old)
        net.run(2.0)
        self.assertEqual(net.primary(), new)

    def test_no_election_beyond_the_view_limit(self):
        """A replica whose view reached the limit does not overflow it: it stops standing."""
        net = SimulatedNetwork(count=1)
        replica = net.replicas[0]
        replica.view = MAX_VIEW
        net.run(3.0)
        self.assertEqual(replica.view, MAX_VIEW)
        self.assertNotEqual(replica.role, PRIMARY)
        self.assertGreater(replica._counters.counts["laptop_view_limit_reached"], 0)


# ---------------------------------------------------------------- any message

_views = st.one_of(st.integers(0, 6), st.sampled_from([-1, MAX_VIEW, MAX_VIEW + 1, INT32]))
_ids = st.integers(-1, 3)
_indexes = st.one_of(st.integers(-3, 80), st.sampled_from([10**9, 2**63 - 1, -(2**63)]))
_numbers = st.one_of(st.integers(-2, 60), st.just(INT32))
_entries = st.lists(
    st.builds(Entry, _views, st.integers(-1, 2), st.integers(-1, 4), _numbers), max_size=4
).map(tuple)
_records = st.lists(st.tuples(st.integers(-1, 5), _numbers), max_size=5).map(tuple)

MESSAGES = st.one_of(
    st.builds(AppendEntries, _views, _ids, _indexes, _views, _indexes, _indexes, _entries),
    st.builds(AppendReply, _views, _ids, st.booleans(), _indexes, _indexes),
    st.builds(VoteRequest, _views, _ids, _indexes, _views, st.booleans()),
    st.builds(VoteReply, _views, _ids, st.booleans(), st.booleans()),
    st.builds(InstallSnapshot, _views, _ids, _indexes, _views, _indexes, st.integers(-1, 6),
              st.integers(-1, 6), _records),
    st.builds(SnapshotReply, _views, _ids, _indexes, st.integers(-1, 6), _indexes),
    st.builds(ForwardRequest, _indexes, st.integers(-1, 4), _numbers, st.integers(0, 5)),
    st.builds(ForwardReply, _indexes, st.integers(0, 2), _numbers, _ids),
)

#: (simulated steps to run first, sender, target, message); sender 3 is no replica
SCHEDULES = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 3), st.integers(0, 2), MESSAGES),
    min_size=1,
    max_size=25,
)


class HostileReplicaTests(unittest.TestCase):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(SCHEDULES, st.integers(0, 3))
    def test_committed_entries_never_change(self, schedule, seed):
        """
        A cluster taking orders while messages with arbitrary fields arrive
        on its authenticated links, as from a buggy or compromised replica
        (the honest one of that id keeps running too).
        """
        net = SimulatedNetwork(seed=seed)
        elect(net)
        customers = {}

        def order_more():
            primary = net.primary()
            if primary is not None:
                for customer in range(3):
                    customers[customer] = customers.get(customer, -1) + 1
                    d = net.replicas[primary].order(customer, customers[customer])
                    d.addErrback(lambda failure: None)

        committed = CommittedState(self, net)
        for steps, sender, target, message in schedule:
            for _ in range(steps):
                net.step()
                committed.check()
            order_more()
            if sender != target:
                net.replicas[target].receive(sender, message)
                committed.check()
        for _ in range(200):
            net.step()
            committed.check()
