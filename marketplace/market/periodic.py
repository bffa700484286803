# -*- test-case-name: tests.market.test_periodic -*-
"""
A job run every few seconds for as long as its service runs: the sweeps
that keep reservations bounded in time (product-db lapses reservations whose
lease ran out; buyer front ends void the payments of lapsed attempts, and
record the purchases whose front end could not), and the batching they share.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from marketplace.market.errors import ApiError

log = Logger()


class Periodic(Service):
    """
    Call ``job()`` (which may return a Deferred) every ``interval`` seconds
    on ``clock``.  A run never overlaps the previous one; a run that fails is
    logged and the next one tries again, so a store or service that is down
    for a while only delays the job.
    """

    def __init__(self, name: str, interval: float, job, clock):
        self.setName(name)
        self._job = job
        #: Seconds between runs.
        self.interval = interval
        self._loop = task.LoopingCall(self._run)
        self._loop.clock = clock

    def _run(self):
        return defer.maybeDeferred(self._job).addErrback(self._failed)

    def _failed(self, failure):
        if failure.check(ApiError):
            # Expected while a service is down: no traceback every few seconds.
            log.warn("{name} failed; tried again in {interval} s: {why}", name=self.name,
                     interval=self.interval, why=failure.getErrorMessage())
        else:
            log.failure("{name} failed; tried again in {interval} s", failure, name=self.name,
                        interval=self.interval)

    def startService(self):
        super().startService()
        self._loop.start(self.interval, now=False)

    def stopService(self):
        if self._loop.running:
            self._loop.stop()
        return super().stopService()


@defer.inlineCallbacks
def in_batches(list_batch, handle, batch_size: int, batches: int):
    """
    C{handle} each entry of each batch C{list_batch()} lists (a Deferred of
    at most C{batch_size} entries), one after another, until a batch comes
    short or C{batches} were handled: a sweep's work per run is bounded,
    and what is left waits for the next run.
    """
    for _ in range(batches):
        listed = yield list_batch()
        for entry in listed:
            yield handle(entry)
        if len(listed) < batch_size:
            return
