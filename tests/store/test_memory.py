"""
The contract suite against the embedded store, on a controllable clock.
"""

from twisted.internet import task
from twisted.trial import unittest

from marketplace.store import make_store
from tests.store.backends import MemoryBackend
from tests.store.contract import StoreContract


class MemoryStoreContractTests(StoreContract, MemoryBackend, unittest.TestCase):
    pass


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


class MemoryOutcomeSweepTests(unittest.TestCase):
    def test_expired_outcomes_are_freed_without_further_operations(self):
        """Idempotency outcomes do not outlive their TTL in memory."""
        clock = task.Clock()
        store = make_store("memory", reactor=clock)
        store.startService()
        self.addCleanup(store.stopService)
        store.ledger.open_account("a", 100)
        for i in range(50):
            store.ledger.deposit("a", 1, f"s:{i}", 10)
        store.ledger.deposit("a", 1, "long:1")
        self.assertEqual(len(store.ledger._outcomes), 51)
        clock.advance(61)
        self.assertEqual(list(store.ledger._outcomes), ["long:1"])
        self.assertEqual(store.ledger.prune(), 0)
