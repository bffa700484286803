"""
The replication state machine as a primary, one rule a test: orders
batched, appended and sent, replies counted, commits advanced, reads
answered, the log compacted.
"""

import attrs
from twisted.trial import unittest

from marketplace.laptop import replication
from marketplace.laptop.replication import PRIMARY, ReadResult, Replica
from marketplace.laptop.storage import MemoryStorage
from protocols.laptop import (
    FORWARD_OK,
    TYPE_ORDER,
    TYPE_READ,
    AppendEntries,
    AppendReply,
    ForwardReply,
    ForwardRequest,
    InstallSnapshot,
    SnapshotReply,
    VoteReply,
    decode_replica_message,
    encode_replica_message,
)
from tests.laptop.test_replication import (
    EXACT_TIMEOUTS,
    LoneCandidate,
    LonePrimary,
    noop,
    order,
)


def decoded(message):
    """``message`` as its receiver gets it: through the codec, with int objects of its own."""
    return decode_replica_message(encode_replica_message(message))[0]


def holding(peer, message):
    """The reply of ``peer`` holding all that the AppendEntries ``message`` carried."""
    return AppendReply(message.view, peer, True, message.prev_index + len(message.entries),
                       message.round)


def answer(lone, peer, message):
    """``peer`` holds all that the AppendEntries ``message`` carried, and says so."""
    lone.replica.receive(peer, holding(peer, message))


def live_primary():
    """A LonePrimary whose backups 1 and 2 hold its no-op: both live, the no-op committed."""
    lone = LonePrimary()
    lone.acknowledge(1, 2)
    return lone


def commit_together(lone, customers, number=0):
    """Orders ``number`` of ``customers`` go in one batch and commit: as many are held next."""
    for customer in customers:
        lone.replica.order(customer, number)
    lone.clock.advance(0)
    lone.acknowledge(1, 2)


def heartbeat(lone):
    """The next tick: every idle backup is sent a message, so none is idle until it answers."""
    lone.clock.advance(EXACT_TIMEOUTS.heartbeat)


def batches(sent):
    """The orders of each AppendEntries in ``sent``, by the peer it went to."""
    return {peer: [(e.customer_id, e.order_number) for e in message.entries]
            for peer, message in sent}


def fill_a_batch_of_300_after_300(lone):
    """
    300 orders answered together, then the next 300, which fill the batch
    held for them: returns what went out, as (peer, message).
    """
    commit_together(lone, range(300))
    for customer in range(300):
        lone.replica.order(customer, 1)
    lone.clock.advance(0)
    return lone.take(AppendEntries)


