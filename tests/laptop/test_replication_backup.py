"""
The replication state machine as a backup, one rule a test: entries and
snapshots received and checked, forwarded requests and their replies.
"""

from twisted.trial import unittest

from protocols.laptop import (
    FORWARD_OK,
    FORWARD_RETRY,
    TYPE_ORDER,
    AppendEntries,
    AppendReply,
    ForwardReply,
    ForwardRequest,
    InstallSnapshot,
    VoteRequest,
)
from tests.laptop.test_replication import (
    EXACT_TIMEOUTS,
    TIMEOUTS,
    LonePrimary,
    LoneReplica,
    noop,
)


def follow_primary_0(lone):
    """Make ``lone``'s replica the backup of replica 0, primary of view 1."""
    lone.receive(0, AppendEntries(1, 0, -1, -1, -1, 1, (noop(1),)))


class LinkLossTests(unittest.TestCase):
    """What a primary believes of a backup whose link dropped."""

    def test_a_reconnected_backup_that_does_not_answer_is_sent_the_whole_log(self):
        """
        It may come back restarted with less than it acknowledged: once the
        probe from the log's end goes unanswered for the retransmit
        interval, it is sent everything from the log's start.
        """
        lone = LonePrimary()
        primary = lone.replica
        lone.acknowledge(1, 2)
        for number in range(3):
            primary.order(5, number)
            lone.clock.advance(0)
            lone.acknowledge(1, 2)
        log = primary.replicated_log
        primary.peer_lost(2)
        primary.peer_connected(2)
        [(_, probe)] = lone.take(AppendEntries)
        self.assertEqual(probe.prev_index, log.last_index)
        unanswered = lone.run(EXACT_TIMEOUTS.retransmit, answering=[1])
        self.assertEqual(
            [(message.prev_index, message.entries) for _, message in unanswered],
            [(-1, log.entries_from(0, log.last_index + 1))],
        )


class ForwardedRequestTests(unittest.TestCase):
    """A backup's own customers' requests, forwarded to the primary it knows."""

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

    def test_a_request_the_link_refused_goes_at_the_next_tick_not_with_the_primarys_messages(self):
        """
        Requests are re-routed when the primary or its view changes, not on
        each message of the primary followed: one the link refused goes at
        the next tick, however often the primary sends.
        """
        lone = LoneReplica()
        replica = lone.replica
        follow_primary_0(lone)
        lone.clock.advance(TIMEOUTS.heartbeat / 2)
        send, link_up = replica._send, False
        replica._send = lambda peer, message: link_up and send(peer, message)
        replica.order(5, 0)
        link_up = True
        self.assertEqual(lone.receive(0, AppendEntries(1, 0, 0, 1, 0, 2, ())),
                         [(0, AppendReply(1, 1, True, 0, 2))])
        del lone.sent[:]
        lone.clock.advance(TIMEOUTS.heartbeat / 2)
        self.assertEqual(lone.sent, [(0, ForwardRequest(0, 5, 0, TYPE_ORDER))])
