"""
The primary's failure detector against its own pauses, over the simulated
network: a primary that did not run for a while (a long batch of work, a
pause of its process) has its overdue tick run before it reads what the
backups sent meanwhile, and must not take that time for their silence.
"""

from twisted.trial import unittest

from marketplace.laptop.replication import PRIMARY, Timeouts
from tests.laptop.simnet import SimulatedNetwork
from tests.laptop.test_replication import elect

TIMEOUTS = Timeouts()


class PrimaryPauseTests(unittest.TestCase):
    def pause_primary(self, seconds):
        net = SimulatedNetwork()
        primary_id = elect(net)
        primary = net.replicas[primary_id]
        net.run_until(lambda: len(primary.live) == 2, 2.0)
        view = primary.view
        net.freeze(primary_id)
        net.run(seconds)
        net.resume(primary_id)
        net.run(0.5)
        return net, primary_id, view

    def test_pause_shorter_than_the_election_timeout_drops_no_backup(self):
        """
        Paused longer than the backup timeout but shorter than the election
        timeout: no backup could have noticed, none may leave the live set.
        """
        pause = (TIMEOUTS.backup + TIMEOUTS.election) / 2
        net, primary_id, view = self.pause_primary(pause)
        primary = net.replicas[primary_id]
        self.assertEqual(primary._counters.counts.get("laptop_backup_dropped", 0), 0)
        self.assertEqual(primary._counters.counts["laptop_primary_stalls"], 1)
        self.assertEqual(len(primary.live), 2)
        self.assertEqual((primary.role, primary.view), (PRIMARY, view), "no view change")
        results = []
        primary.order(7, 1).addCallback(results.append)
        net.run(0.05)
        self.assertEqual(results, [primary_id])

    def test_pause_longer_than_the_election_timeout_gives_way(self):
        """The backups may have elected another primary meanwhile: this one steps down."""
        net, primary_id, view = self.pause_primary(TIMEOUTS.election * 3)
        self.assertNotEqual(net.primary(), primary_id)
        self.assertGreater(net.replicas[primary_id].view, view)
