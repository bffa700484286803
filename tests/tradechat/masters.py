"""
A C{twistd tradechat --workers N} master as a child process of a test: its
port, its workers' process ids as it logs them, waits on its log lines, and
waits for any process (a worker, not our child) to be gone.
"""

from __future__ import annotations

import os
import re
import signal

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from tests.support.twistd import TwistdProcess, spawn_twistd

START_TIMEOUT = 30.0
LISTENING = re.compile(rb"tradechat listening on 127\.0\.0\.1:(\d+)")
STARTED = re.compile(rb"worker (\d+) started \(pid (\d+)\)")


class MasterProcess(TwistdProcess):
    def __init__(self) -> None:
        super().__init__(LISTENING)
        self._waiters: list = []
        self.port = None

    @property
    def worker_pids(self) -> dict[int, int]:
        """Each worker slot's latest process id."""
        return {int(slot): int(pid) for slot, pid in STARTED.findall(self.output)}

    @property
    def all_worker_pids(self) -> set[int]:
        return {int(pid) for _, pid in STARTED.findall(self.output)}

    def outReceived(self, data):
        super().outReceived(data)
        waiting, self._waiters = self._waiters, []
        for pattern, offset, waiter in waiting:
            self._check(pattern, offset, waiter)

    errReceived = outReceived

    def wait_for(self, pattern: bytes, after: int = 0, timeout: float = START_TIMEOUT):
        """Fire with the match of C{pattern} in the log past offset C{after}."""
        waiter = defer.Deferred()
        self._check(re.compile(pattern), after, waiter)
        return waiter.addTimeout(timeout, reactor)

    def _check(self, pattern, offset, waiter) -> None:
        if waiter.called:
            return
        found = pattern.search(self.output, offset)
        if found is not None:
            waiter.callback(found)
        elif self.ended.called:
            waiter.errback(AssertionError(
                f"{pattern.pattern!r} never logged:\n" + self.output.decode(errors="replace")[-3000:]))
        else:
            self._waiters.append((pattern, offset, waiter))

    def processEnded(self, reason):
        super().processEnded(reason)
        waiting, self._waiters = self._waiters, []
        for pattern, offset, waiter in waiting:
            self._check(pattern, offset, waiter)

    def signal(self, signum) -> None:
        self.transport.signalProcess(signum)


@defer.inlineCallbacks
def start_master(testcase, store_url: str, *arguments: str, workers: int = 2,
                 listen: str = "tcp:0:interface=127.0.0.1"):
    """
    Start a master with C{workers} workers on a free loopback port and wait
    until every worker is ready.  Cleanup stops it and kills any worker
    still alive, so a failing test leaves nothing running.
    """
    master = MasterProcess()
    spawn_twistd(testcase, LISTENING, "tradechat", "--listen", listen,
                 "--workers", str(workers), "--store", store_url, *arguments, process=master)
    testcase.addCleanup(_kill_leftovers, master)
    found = yield master.seen.addTimeout(START_TIMEOUT, reactor)
    master.port = int(LISTENING.search(found).group(1))
    for slot in range(1, workers + 1):
        yield master.wait_for(rb"worker %d ready" % slot)
    return master


def _kill_leftovers(master: MasterProcess) -> None:
    for pid in master.all_worker_pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@implementer(IReadDescriptor)
class _ProcessExit:
    """A pidfd in the reactor: readable once its process has exited."""

    def __init__(self, fd: int, gone: defer.Deferred) -> None:
        self.fd = fd
        self.gone = gone

    def fileno(self) -> int:
        return self.fd

    def doRead(self):
        self.close()
        self.gone.callback(None)

    def close(self) -> None:
        if self.fd >= 0:
            reactor.removeReader(self)
            os.close(self.fd)
            self.fd = -1

    def connectionLost(self, reason):
        self.close()

    def logPrefix(self) -> str:
        return "pidfd"


def process_gone(pid: int, timeout: float) -> defer.Deferred:
    """Fire once process C{pid} (a child of anyone) has exited; fail after C{timeout}."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return defer.succeed(None)
    gone = defer.Deferred()
    watch = _ProcessExit(fd, gone)
    reactor.addReader(watch)

    def still_running(result, timeout):
        watch.close()
        raise AssertionError(f"process {pid} still running {timeout}s later")

    return gone.addTimeout(timeout, reactor, onTimeoutCancel=still_running)

