"""
The replication state machine as a backup, one rule a test: entries and
snapshots received and checked, forwarded requests and their replies, and
links to the primary or to a backup that drop.
"""

from twisted.trial import unittest

from marketplace.laptop.replication import ReadResult
from protocols.laptop import (
    FORWARD_OK,
    FORWARD_RETRY,
    TYPE_LOCAL_READ,
    TYPE_ORDER,
    TYPE_READ,
    AppendEntries,
    AppendReply,
    Entry,
    ForwardReply,
    ForwardRequest,
    SnapshotReply,
    VoteRequest,
)
from tests.laptop.simnet import SimulatedDisk
from tests.laptop.test_replication import (
    EXACT_TIMEOUTS,
    TIMEOUTS,
    LonePrimary,
    LoneReplica,
    chunk,
    noop,
    order,
)


def follow_primary_0(lone):
    """Make ``lone``'s replica the backup of replica 0, primary of view 1."""
    lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),)))


def refusals(replica, why):
    """How many messages ``replica`` refused for ``why`` (see ``Replica._refuse``)."""
    return replica._counters.counts.get("laptop_refused_" + why, 0)


class EntriesCheckTests(unittest.TestCase):
    """Entries a primary could not have sent are refused (counted) and change nothing."""

    def assertRefused(self, message):
        lone = LoneReplica()
        self.assertEqual(lone.receive(0, message), [], message)
        replica = lone.replica
        self.assertEqual(refusals(replica, "malformed_entries"), 1, message)
        self.assertEqual((replica.replicated_log.last_index, replica.primary_id), (-1, None))

    def test_indexes_below_minus_one_are_refused(self):
        """-1 stands for "before the first entry": no index is below it."""
        self.assertRefused(AppendEntries(1, 0, -2, -1, -1, 1, (noop(1),)))
        self.assertRefused(AppendEntries(1, 0, -1, -1, -2, 1, (noop(1),)))

    def test_a_prev_view_below_minus_one_is_refused(self):
        """-1 is the view before the first entry: no view is below it."""
        self.assertRefused(AppendEntries(1, 0, -1, -2, -1, 1, (noop(1),)))

    def test_entry_views_never_decrease_nor_pass_the_messages(self):
        """A primary's log holds its own view's entries last."""
        self.assertRefused(AppendEntries(2, 0, -1, -1, -1, 1, (noop(2), noop(1))))
        self.assertRefused(AppendEntries(1, 0, -1, -1, -1, 1, (noop(2),)))

    def test_unknown_opcodes_are_refused(self):
        """Opcodes 2 and -1 are neither orders nor no-ops, whatever customer and number they carry."""
        self.assertRefused(AppendEntries(1, 0, -1, -1, -1, 1, (Entry(1, 2, 5, 1),)))
        self.assertRefused(AppendEntries(1, 0, -1, -1, -1, 1, (Entry(1, -1, 5, 1),)))

    def test_orders_with_a_customer_or_number_below_zero_are_refused(self):
        """No customer places those (customer 0's order 0 is taken)."""
        self.assertRefused(AppendEntries(1, 0, -1, -1, -1, 1, (order(1, -1, 0),)))
        self.assertRefused(AppendEntries(1, 0, -1, -1, -1, 1, (order(1, 5, -1),)))
        lone = LoneReplica()
        self.assertEqual(lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (order(1, 0, 0),))),
                         [(0, AppendReply(1, 1, True, 0, 1))])