class BatchHoldTests(unittest.TestCase):
    """
    After a commit answered N orders, the next batch waits up to
    ``batch_hold`` until it holds N (those customers' next orders).
    """

    def test_a_held_batch_waits_for_as_many_orders_as_the_last_commit_answered(self):
        """Three answered together: the next batch goes with the third order, not before."""
        lone = live_primary()
        commit_together(lone, (1, 2, 3))
        for customer in (1, 2):
            lone.replica.order(customer, 1)
            lone.clock.advance(0)
            self.assertEqual(lone.take(AppendEntries), [], customer)
        lone.replica.order(3, 1)
        lone.clock.advance(0)
        self.assertEqual(batches(lone.take(AppendEntries)), {1: [(1, 1), (2, 1), (3, 1)],
                                                             2: [(1, 1), (2, 1), (3, 1)]})

    def test_orders_that_fill_the_batch_go_as_soon_as_the_backups_are_free(self):
        """Orders that came while every live backup was busy, as many as held or more, wait no more."""
        for waiting in (2, 3):
            lone = live_primary()
            commit_together(lone, (9,))
            commit_together(lone, (1, 2))
            heartbeat(lone)
            for customer in range(1, waiting + 1):
                lone.replica.order(customer, 1)
            lone.acknowledge(1, 2)
            orders = [(customer, 1) for customer in range(1, waiting + 1)]
            self.assertEqual(batches(lone.take(AppendEntries)), {1: orders, 2: orders}, waiting)

    def test_a_batch_goes_as_it_fills_far_into_the_log(self):
        """Past index 256 too (where indexes computed apart are distinct int objects)."""
        lone = live_primary()
        sent = fill_a_batch_of_300_after_300(lone)
        self.assertEqual([(peer, m.prev_index, len(m.entries)) for peer, m in sent],
                         [(1, 300, 300), (2, 300, 300)])

    def test_orders_short_of_the_batch_are_held_once_the_backups_are_free(self):
        """Two orders of three came while the backups were busy: they answer, and the two still wait."""
        lone = live_primary()
        commit_together(lone, (1, 2, 3))
        heartbeat(lone)
        lone.replica.order(1, 1)
        lone.replica.order(2, 1)
        lone.acknowledge(1, 2)
        self.assertEqual(lone.take(AppendEntries), [])
        lone.replica.order(3, 1)
        lone.clock.advance(0)
        self.assertEqual(batches(lone.take(AppendEntries)), {1: [(1, 1), (2, 1), (3, 1)],
                                                             2: [(1, 1), (2, 1), (3, 1)]})

    def test_the_hold_starts_once_the_backups_are_free(self):
        """
        An order that comes while the live backups are busy is neither sent
        nor held yet: its batch's hold starts when they answer, however long
        they took, so the other customer's order still joins it.
        """
        lone = live_primary()
        commit_together(lone, (1, 2))
        heartbeat(lone)
        lone.replica.order(1, 1)
        lone.clock.advance(Replica.batch_hold)
        lone.acknowledge(1, 2)
        self.assertEqual(lone.take(AppendEntries), [])
        lone.replica.order(2, 1)
        lone.clock.advance(0)
        self.assertEqual(batches(lone.take(AppendEntries)), {1: [(1, 1), (2, 1)],
                                                             2: [(1, 1), (2, 1)]})


