"""
The embedded store: every domain held in this process's memory.

The default backend: nothing to install or run, exact and fast, but private to
one process and gone when it exits.  Use the Redis store to share state
between processes or hosts.
"""

from twisted.application.service import Service
from twisted.internet import task
from zope.interface import implementer

from marketplace.store.interfaces import IStore
from marketplace.store.ledger_rules import KEEP_EVERYTHING, HistoryRetention
from marketplace.store.memory.catalog import MemoryCatalog
from marketplace.store.memory.customers import MemoryCustomers
from marketplace.store.memory.directory import MemoryDirectory
from marketplace.store.memory.ledger import MemoryLedger
from marketplace.store.memory.sessions import MemorySessions

#: Seconds between sweeps of expired sessions nobody asked for again, and of
#: expired idempotency outcomes (otherwise freed only by later operations).
PRUNE_INTERVAL = 60.0


@implementer(IStore)
class MemoryStore(Service):
    url = "memory"

    def __init__(self, clock=None, history_keep: HistoryRetention = KEEP_EVERYTHING):
        if clock is None:
            from twisted.internet import reactor as clock
        self.sessions = MemorySessions(clock)
        self.ledger = MemoryLedger(clock, history_keep)
        self.directory = MemoryDirectory(clock)
        self.customers = MemoryCustomers(clock)
        self.catalog = MemoryCatalog(clock)
        self._pruning = task.LoopingCall(self._prune)
        self._pruning.clock = clock

    def _prune(self):
        self.sessions.prune()
        self.ledger.prune()

    def startService(self):
        super().startService()
        self._pruning.start(PRUNE_INTERVAL, now=False)

    def stopService(self):
        if self._pruning.running:
            self._pruning.stop()
        return super().stopService()