class AppendTests(unittest.TestCase):
    """How a backup's log takes a primary's entries."""

    def test_entries_after_the_logs_end_are_refused_with_where_it_ends(self):
        """The primary goes on from there; a success would have it believe this log matches."""
        lone = LoneReplica()
        follow_primary_0(lone)
        self.assertEqual(lone.receive(0, AppendEntries(1, 0, 3, 1, -1, 2, (order(1, 5, 1),))),
                         [(0, AppendReply(1, 1, False, 0, 2))])
        self.assertEqual(lone.replica.replicated_log.last_index, 0)

    def test_an_entry_of_a_lower_view_replaces_one_of_a_higher_view_not_committed(self):
        """
        A primary of view 3 that failed left an entry only this backup holds;
        the primary of view 4 has an entry of view 2 there, and it wins.
        """
        lone = LoneReplica()
        follow_primary_0(lone)
        lone.receive(2, AppendEntries(3, 2, 0, 1, 0, 1, (order(3, 7, 1),)))
        entries = (noop(1), order(2, 5, 1), noop(4))
        self.assertEqual(lone.receive(0, AppendEntries(4, 0, -1, -1, 0, 1, entries)),
                         [(0, AppendReply(4, 1, True, 2, 1))])
        self.assertEqual(lone.replica.replicated_log.entries_from(0, 10), entries)

    def test_entries_after_an_entry_of_another_view_are_refused(self):
        """The backup's entry at ``prev_index`` is of view 3, the primary's of view 2."""
        lone = LoneReplica()
        follow_primary_0(lone)
        lone.receive(2, AppendEntries(3, 2, 0, 1, 0, 1, (order(3, 7, 1),)))
        self.assertEqual(lone.receive(0, AppendEntries(4, 0, 1, 2, 0, 1, (noop(4),))),
                         [(0, AppendReply(4, 1, False, 0, 1))])
        self.assertEqual(lone.replica.replicated_log.entries_from(0, 10), (noop(1), order(3, 7, 1)))

    def test_the_commit_index_never_goes_back(self):
        """A new primary may not know yet how far the last one committed."""
        lone = LoneReplica()
        lone.receive(0, AppendEntries(1, 0, -1, -1, 2, 1, (noop(1), order(1, 5, 1), order(1, 6, 1))))
        self.assertEqual(lone.receive(2, AppendEntries(2, 2, 2, 1, 0, 1, (noop(2),))),
                         [(2, AppendReply(2, 1, True, 3, 1))])
        self.assertEqual(lone.replica.commit_index, 2)

    def test_entries_contradicting_any_committed_one_are_refused(self):
        """Not only the last committed: the one before it too."""
        lone = LoneReplica()
        held = (noop(1), order(1, 5, 1), order(1, 6, 1))
        lone.receive(0, AppendEntries(1, 0, -1, -1, 2, 1, held))
        self.assertEqual(lone.replica.commit_index, 2)
        sent = (noop(1), order(2, 7, 1), order(2, 8, 1))
        self.assertEqual(lone.receive(2, AppendEntries(2, 2, -1, -1, 2, 1, sent)), [])
        self.assertEqual(refusals(lone.replica, "rewrite_committed"), 1)
        self.assertEqual(lone.replica.replicated_log.entries_from(0, 10), held)


    def test_entries_continue_a_log_of_a_high_view(self):
        """
        Views compare by value: the same view in each message is a new int
        object, after the log's end and over entries it holds, committed too.
        """
        view = 100_000
        lone = LoneReplica()
        lone.receive(0, AppendEntries(view, 0, -1, -1, -1, 1, (noop(view),)))
        sent = (order(view + 0, 5, 1),)
        self.assertEqual(lone.receive(0, AppendEntries(view + 0, 0, 0, view + 0, 1, 2, sent)),
                         [(0, AppendReply(view, 1, True, 1, 2))])
        self.assertEqual(lone.replica.commit_index, 1)
        sent = (noop(view + 0), order(view + 0, 5, 1), order(view + 0, 5, 2))
        self.assertEqual(lone.receive(0, AppendEntries(view + 0, 0, -1, -1, 1, 3, sent)),
                         [(0, AppendReply(view, 1, True, 2, 3))])


class RecordingDisk(SimulatedDisk):
    """A ``SimulatedDisk`` that keeps each ``append`` call as (first index, entries)."""

    def __init__(self):
        super().__init__()
        self.appended = []

    def append(self, first_index, entries):
        self.appended.append((first_index, tuple(entries)))
        super().append(first_index, entries)