class SendingTests(unittest.TestCase):
    def test_heartbeats_reach_the_live_backups_while_another_is_busy(self):
        """Heartbeats are not in step: a live backup that does not answer silences no other."""
        lone = live_primary()
        lone.replica.order(5, 0)
        lone.clock.advance(0)
        lone.acknowledge(1)
        heartbeat(lone)
        self.assertEqual([peer for peer, _ in lone.take(AppendEntries)], [1])

    def test_an_idle_primary_sends_only_heartbeats_however_high_its_rounds(self):
        """
        Backups that acknowledged the latest round lack nothing: nothing more
        goes to them until the next heartbeat, with rounds past 256 as well
        (decoded replies hold int objects of their own).
        """
        lone = live_primary()
        lone.run(300 * EXACT_TIMEOUTS.heartbeat, answering=[1, 2])
        heartbeat(lone)
        beats = lone.take(AppendEntries)
        self.assertGreater(min(beat.round for _, beat in beats), 256)
        for peer, beat in beats:
            lone.replica.receive(peer, decoded(holding(peer, beat)))
        lone.clock.advance(0)
        self.assertEqual(lone.take(AppendEntries), [])

    def test_backups_in_step_share_one_message_far_into_the_log(self):
        """The batch for backups in step is built once, past index 256 and 256 entries as well."""
        lone = live_primary()
        [(_, first), (_, second)] = fill_a_batch_of_300_after_300(lone)
        self.assertIs(first, second)

    def test_a_backup_catching_up_gets_the_entries_appended_since_the_last_batch(self):
        """
        The batch built for one backup in this round is not reused for
        another that needs entries from the same place once more were
        appended: it gets them all.
        """
        lone = LonePrimary(peers=(1, 2, 3, 4))
        first = dict(lone.acknowledge(1, 2))
        lone.replica.order(5, 0)
        lone.clock.advance(0)
        lone.acknowledge(1, 2)
        answer(lone, 3, first[3])
        lone.replica.order(6, 0)
        answer(lone, 4, first[4])
        self.assertEqual(batches(lone.take(AppendEntries)), {3: [(5, 0)], 4: [(5, 0), (6, 0)]})

    def test_a_primary_elected_again_never_sends_a_batch_of_its_older_view(self):
        """
        A replica primary again, in view 3, whose log was cut back by view
        2's primary to where its last batch of view 1 started, in the same
        round: the backup it probes gets the no-op of view 3, not that batch.
        """
        lone = live_primary()
        primary = lone.replica
        # Forwarded, so that as the orders of no customer of its own they
        # are not placed again once it is primary again.
        primary.receive(1, ForwardRequest(0, 5, 0, TYPE_ORDER))
        lone.clock.advance(0)
        lone.acknowledge(1)
        primary.receive(1, ForwardRequest(1, 6, 0, TYPE_ORDER))
        heartbeat(lone)
        [(_, batch)] = lone.take(AppendEntries)
        self.assertEqual((batch.view, batch.prev_index, batch.commit_index), (1, 1, 0))
        primary.receive(2, AppendEntries(2, 2, 0, 1, 0, 1, (noop(2),)))
        self.assertEqual(primary.replicated_log.last_index, 1)
        lone.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger)
        for pre in (True, False):
            primary.receive(1, VoteReply(3, 1, True, pre))
        self.assertEqual((primary.role, primary.view), (PRIMARY, 3))
        lone.take()
        primary.peer_connected(1)
        [(_, probe)] = lone.take(AppendEntries)
        self.assertEqual((probe.view, probe.prev_index, probe.entries), (3, 1, (noop(3),)))

    def test_a_backup_catching_up_is_told_the_commit_index_of_now(self):
        """
        The batch built for a backup in this round is not reused for one
        that needs the same entries after a commit: it is told the commit.
        """
        lone = LonePrimary()
        [(_, first_to_2)] = lone.acknowledge(1)
        lone.replica.order(5, 0)
        lone.clock.advance(0)
        lone.acknowledge(1)
        self.assertEqual(lone.replica.commit_index, 1)
        answer(lone, 2, first_to_2)
        [(peer, catch_up)] = lone.take(AppendEntries)
        self.assertEqual((peer, catch_up.prev_index, catch_up.entries, catch_up.commit_index),
                         (2, 0, (order(1, 5, 0),), 1))

    def test_a_backup_whose_next_entry_is_the_snapshots_last_gets_the_snapshot(self):
        """An entry folded into the snapshot is no longer in the log: only the snapshot has it."""
        lone = LonePrimary()
        primary = lone.replica
        primary.compact_threshold = 2
        [(_, first_to_2)] = lone.acknowledge(1)
        primary.order(5, 0)
        lone.clock.advance(0)
        lone.acknowledge(1)
        self.assertEqual(primary.replicated_log.base_index, 1)
        primary.order(6, 0)
        primary.order(7, 0)
        answer(lone, 2, first_to_2)
        [(peer, snapshot)] = lone.take()
        self.assertIsInstance(snapshot, InstallSnapshot)
        self.assertEqual((peer, snapshot.last_index, snapshot.records), (2, 1, ((5, 0),)))


