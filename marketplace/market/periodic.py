# -*- test-case-name: tests.market.test_periodic -*-
"""
A job run every few seconds for as long as its service runs: the sweeps
that keep reservations bounded in time (product-db lapses reservations whose
lease ran out; buyer front ends void the payments of lapsed attempts).
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
        self._interval = interval
        self._loop = task.LoopingCall(self._run)
        self._loop.clock = clock

    def _run(self):
        return defer.maybeDeferred(self._job).addErrback(self._failed)

    def _failed(self, failure):
        if failure.check(ApiError):
            # Expected while a service is down: no traceback every few seconds.
            log.warn("{name} failed; tried again in {interval} s: {why}", name=self.name,
                     interval=self._interval, why=failure.getErrorMessage())
        else:
            log.failure("{name} failed; tried again in {interval} s", failure, name=self.name,
                        interval=self._interval)

    def startService(self):
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self):
        if self._loop.running:
            self._loop.stop()
        return super().stopService()
