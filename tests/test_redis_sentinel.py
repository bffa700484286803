"""
Tests for the Sentinel fixture in L{tests.support.redis_sentinel}: the
deployment it starts really fails over, and the old primary comes back as a
replica.
"""

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.redis_sentinel import SERVICE, ask, start_sentinel_deployment


class SentinelDeploymentTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_failover_promotes_the_replica_and_demotes_the_old_primary(self):
        deployment = yield start_sentinel_deployment(self)
        self.assertEqual((yield deployment.primary_port()), deployment.primary.port)
        self.assertIn(f"/{SERVICE}/0", deployment.url())
        yield ask(deployment.primary.port, "SET", "k", "written before")
        # The replica must hold the write before the primary dies; a slow
        # host may take a while to acknowledge it, so the wait is generous
        # and its answer checked rather than assumed.
        acknowledged = yield ask(deployment.primary.port, "WAIT", 1, 20000,
                                 reply_timeout=25)
        self.assertEqual(acknowledged, 1)

        old = yield deployment.kill_primary_and_fail_over()
        self.assertIs(old, deployment.primary)
        self.assertEqual((yield deployment.primary_port()), deployment.replica.port)
        self.assertEqual((yield ask(deployment.replica.port, "GET", "k")), "written before")

        yield deployment.restart_as_replica(old)
        role = yield ask(old.port, "ROLE")
        self.assertEqual((role[0], int(role[2])), ("slave", deployment.replica.port))
