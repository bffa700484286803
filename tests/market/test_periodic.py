"""
The periodic job behind the lease and void sweeps, on a ``task.Clock``.
"""

from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.market.errors import ServiceUnavailable
from marketplace.market.periodic import Periodic


class PeriodicTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.runs = []
        self.periodic = Periodic("sweep", 5.0, self.job, self.clock)
        self.periodic.startService()
        self.addCleanup(self.periodic.stopService)

    def job(self):
        outcome = defer.Deferred()
        self.runs.append(outcome)
        return outcome

    def test_runs_every_interval_and_never_overlaps(self):
        self.assertEqual(self.runs, [])
        self.clock.advance(5)
        self.assertEqual(len(self.runs), 1)
        self.clock.advance(10)
        self.assertEqual(len(self.runs), 1)
        self.runs[0].callback(None)
        self.clock.advance(5)
        self.assertEqual(len(self.runs), 2)

    def test_a_failed_run_is_logged_and_the_next_one_comes(self):
        self.clock.advance(5)
        self.runs[0].errback(RuntimeError("store down"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(5)
        self.assertEqual(len(self.runs), 2)

    def test_an_unavailable_service_is_a_warning_and_the_next_run_comes(self):
        self.clock.advance(5)
        self.runs[0].errback(ServiceUnavailable("payments is unavailable"))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.clock.advance(5)
        self.assertEqual(len(self.runs), 2)

    def test_stopped_it_runs_no_more(self):
        self.periodic.stopService()
        self.clock.advance(60)
        self.assertEqual(self.runs, [])