class ReplyTests(unittest.TestCase):
    def test_replies_of_an_older_view_count_for_nothing(self):
        """They answer messages of another primary (or term): no entry commits by them."""
        lone = live_primary()
        lone.replica.order(5, 0)
        lone.clock.advance(0)
        for peer, batch in lone.take(AppendEntries):
            lone.replica.receive(peer, attrs.evolve(holding(peer, batch), view=0))
        self.assertEqual(lone.replica.commit_index, 0)

    def test_a_primary_far_up_the_view_range_counts_its_backups_replies(self):
        """Decoded replies hold view objects of their own: views are compared by value."""
        lone = LoneCandidate()
        primary = lone.replica
        view = 100_000
        primary.receive(1, AppendEntries(view, 1, -1, -1, -1, 1, (noop(view),)))
        lone.run(EXACT_TIMEOUTS.election + EXACT_TIMEOUTS.election_stagger / 2)
        for pre in (True, False):
            primary.receive(2, VoteReply(view + 1, 2, True, pre))
        lone.take()
        lone.clock.advance(0)
        for peer, batch in lone.take(AppendEntries):
            primary.receive(peer, decoded(holding(peer, batch)))
        self.assertEqual((primary.view, primary.commit_index), (view + 1, 1))

    def test_a_backup_is_believed_to_hold_no_more_than_it_was_sent(self):
        """It claims entries beyond the batch it got: the next batch still starts after that batch."""
        lone = live_primary()
        primary = lone.replica
        primary.order(5, 0)
        lone.clock.advance(0)
        batch = dict(lone.take(AppendEntries))
        primary.receive(1, attrs.evolve(holding(1, batch[1]), match_index=5))
        answer(lone, 2, batch[2])
        for customer in (6, 7, 8):
            primary.order(customer, 0)
        lone.clock.advance(0)
        sent = dict(lone.take(AppendEntries))
        self.assertEqual((sent[1].prev_index, len(sent[1].entries)), (1, 3))

    def test_a_match_below_the_log_is_taken_as_none(self):
        """A backup claiming to hold less than nothing is sent the log from its start."""
        lone = LonePrimary()
        [(_, first_to_2)] = lone.acknowledge(1)
        lone.replica.receive(2, AppendReply(1, 2, False, -5, first_to_2.round))
        [(peer, again)] = lone.take()
        self.assertIsInstance(again, AppendEntries)
        self.assertEqual((peer, again.prev_index, again.entries), (2, -1, (noop(1),)))


class CountTests(unittest.TestCase):
    def test_messages_with_entries_are_counted_and_their_entries(self):
        """Heartbeats carry no entries: they count in neither, far into the log as well."""
        lone = live_primary()
        commit_together(lone, range(3))
        commit_together(lone, range(300), number=1)
        heartbeat(lone)
        lone.acknowledge(1, 2)
        counts = lone.replica._counters.counts
        self.assertEqual((counts["laptop_append_messages"], counts["laptop_entries_sent"]),
                         (6, 2 * (1 + 3 + 300)))


def snapshot_chunk_to_2(test):
    """
    Backup 2 holds the no-op only; orders 0 of customers 5, 6 and 7 commit
    with backup 1 and are compacted into a snapshot of three records at
    index 3, sent a record a chunk: returns the primary and the first chunk
    sent to 2.
    """
    test.patch(Replica, "snapshot_chunk", 1)
    lone = LonePrimary()
    lone.replica.compact_threshold = 2
    [(_, first_to_2)] = lone.acknowledge(1)
    for customer in (5, 6, 7):
        lone.replica.order(customer, 0)
    lone.clock.advance(0)
    lone.acknowledge(1)
    answer(lone, 2, first_to_2)
    [(_, chunk)] = lone.take()
    test.assertEqual((chunk.last_index, chunk.offset, chunk.records), (3, 0, ((5, 0),)))
    return lone, chunk


class SnapshotReplyTests(unittest.TestCase):
    def test_a_reply_about_another_snapshot_moves_no_chunk_on(self):
        """Its count is of other records: the chunk goes again from where it was."""
        lone, chunk = snapshot_chunk_to_2(self)
        for other in (chunk.last_index - 1, chunk.last_index + 1):
            lone.replica.receive(2, SnapshotReply(1, 2, other, 1, chunk.round))
            [(_, again)] = lone.take()
            self.assertEqual((again.last_index, again.offset), (3, 0), other)

    def test_a_count_outside_the_snapshot_starts_it_again(self):
        """A backup holds from none to every record of a snapshot: any other count means none."""
        lone, chunk = snapshot_chunk_to_2(self)
        for received in (-1, 4):
            lone.replica.receive(2, SnapshotReply(1, 2, chunk.last_index, received, chunk.round))
            [(_, again)] = lone.take()
            self.assertEqual((again.last_index, again.offset), (3, 0), received)

    def test_a_backup_holding_every_record_gets_the_empty_chunk_that_completes_it(self):
        """Every record is a count within the snapshot: the chunk after them, empty, installs it."""
        lone, chunk = snapshot_chunk_to_2(self)
        lone.replica.receive(2, SnapshotReply(1, 2, chunk.last_index, 3, chunk.round))
        [(_, last)] = lone.take()
        self.assertEqual((last.last_index, last.offset, last.records), (3, 3, ()))