class StoredEntriesTests(unittest.TestCase):
    """What a backup appends is stored at its index, so a restart finds the same log."""

    def test_entries_continuing_the_log_are_stored_after_it(self):
        disk = RecordingDisk()
        lone = LoneReplica(storage=disk)
        follow_primary_0(lone)
        lone.receive(0, AppendEntries(1, 0, 0, 1, -1, 2, (order(1, 5, 1),)))
        lone.receive(0, AppendEntries(1, 0, 1, 1, -1, 3, (order(1, 5, 2),)))
        self.assertEqual(disk.appended,
                         [(0, (noop(1),)), (1, (order(1, 5, 1),)), (2, (order(1, 5, 2),))])
        self.assertEqual(disk.entries, [noop(1), order(1, 5, 1), order(1, 5, 2)])

    def test_entries_replacing_an_overruled_suffix_are_stored_in_its_place(self):
        disk = RecordingDisk()
        lone = LoneReplica(storage=disk)
        lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1), order(1, 5, 1), order(1, 6, 1))))
        lone.receive(2, AppendEntries(2, 2, 0, 1, -1, 1, (order(2, 7, 1), order(2, 8, 1))))
        self.assertEqual(disk.appended[-1], (1, (order(2, 7, 1), order(2, 8, 1))))
        self.assertEqual(disk.entries, [noop(1), order(2, 7, 1), order(2, 8, 1)])


class SnapshotBaseTests(unittest.TestCase):
    """
    Entries around the base of a backup's log: the last index of the
    snapshot it installed (10, of view 1), committed, with entries 11 to 15
    after it (views 1, 1, 2, 2, 2), all from primary 0 of view 2.
    """

    HELD = (order(1, 11, 1), order(1, 12, 1), order(2, 13, 1), order(2, 14, 1), order(2, 15, 1))

    def setUp(self):
        self.lone = LoneReplica()
        self.replica = self.lone.replica
        self.lone.receive(0, chunk(2, 0, 0, (), total=0))
        self.lone.receive(0, AppendEntries(2, 0, 10, 1, 10, 2, self.HELD))
        log = self.replica.replicated_log
        self.assertEqual((log.base_index, log.last_index, self.replica.commit_index), (10, 15, 10))

    def test_entries_from_below_the_base_are_taken_from_the_first_one_it_lacks(self):
        below = tuple(order(1, index, 1) for index in (8, 9, 10))
        sent = (*below, *self.HELD, order(2, 16, 1))
        self.assertEqual(self.lone.receive(0, AppendEntries(2, 0, 7, 1, 10, 3, sent)),
                         [(0, AppendReply(2, 1, True, 16, 3))])
        log = self.replica.replicated_log
        self.assertEqual(log.entries_from(11, 10), (*self.HELD, order(2, 16, 1)))

    def test_an_entry_contradicting_the_snapshots_last_is_refused(self):
        """The base is committed: a primary saying otherwise is faulty, as for any committed entry."""
        sent = (order(2, 10, 1), order(2, 11, 1))
        self.assertEqual(self.lone.receive(0, AppendEntries(2, 0, 9, 1, 10, 3, sent)), [])
        self.assertEqual(refusals(self.replica, "rewrite_committed"), 1)
        self.assertEqual(self.replica.replicated_log.entries_from(11, 10), self.HELD)

    def test_entries_after_another_view_at_the_base_are_refused(self):
        """The log matches the primary's only where their views at ``prev_index`` agree, the base too."""
        self.assertEqual(
            self.lone.receive(0, AppendEntries(2, 0, 10, 2, 10, 3, (order(2, 11, 2),))),
            [(0, AppendReply(2, 1, False, 10, 3))],
        )
        self.assertEqual(self.replica.replicated_log.entries_from(11, 10), self.HELD)


