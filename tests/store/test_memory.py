"""
The contract suite against the embedded store, on a controllable clock.
"""

from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.store import make_store
from tests.store.contract import StoreContract


class MemoryStoreContractTests(StoreContract, unittest.TestCase):
    short_ttl = 300.0

    def setUp(self):
        self.clock = task.Clock()
        self.store = make_store("memory", reactor=self.clock)
        self.store.startService()
        self.addCleanup(self.store.stopService)

    def make_store(self):
        return defer.succeed(self.store)

    def make_clients(self, count):
        return defer.succeed([self.store] * count)

    def let_time_pass(self, seconds):
        self.clock.advance(seconds)
        return defer.succeed(None)


class MemorySessionSweepTests(unittest.TestCase):
    def test_expired_sessions_are_swept(self):
        """Sessions nobody touches again do not pile up in memory."""
        clock = task.Clock()
        store = make_store("memory", reactor=clock)
        store.startService()
        self.addCleanup(store.stopService)
        for _ in range(3):
            store.sessions.create("idle", ttl=10)
        clock.advance(61)
        self.assertEqual(store.sessions.prune(), 0)
        self.assertEqual(self.successResultOf(store.sessions.sessions_of("idle")), [])