class CommitTests(unittest.TestCase):
    def test_a_read_waits_for_a_backup_to_acknowledge_its_round(self):
        """
        A heartbeat that nobody answered yet confirms no read: a deposed
        primary would serve it stale.
        """
        lone = live_primary()
        reads = []
        lone.replica.read(5).addCallback(reads.append)
        lone.clock.advance(0)
        heartbeat(lone)
        self.assertEqual(reads, [])
        lone.acknowledge(1)
        self.assertEqual(reads, [ReadResult(None, 0)])

    def test_only_orders_not_committed_are_pending(self):
        """What the primary keeps per order grows with the orders in flight, not with its customers."""
        lone = live_primary()
        commit_together(lone, range(300))
        self.assertEqual(lone.replica._pending_orders, {})

    def test_an_entry_commits_on_a_majority_of_four_replicas_only(self):
        """
        Four replicas: the primary and one live backup holding an entry are
        no majority, even with a third replica that holds the one before.
        """
        lone = LonePrimary(peers=(1, 2, 3))
        primary = lone.replica
        lone.acknowledge(1, 2, 3)
        primary.peer_lost(3)
        for customer, holders in ((5, (1, 2)), (6, (1,))):
            primary.order(customer, 0)
            lone.clock.advance(0)
            lone.acknowledge(*holders)
        self.assertEqual((primary.commit_index, primary.live), (1, {1, 2}))
        lone.run(EXACT_TIMEOUTS.backup, answering=[1])
        self.assertEqual((primary.commit_index, primary.live), (1, {1}))

    def test_a_read_is_confirmed_by_three_of_four_replicas(self):
        """A majority of four is three: the primary and one backup do not confirm its round."""
        lone = LonePrimary(peers=(1, 2, 3))
        lone.acknowledge(1, 2, 3)
        reads = []
        lone.replica.read(5).addCallback(reads.append)
        lone.clock.advance(0)
        first = dict(lone.take(AppendEntries))
        answer(lone, 1, first[1])
        self.assertEqual(reads, [])
        answer(lone, 2, first[2])
        self.assertEqual(reads, [ReadResult(None, 0)])

    def test_a_read_answered_takes_no_other_along(self):
        """The read after it, waiting for a later round, is still answered once that round is."""
        lone = live_primary()
        reads = []
        for customer in (5, 6):
            lone.replica.read(customer).addCallback(reads.append)
            lone.clock.advance(0)
        lone.acknowledge(1, 2)
        self.assertEqual(reads, [ReadResult(None, 0)])
        lone.acknowledge(1, 2)
        self.assertEqual(reads, [ReadResult(None, 0)] * 2)

    def test_a_read_is_answered_once(self):
        """A forwarded read answered is done with: later acknowledgements do not answer it again."""
        lone = live_primary()
        lone.replica.receive(1, ForwardRequest(7, 5, -1, TYPE_READ))
        lone.clock.advance(0)
        lone.acknowledge(1, 2)
        heartbeat(lone)
        lone.acknowledge(1, 2)
        self.assertEqual(lone.take(ForwardReply), [(1, ForwardReply(7, FORWARD_OK, -1, 0))])

    def test_the_log_is_compacted_once_a_commit_takes_it_past_the_threshold(self):
        """A batch may commit more entries than the threshold has left: it is compacted all the same."""
        lone = live_primary()
        lone.replica.compact_threshold = 3
        commit_together(lone, range(4))
        self.assertEqual(lone.replica.replicated_log.base_index, 4)