class SnapshotCheckTests(unittest.TestCase):
    """A snapshot a primary could not have sent is refused (counted) and changes nothing."""

    def assertRefused(self, message, why="malformed_snapshot"):
        lone = LoneReplica()
        self.assertEqual(lone.receive(0, message), [], message)
        self.assertEqual(refusals(lone.replica, why), 1, message)
        self.assertEqual((lone.replica.commit_index, lone.replica.book.records()), (-1, ()))

    def assertInstalled(self, message):
        lone = LoneReplica()
        self.assertEqual(
            lone.receive(0, message),
            [(0, AppendReply(1, 1, True, message.last_index, message.round))], message,
        )
        self.assertEqual(lone.replica.commit_index, message.last_index)
        self.assertEqual(lone.replica.book.records(), message.records)

    def test_its_last_index_is_at_least_minus_one(self):
        """A snapshot of the first entry alone is one a primary can send."""
        self.assertRefused(chunk(1, 0, 0, (), total=0, last_index=-2, last_view=-1))
        self.assertInstalled(chunk(1, 0, 0, ((5, 1),), total=1, last_index=0, last_view=1))

    def test_its_last_view_is_at_least_minus_one(self):
        self.assertRefused(chunk(1, 0, 0, ((5, 1),), total=1, last_index=0, last_view=-2))
        self.assertInstalled(chunk(1, 0, 0, (), total=0, last_index=-1, last_view=-1))

    def test_a_chunk_starts_within_its_total(self):
        self.assertRefused(chunk(1, 0, 4, ((1, 1),), total=3))
        self.assertRefused(chunk(1, 0, -1, ((1, 1),), total=3))

    def test_its_customers_and_order_numbers_are_at_least_zero(self):
        self.assertRefused(chunk(1, 0, 0, ((5, -1),), total=1))
        self.assertRefused(chunk(1, 0, 0, ((-1, 5),), total=1))
        self.assertInstalled(chunk(1, 0, 0, ((0, 0),), total=1))

    def test_a_snapshot_naming_a_customer_twice_is_refused(self):
        """Which of its orders would count?"""
        self.assertRefused(chunk(1, 0, 0, ((5, 1), (5, 2)), total=2), "snapshot_loses_commits")

    def test_a_snapshot_must_hold_every_committed_order(self):
        """Order numbers only grow: a snapshot covering more of the log has each one, or a later one."""
        lone = LoneReplica()
        replica = lone.replica
        lone.receive(0, AppendEntries(1, 0, -1, -1, 1, 1, (noop(1), order(1, 5, 1))))
        self.assertEqual(replica.book.records(), ((5, 1),))
        self.assertEqual(lone.receive(0, chunk(1, 0, 0, ((5, 0), (6, 1)), total=2)), [])
        self.assertEqual((refusals(replica, "snapshot_loses_commits"), replica.commit_index), (1, 1))
        lone.receive(0, chunk(1, 0, 0, ((5, 1), (6, 1)), total=2))
        self.assertEqual((replica.commit_index, replica.book.records()), (10, ((5, 1), (6, 1))))
        self.assertEqual(lone.receive(0, chunk(1, 0, 0, ((5, 1),), total=1, last_index=20)), [])
        self.assertEqual((refusals(replica, "snapshot_loses_commits"), replica.commit_index), (2, 10))

    def test_a_snapshot_of_committed_entries_is_not_installed(self):
        """
        Up to the commit index this backup has it all already: the primary
        only hears how far it is.
        """
        for last_index in (1, 3):
            lone = LoneReplica()
            entries = (noop(1), order(1, 5, 1), order(1, 5, 2), order(1, 5, 3))
            lone.receive(0, AppendEntries(1, 0, -1, -1, 3, 1, entries))
            snapshot = chunk(1, 0, 0, ((5, 3),), total=1, last_index=last_index)
            self.assertEqual(lone.receive(0, snapshot), [(0, AppendReply(1, 1, True, 3, 1))])
            log = lone.replica.replicated_log
            self.assertEqual((lone.replica.commit_index, log.base_index, log.last_index),
                             (3, -1, 3), last_index)

    def test_a_chunk_at_offset_0_starts_the_snapshot_again(self):
        """The primary lost track of what this backup holds, and starts over: so does the backup."""
        lone = LoneReplica()
        lone.receive(0, chunk(1, 0, 0, ((1, 1), (2, 2)), total=4))
        self.assertEqual(lone.receive(0, chunk(1, 0, 2, ((3, 3),), total=4)),
                         [(0, SnapshotReply(1, 1, 10, 3, 1))])
        self.assertEqual(lone.receive(0, chunk(1, 0, 0, ((1, 1), (2, 2)), total=4)),
                         [(0, SnapshotReply(1, 1, 10, 2, 1))])

    def test_a_chunk_past_the_total_is_not_taken(self):
        """The backup says how many records it holds, and the primary goes on from there."""
        lone = LoneReplica()
        self.assertEqual(lone.receive(0, chunk(1, 0, 0, ((1, 1), (2, 2)), total=4)),
                         [(0, SnapshotReply(1, 1, 10, 2, 1))])
        self.assertEqual(lone.receive(0, chunk(1, 0, 2, ((3, 3), (4, 4), (5, 5)), total=4)),
                         [(0, SnapshotReply(1, 1, 10, 2, 1))])
        self.assertEqual(lone.replica.commit_index, -1)


