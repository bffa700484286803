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
