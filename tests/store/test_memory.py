"""
The contract suite against the embedded store, on a controllable clock.
"""

from twisted.internet import task
from twisted.trial import unittest

from marketplace.store import directory_rules, make_store
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


class MemoryOutcomeExpiryTests(unittest.TestCase):
    """
    When an idempotency outcome stops being replayed, to the tick of a
    controllable clock: at its expiry time, not a tick later.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.ledger = make_store("memory", reactor=self.clock).ledger
        self.ledger.open_account("a", 100)

    def balance(self):
        return self.successResultOf(self.ledger.balance("a"))

    def test_an_outcome_is_forgotten_at_its_expiry_time(self):
        self.ledger.deposit("a", 1, "k", 10)
        self.clock.advance(10)
        self.assertEqual(self.ledger.prune(), 1)
        self.assertEqual(self.successResultOf(self.ledger.deposit("a", 1, "k", 10)), 102)

    def test_prune_frees_the_expired_ones_and_counts_them(self):
        for key, at in [("k1", 0), ("k2", 1), ("k3", 5)]:
            self.clock.advance(at - self.clock.seconds())
            self.ledger.deposit("a", 1, key, 10)
        self.clock.advance(11 - self.clock.seconds())
        self.assertEqual(self.ledger.prune(), 2)
        self.assertEqual(list(self.ledger._outcomes), ["k3"])

    def test_a_key_reused_with_another_lifetime_after_expiry_runs_again(self):
        """
        The old outcome sits in another lifetime's queue, unswept: it is
        expired all the same, at its expiry time exactly, and sweeping its
        queue later does not drop the new outcome.
        """
        self.ledger.deposit("a", 1, "k", 10)
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(self.ledger.deposit("a", 1, "k", 30)), 102)
        self.assertEqual(self.ledger.prune(), 0)
        self.assertEqual(self.successResultOf(self.ledger.deposit("a", 1, "k", 30)), 102)
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(self.ledger.deposit("a", 1, "k", 30)), 102)
        self.assertEqual(self.balance(), 102)

    def test_an_expired_outcome_in_another_queue_is_not_replayed(self):
        self.ledger.deposit("a", 1, "k", 10)
        self.clock.advance(20)
        self.assertEqual(self.successResultOf(self.ledger.deposit("a", 1, "k", 30)), 102)

    def test_a_bad_lifetime_fails_the_operation(self):
        for ttl in (0, -1, True, "10"):
            self.failureResultOf(self.ledger.deposit("a", 1, "k", ttl), ValueError)
        self.assertEqual(self.balance(), 100)


class MemoryDirectoryTests(unittest.TestCase):
    def test_known_name_is_one_lookup(self):
        """A name already claimed is answered without hashing or probing."""
        store = make_store("memory", reactor=task.Clock())
        user_id = self.successResultOf(store.directory.user_id_for("alice", 1024))
        self.patch(directory_rules, "home_slot", None)
        self.patch(directory_rules, "check_id_space", None)
        self.assertEqual(self.successResultOf(store.directory.user_id_for("alice", 1024)), user_id)

    def test_ended_leases_are_forgotten(self):
        clock = task.Clock()
        store = make_store("memory", reactor=clock)
        directory = store.directory
        for n in range(5):
            directory.user_id_for(f"gone{n}", 1024, lease=10)
        directory.user_id_for("gone0", 1024, lease=10)  # a renewal leaves a stale heap entry
        clock.advance(11)
        self.successResultOf(directory.user_id_for("kept", 1024))
        self.successResultOf(directory.user_id_for("new", 1024, lease=10))
        self.assertEqual(sorted(name for _, name in directory._ids), ["kept", "new"])
        self.assertEqual(sorted(directory._names[1024].values()), ["kept", "new"])
        self.assertEqual(list(directory._leases[1024]), ["new"])
        self.assertEqual(len(directory._expiries[1024]), 1)
