"""
The replication state machine's customer side, one rule a test: requests
admitted, routed, forwarded, retried, expired and failed on stopping; and
the parts it starts from: the documented defaults, majorities, what a new
primary believes of its backups, which snapshot chunks belong together.
"""

from twisted.internet import task
from twisted.trial import unittest

from marketplace.laptop.replication import FOLLOWER, Replica, RequestFailed, Timeouts
from protocols.laptop import (
    FORWARD_OK,
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
        """The command line's defaults, and the retransmit interval of 1 s."""
        self.assertEqual(
            Timeouts(),
            Timeouts(heartbeat=0.05, backup=0.4, election=1.0, election_stagger=0.25,
                     request=5.0, retransmit=1.0),
        )

    def test_batching(self):
        """
        Catch-up in chunks of 4096 entries, snapshots in chunks of 65,536
        records, a batch held 1 ms at most, a snapshot every 200,000 entries.
        """
        replica = Replica(0, [1, 2], None, None)
        self.assertEqual(
            (replica.max_batch, replica.snapshot_chunk, replica.batch_hold,
             replica.compact_threshold),
            (4096, 65536, 0.001, 200_000),
        )


class MajorityTests(unittest.TestCase):
    def test_more_than_half_of_the_configured_replicas(self):
        """Of an even number of replicas too: half of them is no majority."""
        majorities = [Replica(0, range(1, size), None, None).majority for size in range(1, 7)]
        self.assertEqual(majorities, [1, 2, 2, 3, 3, 4])


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
        """Not even the new primary's no-op: a backup is not known to hold anything."""
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


def following():
    """A LoneCandidate that heard from replica 1 as primary of view 1."""
    lone = LoneCandidate()
    lone.replica.receive(1, AppendEntries(1, 1, -1, -1, -1, 1, (noop(1),)))
    lone.take()
    return lone


#: what ``following()`` sends for its first request, order 0 of customer 5
FORWARDED = (1, ForwardRequest(0, 5, 0, TYPE_ORDER))


class ForwardedRequestTests(unittest.TestCase):
    """When a backup forwards a customer's request to the primary again."""

    def test_at_once_to_a_new_primary(self):
        """A request forwarded to the primary of an older view goes to the new one as it is heard of."""
        lone = following()
        lone.replica.order(5, 0)
        lone.take()
        lone.replica.receive(2, AppendEntries(2, 2, -1, -1, -1, 1, (noop(2),)))
        self.assertEqual(lone.take(ForwardRequest), [(2, ForwardRequest(0, 5, 0, TYPE_ORDER))])

    def test_not_when_a_link_to_the_primary_it_went_to_comes_up(self):
        """A link coming up is sent what it missed: not a request it was sent over another."""
        lone = following()
        lone.replica.order(5, 0)
        lone.take()
        lone.replica.peer_connected(1)
        self.assertEqual(lone.take(ForwardRequest), [])

    def test_not_when_a_link_to_a_primary_with_a_high_id_comes_up(self):
        """Ids compare by value: a decoded frame holds a new int object for each above 256."""
        lone = LoneCandidate(peers=(1000, 2000))
        primary = 1000
        lone.replica.receive(primary, AppendEntries(1, primary + 0, -1, -1, -1, 1, (noop(1),)))
        lone.replica.order(5, 0)
        lone.replica.receive(primary, AppendEntries(2, primary + 0, 0, 1, -1, 1, (noop(2),)))
        self.assertEqual(lone.take(ForwardRequest), [(1000, ForwardRequest(0, 5, 0, TYPE_ORDER))])
        lone.replica.peer_connected(primary)
        self.assertEqual(lone.take(ForwardRequest), [])

    def test_a_refused_request_waiting_for_its_own_time_holds_up_no_other(self):
        """The other, lost with the link, goes at the next tick; the refused one after a heartbeat."""
        lone = following()
        replica = lone.replica
        replica.order(5, 0)
        replica.receive(1, ForwardReply(0, FORWARD_RETRY, -1, -1))
        replica.order(6, 0)
        replica.peer_lost(1)
        lone.take()
        lone.run(EXACT_TIMEOUTS.heartbeat)
        self.assertEqual(lone.take(ForwardRequest), [(1, ForwardRequest(1, 6, 0, TYPE_ORDER)),
                                                     FORWARDED])

    def test_again_after_the_retransmit_interval_unanswered(self):
        """The request or its answer may be lost; not sooner: it may still be on its way."""
        lone = following()
        lone.replica.order(5, 0)
        self.assertEqual(lone.take(ForwardRequest), [FORWARDED])
        timeouts = EXACT_TIMEOUTS
        lone.run(timeouts.retransmit - timeouts.heartbeat)
        self.assertEqual(lone.take(ForwardRequest), [])
        lone.run(timeouts.heartbeat)
        self.assertEqual(lone.take(ForwardRequest), [FORWARDED])

    def test_one_lost_with_the_primarys_link_goes_at_the_next_tick(self):
        """It never arrived: there is no answer to wait a retransmit interval for."""
        lone = following()
        lone.replica.order(5, 0)
        lone.take()
        lone.replica.peer_lost(1)
        self.assertEqual(lone.take(ForwardRequest), [])
        lone.run(EXACT_TIMEOUTS.heartbeat)
        self.assertEqual(lone.take(ForwardRequest), [FORWARDED])

    def test_one_refused_by_a_replica_no_longer_primary_goes_again_after_a_heartbeat(self):
        """By then the next primary may be known; not at once, it would only be refused again."""
        lone = following()
        lone.replica.order(5, 0)
        lone.take()
        lone.replica.receive(1, ForwardReply(0, FORWARD_RETRY, -1, -1))
        lone.clock.advance(0)
        self.assertEqual(lone.take(ForwardRequest), [])
        lone.run(EXACT_TIMEOUTS.heartbeat)
        self.assertEqual(lone.take(ForwardRequest), [FORWARDED])


class RetryCallTests(unittest.TestCase):
    """A request refused by a replica no longer primary, answered or expired before it goes again."""

    def test_answered_by_the_next_primary_it_leaves_no_call_on_the_clock(self):
        """Its call to send it again is cancelled, not left to find nothing to send."""
        lone = following()
        replica = lone.replica
        results = []
        replica.order(5, 0).addCallback(results.append)
        replica.receive(1, ForwardReply(0, FORWARD_RETRY, -1, -1))
        lone.take()
        replica.receive(2, AppendEntries(2, 2, -1, -1, -1, 1, (noop(2),)))
        self.assertEqual(lone.take(ForwardRequest), [(2, ForwardRequest(0, 5, 0, TYPE_ORDER))])
        replica.receive(2, ForwardReply(0, FORWARD_OK, -1, 2))
        self.assertEqual(results, [2])
        self.assertEqual(lone.clock.getDelayedCalls(), [replica._tick_call])

    def test_expired_it_leaves_no_call_on_the_clock(self):
        """As when it is answered."""
        lone = following()
        replica = lone.replica
        failures = []
        replica.order(5, 0).addErrback(failures.append)
        timeouts = EXACT_TIMEOUTS
        lone.run(timeouts.request - timeouts.heartbeat)
        lone.clock.advance(timeouts.heartbeat / 2)
        replica.receive(1, ForwardReply(0, FORWARD_RETRY, -1, -1))
        lone.clock.advance(timeouts.heartbeat / 2)
        self.assertEqual([failure.type for failure in failures], [RequestFailed])
        self.assertEqual(lone.clock.getDelayedCalls(), [replica._tick_call])


class ExpiryTests(unittest.TestCase):
    def test_a_request_fails_at_its_deadline(self):
        """The request timeout after it arrived, not a tick later."""
        lone = LoneCandidate()
        failures = []
        lone.replica.order(5, 0).addErrback(failures.append)
        timeouts = EXACT_TIMEOUTS
        lone.run(timeouts.request - timeouts.heartbeat)
        self.assertEqual(failures, [])
        lone.run(timeouts.heartbeat)
        self.assertEqual([failure.type for failure in failures], [RequestFailed])

    def test_a_customer_callback_that_raises_cuts_no_sweep_short(self):
        """It is logged, and the requests after it are answered all the same."""
        lone = LoneCandidate()
        failures = []
        lone.replica.place_order(5, 0, None, lambda error: 1 / 0)
        lone.replica.place_order(6, 0, None, failures.append)
        lone.run(EXACT_TIMEOUTS.request)
        self.assertEqual([type(error) for error in failures], [RequestFailed])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class StopTests(unittest.TestCase):
    def test_a_replica_not_started_handles_no_message(self):
        """It has not loaded its state from storage yet."""
        sent = []
        replica = Replica(1, [0, 2], task.Clock(), lambda peer, message: sent.append(message))
        replica.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),)))
        self.assertEqual((sent, replica.view, replica.primary_id), ([], 0, None))

    def test_a_stopped_replica_handles_no_message(self):
        """Its storage is closed."""
        lone = LoneReplica()
        lone.replica.stop()
        self.assertEqual(lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),))), [])
        self.assertEqual((lone.replica.view, lone.replica.primary_id), (0, None))

    def test_every_waiting_request_fails(self):
        """Requests sent to the primary, or waiting to be sent again after a refusal."""
        lone = following()
        failures = []
        lone.replica.order(5, 0).addErrback(failures.append)
        lone.replica.receive(1, ForwardReply(0, FORWARD_RETRY, -1, -1))
        lone.replica.order(6, 0).addErrback(failures.append)
        lone.replica.stop()
        self.assertEqual([str(failure.value) for failure in failures], ["replica stopping"] * 2)

    def test_a_request_made_after_stopping_fails_at_once(self):
        """No tick is left to route or expire it: it must not wait for ever."""
        lone = following()
        lone.replica.stop()
        for request in (lone.replica.order(5, 0), lone.replica.read(5)):
            failure = self.failureResultOf(request, RequestFailed)
            self.assertEqual(str(failure.value), "replica not running")
        self.assertEqual(lone.sent, [])

    def test_no_call_of_a_refused_request_is_left_on_the_clock(self):
        """A stopped replica leaves nothing to run behind it."""
        lone = following()
        lone.replica.order(5, 0).addErrback(lambda failure: None)
        lone.replica.receive(1, ForwardReply(0, FORWARD_RETRY, -1, -1))
        lone.replica.stop()
        self.assertEqual(lone.clock.getDelayedCalls(), [])

    def test_no_call_of_a_primary_is_left_on_the_clock(self):
        """Neither its tick nor the batch it was about to send."""
        lone = LonePrimary()
        lone.acknowledge(1, 2)
        lone.replica.order(5, 0).addErrback(lambda failure: None)
        self.assertEqual(len(lone.clock.getDelayedCalls()), 2)
        lone.replica.stop()
        self.assertEqual(lone.clock.getDelayedCalls(), [])

    def test_a_primary_stopping_sends_the_requests_it_serves_elsewhere(self):
        """The backups that forwarded them hear at once that they must retry them."""
        lone = LonePrimary()
        primary = lone.replica
        lone.serve_forwarded_order(7, 5)
        primary.stop()
        self.assertEqual(primary.role, FOLLOWER)
        self.assertEqual(lone.take(ForwardReply), [(1, ForwardReply(7, FORWARD_RETRY, -1, -1))])