class RoundTests(unittest.TestCase):
    def test_a_read_that_came_while_the_backups_were_busy_goes_when_they_answer(self):
        """
        Its round went to nobody: the backups are sent it as they answer,
        not at the next heartbeat.
        """
        lone = live_primary()
        heartbeat(lone)
        reads = []
        lone.replica.read(5).addCallback(reads.append)
        lone.clock.advance(0)
        lone.acknowledge(1, 2)
        lone.acknowledge(1, 2)
        self.assertEqual(reads, [ReadResult(None, 0)])

    def test_a_read_waiting_for_a_round_already_sent_leaves_the_live_backups_in_step(self):
        """
        It needs more backups to acknowledge that round, not another round:
        a flush while live backups are busy (here: a backup's link dropped)
        sends the idle one nothing, whether the read's round is the last
        sent or an older one.
        """
        lone = LonePrimary(peers=(1, 2, 3, 4))
        primary = lone.replica
        lone.acknowledge(1, 2, 3, 4)
        reads = []
        primary.read(5).addCallback(reads.append)
        lone.clock.advance(0)
        lone.acknowledge(1)
        for lost in (4, 3):
            primary.peer_lost(lost)
            lone.clock.advance(0)
            self.assertEqual([peer for peer, _ in lone.take(AppendEntries)], [lost])
            heartbeat(lone)
            lone.acknowledge(1)
        self.assertEqual(reads, [])

    def test_a_read_goes_to_every_idle_peer_while_an_earlier_one_waits(self):
        """Its round is not sent yet, whatever the reads before it wait for."""
        lone = LonePrimary(peers=(1, 2, 3, 4))
        primary = lone.replica
        lone.acknowledge(1, 2, 3, 4)
        primary.read(5)
        lone.clock.advance(0)
        lone.acknowledge(1)
        primary.read(6)
        lone.clock.advance(0)
        self.assertEqual([peer for peer, _ in lone.take(AppendEntries)], [1])


class FlushTimeTests(unittest.TestCase):
    """
    A flush is due at the end of this reactor turn, never before it: no
    reactor takes a delay below zero.
    """

    def test_a_batch_not_held(self):
        """No commit answered several orders: an order goes at the end of this turn."""
        lone = live_primary()
        lone.replica.order(1, 0)
        self.assertEqual(lone.replica._flush_call.getTime(), lone.clock.seconds())

    def test_a_held_batch_once_full(self):
        """Held for batch_hold at most, and due at once when the last order it waits for comes."""
        lone = live_primary()
        primary = lone.replica
        commit_together(lone, (1, 2))
        primary.order(1, 1)
        self.assertEqual(primary._flush_call.getTime(), lone.clock.seconds() + Replica.batch_hold)
        primary.order(2, 1)
        self.assertEqual(primary._flush_call.getTime(), lone.clock.seconds())


class WrittenEntries(MemoryStorage):
    """Storage that keeps every write of entries, as (first index, entries)."""

    def __init__(self):
        self.writes = []

    def append(self, first_index, entries):
        self.writes.append((first_index, tuple(entries)))


class PersistenceTests(unittest.TestCase):
    def test_each_entry_is_written_once_and_only_new_ones(self):
        """A flush writes what was appended since the last one, in one write; nothing new, no write."""
        self.patch(replication, "MemoryStorage", WrittenEntries)
        lone = live_primary()
        for customers in ((1,), (1, 2), (1, 2, 3)):
            commit_together(lone, customers, number=len(customers))
            heartbeat(lone)
            lone.acknowledge(1, 2)
        self.assertEqual(lone.replica._storage.writes, [
            (0, (noop(1),)),
            (1, (order(1, 1, 1),)),
            (2, (order(1, 1, 2), order(1, 2, 2))),
            (4, (order(1, 1, 3), order(1, 2, 3), order(1, 3, 3))),
        ])