class SnapshotSuffixTests(unittest.TestCase):
    """
    A backup installing a snapshot keeps the entries it holds after the
    snapshot's index only if its entry there is the snapshot's own.
    """

    def backup_holding(self, view):
        """A backup of primary 0 of ``view`` holding entries 0 to 5 of that view, none committed."""
        lone = LoneReplica()
        entries = (noop(view), *(order(view, customer, 1) for customer in range(5)))
        lone.receive(0, AppendEntries(view, 0, -1, -1, -1, 1, entries))
        return lone

    def test_entries_after_a_snapshot_of_the_same_entry_are_kept(self):
        """Views compare by value: above 256 a decoded one is a new int object."""
        for view in (1, 100_000):
            lone = self.backup_holding(view)
            lone.receive(0, chunk(view, 0, 0, ((0, 1), (1, 1)), total=2, last_index=3,
                                  last_view=view + 0))
            log = lone.replica.replicated_log
            self.assertEqual((log.base_index, log.last_index), (3, 5), view)

    def test_entries_after_an_entry_of_an_older_view_are_dropped(self):
        """A primary of view 1 that failed left them; the snapshot's entry there is of view 2."""
        lone = self.backup_holding(1)
        lone.receive(0, chunk(2, 0, 0, ((0, 1), (1, 1)), total=2, last_index=3, last_view=2))
        log = lone.replica.replicated_log
        self.assertEqual((log.base_index, log.base_view, log.last_index), (3, 2, 3))

    def test_entries_after_an_entry_of_a_newer_view_are_dropped(self):
        lone = self.backup_holding(2)
        lone.receive(0, chunk(2, 0, 0, ((0, 1), (1, 1)), total=2, last_index=3, last_view=1))
        log = lone.replica.replicated_log
        self.assertEqual((log.base_index, log.base_view, log.last_index), (3, 1, 3))


class ImpersonationTests(unittest.TestCase):
    def test_a_message_naming_another_sender_is_refused_whichever_way(self):
        """A replica speaking as one with a lower id, or a higher one, changes nothing."""
        for sender, claimed in ((2, 0), (0, 2)):
            lone = LoneReplica()
            message = AppendEntries(1, claimed, -1, -1, -1, 1, (noop(1),))
            self.assertEqual(lone.receive(sender, message), [], sender)
            self.assertEqual(refusals(lone.replica, "impersonation"), 1, sender)
            self.assertEqual(lone.replica.primary_id, None)


class SecondPrimaryTests(unittest.TestCase):
    def test_a_second_primary_of_the_view_is_refused_whatever_its_id(self):
        """A view has one primary: one with an id below the known one's is refused too."""
        lone = LoneReplica()
        lone.receive(2, AppendEntries(1, 2, -1, -1, -1, 1, (noop(1),)))
        self.assertEqual(lone.receive(0, AppendEntries(1, 0, 0, 1, -1, 1, (order(1, 5, 1),))), [])
        self.assertEqual(refusals(lone.replica, "second_primary"), 1)
        self.assertEqual((lone.replica.primary_id, lone.replica.replicated_log.last_index), (2, 0))


class ForwardCheckTests(unittest.TestCase):
    """Forwarded requests a replica's customer could not have made are refused."""

    def test_customers_and_orders_below_zero_and_other_request_types_are_refused(self):
        for request in (ForwardRequest(7, 5, -1, TYPE_ORDER), ForwardRequest(7, -1, 0, TYPE_ORDER),
                        ForwardRequest(7, 5, 0, TYPE_LOCAL_READ), ForwardRequest(7, 5, 0, 0)):
            lone = LoneReplica()
            self.assertEqual(lone.receive(0, request), [], request)
            self.assertEqual(refusals(lone.replica, "malformed_forward"), 1, request)


class ForwardAnswerTests(unittest.TestCase):
    def test_a_replica_that_is_no_primary_says_so(self):
        """The forwarding replica tries again later; customer 0 is a customer like any other."""
        lone = LoneReplica()
        self.assertEqual(lone.receive(0, ForwardRequest(7, 0, 0, TYPE_ORDER)),
                         [(0, ForwardReply(7, FORWARD_RETRY, -1, -1))])
        self.assertEqual(lone.replica.replicated_log.last_index, -1)

    def test_a_forwarded_read_of_an_unknown_customer_is_answered_with_no_record(self):
        """A value below zero says the customer has no record (an order's answer carries none)."""
        lone = LonePrimary()
        lone.acknowledge(1, 2)
        lone.replica.receive(1, ForwardRequest(7, 9, -1, TYPE_READ))
        lone.clock.advance(0)
        lone.acknowledge(1, 2)
        self.assertEqual(lone.take(ForwardReply), [(1, ForwardReply(7, FORWARD_OK, -1, 0))])


