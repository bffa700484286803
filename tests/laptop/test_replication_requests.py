"""
The replication state machine's customer side, one rule a test: requests
admitted, routed, forwarded, retried and expired.
"""

from twisted.trial import unittest

from marketplace.laptop.replication import FOLLOWER, Replica, RequestFailed, Timeouts
from protocols.laptop import (
    FORWARD_RETRY,
    TYPE_ORDER,
    AppendEntries,
    AppendReply,
    ForwardReply,
    ForwardRequest,
    InstallSnapshot,
    SnapshotReply,
    VoteReply,
)
from tests.laptop.test_replication import (
    EXACT_TIMEOUTS,
    LoneCandidate,
    LonePrimary,
    LoneReplica,
    chunk,
    noop,
)


class DocumentedDefaultsTests(unittest.TestCase):
    """The defaults docs/laptop.md gives for the options, timeouts and sizes."""

    def test_timeouts(self):
        self.assertEqual(
            Timeouts(),
            Timeouts(heartbeat=0.05, backup=0.4, election=1.0, election_stagger=0.25,
                     request=5.0, retransmit=1.0),
        )

    def test_batch_and_chunk_sizes(self):
        """Catch-up in chunks of 4096 entries, snapshots in chunks of 65,536 records."""
        self.assertEqual((Replica.max_batch, Replica.snapshot_chunk), (4096, 65536))


def newly_elected():
    """A LoneCandidate that replica 1 voted for, its first round not yet sent."""
    lone = LoneCandidate()
    for pre in (True, False):
        lone.replica.receive(1, VoteReply(1, 1, True, pre))
    return lone


class NewPrimaryProgressTests(unittest.TestCase):
    """What a new primary believes of a backup before the backup says anything."""

    def test_a_reply_before_anything_was_sent_commits_nothing(self):
        """A backup holds at most what it was sent in this view: nothing yet."""
        lone = newly_elected()
        primary = lone.replica
        primary.receive(1, AppendReply(1, 1, True, 0, 0))
        lone.clock.advance(0)
        self.assertEqual(primary.commit_index, -1)

    def test_nothing_commits_before_a_backup_acknowledges(self):
        lone = newly_elected()
        primary = lone.replica
        lone.clock.advance(0)
        self.assertEqual(len(lone.take(AppendEntries)), 2)
        self.assertEqual(primary.commit_index, -1)
        primary.receive(1, AppendReply(1, 1, True, 0, 1))
        self.assertEqual(primary.commit_index, 0)

    def test_a_backup_that_never_answered_is_sent_the_log_from_its_start_again(self):
        """After the retransmit interval it is probed from the entry after the last it held."""
        lone = LonePrimary()
        [(_, first)] = lone.acknowledge(1)
        self.assertEqual(first.prev_index, -1)
        timeouts = EXACT_TIMEOUTS
        self.assertEqual(lone.run(timeouts.retransmit - timeouts.heartbeat, answering=[1]), [])
        again = lone.run(timeouts.heartbeat, answering=[1]) + lone.take(InstallSnapshot)
        self.assertEqual([(peer, type(message)) for peer, message in again], [(2, AppendEntries)])
        self.assertEqual(again[0][1].prev_index, -1)


class ReadRoundTests(unittest.TestCase):
    def test_a_backup_that_acknowledged_no_round_of_the_view_confirms_no_read(self):
        """
        A read waits for a majority to acknowledge a round sent after it
        arrived; a backup starts the view having acknowledged none, so a
        reply carrying round 0 commits what it holds but confirms nothing.
        """
        lone = newly_elected()
        primary = lone.replica
        results = []
        primary.read(5).addCallback(results.append)
        lone.clock.advance(0)
        [(_, first)] = [sent for sent in lone.take(AppendEntries) if sent[0] == 1]
        self.assertEqual(first.round, 1)
        primary.receive(1, AppendReply(1, 1, True, 0, 0))
        self.assertEqual((primary.commit_index, results), (0, []))
        primary.receive(1, AppendReply(1, 1, True, 0, 1))
        self.assertEqual([result.last_order for result in results], [None])


class SnapshotAssemblyTests(unittest.TestCase):
    """Chunks are combined only when they are of one snapshot, as its first chunk named it."""

    def assertStartsAgain(self, other):
        """``other``, after the first chunk of a snapshot of 3 records up to 20, is not added to it."""
        lone = LoneReplica()
        lone.receive(0, chunk(1, 0, 0, ((1, 1), (2, 2)), last_index=20))
        self.assertEqual(lone.receive(0, other),
                         [(0, SnapshotReply(1, 1, other.last_index, 0, 1))])
        self.assertEqual((lone.replica.commit_index, lone.replica.book.records()), (-1, ()))

    def test_a_chunk_of_an_older_snapshot(self):
        self.assertStartsAgain(chunk(1, 0, 2, ((3, 3),), last_index=10))

    def test_a_chunk_of_a_newer_snapshot(self):
        self.assertStartsAgain(chunk(1, 0, 2, ((3, 3),), last_index=30))

    def test_a_chunk_of_a_smaller_snapshot(self):
        self.assertStartsAgain(chunk(1, 0, 2, ((3, 3),), total=2, last_index=20))

    def test_a_chunk_of_a_larger_snapshot(self):
        self.assertStartsAgain(chunk(1, 0, 2, ((3, 3),), total=4, last_index=20))
