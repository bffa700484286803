"""
Tests for the Sentinel fixture in L{tests.support.redis_sentinel}: the
deployment it starts really fails over, the old primary comes back as a
replica, and no second failover follows.
"""

import os
import signal

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests.support.redis_sentinel import (
    DOWN_AFTER_MS, SERVICE, ask, start_sentinel_deployment, write_and_wait,
)


class SentinelDeploymentTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_failover_promotes_the_replica_and_demotes_the_old_primary(self):
        deployment = yield start_sentinel_deployment(self)
        self.assertEqual((yield deployment.primary_port()), deployment.primary.port)
        self.assertIn(f"/{SERVICE}/0", deployment.url())
        # The replica must hold the write before the primary dies.
        acknowledged = yield write_and_wait(deployment.primary.port, "SET", "k", "written before")
        self.assertEqual(acknowledged, 1)

        old = yield deployment.kill_primary_and_fail_over()
        self.assertIs(old, deployment.primary)
        self.assertEqual((yield deployment.primary_port()), deployment.replica.port)
        self.assertEqual((yield ask(deployment.replica.port, "GET", "k")), "written before")

        yield deployment.restart_as_replica(old)
        role = yield ask(old.port, "ROLE")
        self.assertEqual((role[0], int(role[2])), ("slave", deployment.replica.port))

    @defer.inlineCallbacks
    def test_a_write_counts_as_replicated_only_once_the_replica_holds_it(self):
        deployment = yield start_sentinel_deployment(self)
        primary, replica = deployment.primary.port, deployment.replica
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            held = yield write_and_wait(primary, "SET", "k", "unreplicated", wait_ms=300)
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        self.assertEqual(held, 0)
        self.assertEqual((yield write_and_wait(primary, "SET", "k", "replicated")), 1)
        self.assertEqual((yield ask(replica.port, "GET", "k")), "replicated")

    @defer.inlineCallbacks
    def test_a_stalled_new_primary_is_not_failed_over_once_the_old_one_is_back(self):
        """
        The restarted old primary came back empty and may still be syncing:
        promoting it would lose everything, so a stall of the new primary
        three times as long as the down-after period the deployment started
        with no longer fails it over.
        """
        deployment = yield start_sentinel_deployment(self)
        old = yield deployment.kill_primary_and_fail_over()
        yield deployment.restart_as_replica(old)
        new = deployment.replica
        os.kill(new.pid, signal.SIGSTOP)
        try:
            yield task.deferLater(reactor, 3 * DOWN_AFTER_MS / 1000, lambda: None)
        finally:
            os.kill(new.pid, signal.SIGCONT)
        self.assertEqual((yield deployment.primary_port()), new.port)
        self.assertEqual((yield ask(new.port, "ROLE"))[0], "master")