class ForwardedRequestTests(unittest.TestCase):
    """A backup's own customers' requests, forwarded to the primary it knows."""

    def test_a_read_answered_with_order_0_has_a_record(self):
        """Only a value below zero from the primary means no record."""
        lone = LoneReplica()
        follow_primary_0(lone)
        results = []
        lone.replica.read(5).addCallback(results.append)
        lone.replica.read(6).addCallback(results.append)
        lone.receive(0, ForwardReply(0, FORWARD_OK, 0, 0))
        lone.receive(0, ForwardReply(1, FORWARD_OK, -1, 0))
        self.assertEqual(results, [ReadResult(0, 0), ReadResult(None, 0)])

    def test_the_answer_of_a_primary_with_a_high_id_counts(self):
        """Ids compare by value: the sender and the primary named are distinct int objects."""
        primary = 1000
        lone = LoneReplica(peers=(primary, 2))
        lone.receive(primary, AppendEntries(1, primary + 0, -1, -1, -1, 1, (noop(1),)))
        answers = []
        lone.replica.order(5, 0).addCallback(answers.append)
        lone.receive(primary + 0, ForwardReply(0, FORWARD_OK, -1, primary + 0))
        self.assertEqual(answers, [primary])

    def test_a_reply_of_an_unknown_status_is_no_answer(self):
        """Only FORWARD_OK answers: any other status is a refusal, and the request goes again."""
        lone = LoneReplica()
        follow_primary_0(lone)
        answers = []
        lone.replica.order(5, 0).addCallback(answers.append)
        self.assertEqual(lone.receive(0, ForwardReply(0, -1, -1, 0)), [])
        lone.clock.advance(TIMEOUTS.heartbeat)
        self.assertEqual((answers, lone.sent), ([], [(0, ForwardRequest(0, 5, 0, TYPE_ORDER))]))

    def test_the_primarys_answer_counts_after_this_replica_lost_sight_of_it(self):
        """
        Without a primary a request stays with the one it went to, past the
        retransmit interval too: that primary's late answer says the order
        committed, and reaches the customer.
        """
        lone = LoneReplica()
        replica = lone.replica
        follow_primary_0(lone)
        answers = []
        replica.order(5, 0).addCallback(answers.append)
        lone.receive(2, VoteRequest(2, 2, 0, 1, False))
        self.assertEqual((replica.view, replica.primary_id), (2, None))
        for _ in range(round(TIMEOUTS.retransmit / TIMEOUTS.heartbeat) + 1):
            lone.clock.advance(TIMEOUTS.heartbeat)
        lone.receive(0, ForwardReply(0, FORWARD_OK, -1, 0))
        self.assertEqual(answers, [0])

    def test_a_refused_request_goes_to_the_same_replica_once_primary_of_a_newer_view(self):
        """
        A replica refuses a forwarded request while it is between views;
        announced primary of the next view, it is the next primary known,
        and gets the request at once.
        """
        lone = LoneReplica()
        replica = lone.replica
        follow_primary_0(lone)
        replica.order(5, 0)
        self.assertEqual(lone.receive(0, ForwardReply(0, FORWARD_RETRY, -1, -1)), [])
        sent = lone.receive(0, AppendEntries(2, 0, 0, 1, -1, 1, (noop(2),)))
        self.assertIn((0, ForwardRequest(0, 5, 0, TYPE_ORDER)), sent)

    def test_a_refused_request_sent_on_to_a_new_primary_is_not_sent_again_at_its_retry_time(self):
        """
        The heartbeat's wait after a refusal ends when a primary becomes
        known and takes the request: the wait's own try would only forward it
        a second time.
        """
        lone = LoneReplica()
        replica = lone.replica
        follow_primary_0(lone)
        replica.order(5, 0)
        lone.receive(0, ForwardReply(0, FORWARD_RETRY, -1, -1))
        lone.receive(0, AppendEntries(2, 0, 0, 1, -1, 1, (noop(2),)))
        del lone.sent[:]
        lone.clock.advance(TIMEOUTS.heartbeat)
        self.assertEqual([sent for sent in lone.sent if isinstance(sent[1], ForwardRequest)], [])

    def test_a_request_the_link_refused_goes_at_the_next_tick_not_with_the_primarys_messages(self):
        """
        Requests are re-routed when the primary or its view changes, not on
        each message of the primary followed: one the link refused goes at
        the next tick, however often the primary sends (ids above 256 too,
        and views, a new int object in each message).
        """
        for primary, view in ((0, 1), (1000, 100_000)):
            lone = LoneReplica(peers=(primary, 2))
            replica = lone.replica
            lone.receive(primary, AppendEntries(view, primary + 0, -1, -1, -1, 1, (noop(view),)))
            lone.clock.advance(TIMEOUTS.heartbeat / 2)
            send, link_up = replica._send, False
            replica._send = lambda peer, message: link_up and send(peer, message)
            replica.order(5, 0)
            link_up = True
            self.assertEqual(
                lone.receive(primary, AppendEntries(view + 0, primary + 0, 0, view, 0, 2, ())),
                [(primary, AppendReply(view, 1, True, 0, 2))], primary,
            )
            del lone.sent[:]
            lone.clock.advance(TIMEOUTS.heartbeat / 2)
            self.assertEqual(lone.sent, [(primary, ForwardRequest(0, 5, 0, TYPE_ORDER))], primary)

    def test_a_replica_that_refused_is_asked_again_no_sooner_than_a_heartbeat_later(self):
        """
        Each refusal from a replica that is no primary (any more) starts a
        heartbeat's wait, the second one too: ticks in between leave the
        request alone.
        """
        lone = LoneReplica()
        replica = lone.replica
        follow_primary_0(lone)
        replica.order(5, 0)
        forward = (0, ForwardRequest(0, 5, 0, TYPE_ORDER))
        refusal = ForwardReply(0, FORWARD_RETRY, -1, -1)
        self.assertEqual(lone.receive(0, refusal), [])
        lone.clock.advance(TIMEOUTS.heartbeat)
        self.assertEqual(lone.sent, [forward])
        lone.clock.advance(TIMEOUTS.heartbeat * 0.8)
        self.assertEqual(lone.receive(0, refusal), [])
        lone.clock.advance(TIMEOUTS.heartbeat * 0.5)  # past a tick
        self.assertEqual(lone.sent, [])
        lone.clock.advance(TIMEOUTS.heartbeat * 0.6)  # a heartbeat after the refusal
        self.assertEqual(lone.sent, [forward])


