"""
Garbage-collector settings for a long-running server process.

CPython's cyclic collector starts a young-generation pass after every 700
net container allocations.  A front end under load keeps a few thousand young
containers alive for its requests in flight (Deferreds, generators, callback
tuples, timers), so with the default it ran about 200 young passes a second,
each promoting in-flight objects that die moments later, and every 0.5-1 s a
full pass over the whole heap -- some 50,000 objects, nearly all of them
modules, classes and functions from start-up -- that stopped the process for
15-25 ms of CPU with every request it held waiting.  Those full passes were
the largest single cause of the marketplace benchmark's latency tail
(docs/market.md); the trading chatroom, which keeps every ledger entry, paid
the same young passes on every round of pushes (docs/tradechat.md).

``CollectorSettings`` fixes both while its service runs: the start-up heap is
frozen (``gc.freeze``: never scanned again, it lives as long as the process
anyway) and the young threshold is raised well above the in-flight working
set.  Cyclic garbage is still collected; it is simply looked for less often,
among the objects that can actually be garbage.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service

#: Net container allocations between young-generation passes: an order of
#: magnitude above what a server holds for a few hundred requests in flight.
YOUNG_THRESHOLD = 10_000


class CollectorSettings(Service):
    """
    Freeze the start-up heap and raise the young threshold on start; undo
    both when the last running instance stops (so a test process that starts
    and stops services is left as it was).  The settings belong to the
    process, not to one service: a process running several services (the
    C{suite} plugin) holds several instances, which may stop in any order.
    """

    _holding = False
    #: Running instances in this process, and the threshold found by the first.
    _holders = 0
    _saved_threshold: tuple[int, int, int] | None = None

    def startService(self):
        super().startService()
        cls = CollectorSettings
        if cls._holders == 0:
            young, middle, oldest = cls._saved_threshold = gc.get_threshold()
            gc.set_threshold(max(YOUNG_THRESHOLD, young), middle, oldest)
        cls._holders += 1
        self._holding = True
        # Each start freezes what start-up has added since the last.
        gc.freeze()

    def stopService(self):
        if self._holding:
            self._holding = False
            cls = CollectorSettings
            cls._holders -= 1
            if cls._holders == 0:
                gc.unfreeze()
                gc.set_threshold(*cls._saved_threshold)
                cls._saved_threshold = None
        return super().stopService()
