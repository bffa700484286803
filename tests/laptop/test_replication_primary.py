"""
The replication state machine as a primary, one rule a test: orders
batched, appended and sent, replies counted, commits advanced, reads
answered, the log compacted.
"""

from twisted.trial import unittest

from marketplace.laptop import replication
from marketplace.laptop.replication import Replica
from marketplace.laptop.storage import MemoryStorage
from protocols.laptop import (
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    decode_replica_message,
    encode_replica_message,
)
from tests.laptop.test_replication import EXACT_TIMEOUTS, LonePrimary, noop, order


def decoded(message):
    """``message`` as its receiver gets it: through the codec, with int objects of its own."""
    return decode_replica_message(encode_replica_message(message))[0]


def answer(lone, peer, message):
    """``peer`` holds all that the AppendEntries ``message`` carried, and says so."""
    lone.replica.receive(peer, AppendReply(
        message.view, peer, True, message.prev_index + len(message.entries), message.round))


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


class BatchHoldTests(unittest.TestCase):
    """
    After a commit answered N orders, the next batch waits up to
    ``batch_hold`` until it holds N (those customers' next orders).
    """

    def test_a_held_batch_waits_for_as_many_orders_as_the_last_commit_answered(self):
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
            commit_together(lone, (1, 2))
            heartbeat(lone)
            for customer in range(1, waiting + 1):
                lone.replica.order(customer, 1)
            lone.acknowledge(1, 2)
            orders = [(customer, 1) for customer in range(1, waiting + 1)]
            self.assertEqual(batches(lone.take(AppendEntries)), {1: orders, 2: orders}, waiting)

    def test_orders_short_of_the_batch_are_held_once_the_backups_are_free(self):
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
            lone.replica.receive(peer, decoded(
                AppendReply(beat.view, peer, True, beat.prev_index, beat.round)))
        lone.clock.advance(0)
        self.assertEqual(lone.take(AppendEntries), [])

    def test_backups_in_step_share_one_message_far_into_the_log(self):
        """The batch for backups in step is built once, past index 256 as well."""
        lone = live_primary()
        commit_together(lone, range(300))
        lone.replica.order(0, 1)
        lone.clock.advance(Replica.batch_hold)
        [(_, first), (_, second)] = lone.take(AppendEntries)
        self.assertGreater(first.prev_index, 256)
        self.assertIs(first, second)

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