class LinkLossTests(unittest.TestCase):
    """What a replica does when its link to the primary, or to a backup, drops."""

    def test_a_request_forwarded_before_the_link_to_a_primary_with_a_high_id_dropped_goes_again(self):
        """
        As ``LinkTests`` checks with id 0: what was in flight is gone, and
        goes again once the link is back (each id a new int object).
        """
        primary = 1000
        lone = LoneReplica(peers=(primary, 2))
        replica = lone.replica
        lone.receive(primary, AppendEntries(1, primary + 0, -1, -1, -1, 1, (noop(1),)))
        forward = (primary, ForwardRequest(0, 5, 0, TYPE_ORDER))
        replica.order(5, 0)
        self.assertEqual(lone.sent[-1:], [forward])
        del lone.sent[:]
        replica.peer_lost(primary + 0)
        replica.peer_connected(primary + 0)
        self.assertEqual(lone.sent, [forward])

    def test_a_reconnected_backup_that_does_not_answer_is_sent_the_whole_log(self):
        """
        It may come back restarted with less than it acknowledged: once the
        probe from the log's end goes unanswered for the retransmit
        interval, it is sent everything from the log's start.
        """
        lone = LonePrimary()
        primary = lone.replica
        lone.commit_orders(5, 3)
        log = primary.replicated_log
        primary.peer_lost(2)
        primary.peer_connected(2)
        probes = lone.take(AppendEntries)
        self.assertEqual([(peer, probe.prev_index) for peer, probe in probes], [(2, log.last_index)])
        unanswered = lone.run(EXACT_TIMEOUTS.retransmit, answering=[1])
        self.assertEqual(
            [(message.prev_index, message.entries) for _, message in unanswered],
            [(-1, log.entries_from(0, log.last_index + 1))],
        )
