# -*- test-case-name: tests.tradechat.test_workers -*-
"""
A master process's supervision of its worker processes.

L{WorkerSupervisor} starts C{count} workers with C{reactor.spawnProcess},
each given the master's listening socket as its descriptor 3 and three
pipes: its stdin, which the master never writes and only closes (end of
file tells a worker to stop, and also arrives when the master dies however
it dies, SIGKILL included, so no worker outlives it); its stdout and
stderr, whose lines the master logs under the worker's number; and its
descriptor 4, on which the worker reports that it is ready and its
counters (L{protocols.workerstatus}).

A worker that exits while the master runs is replaced at once and the death
is logged; one that died before it was ever ready is replaced after
L{RESTART_BACKOFF} seconds, so a worker that cannot start does not spin.
Stopping closes every worker's stdin and waits up to L{STOP_TIMEOUT}
seconds for them to finish their requests and exit; any still running then
is killed.

The counters of all workers read as one through L{WorkerSupervisor.counters}:
the latest report of each live worker plus the last report of every worker
that has exited, so totals never go backwards when a worker is replaced
(and the connections a dead worker had open count as closed).
This is the master-side aggregation point for metrics: each report is a
worker's L{marketplace.metrics.Counters.flat} state, so the sum is one too.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger

from marketplace.metrics import CONNECTION_CLOSED, CONNECTION_OPENED, unflatten
from protocols.workerstatus import Status, StatusDecoder, StatusError

LISTEN_FD = 3
STATUS_FD = 4
STOP_TIMEOUT = 10.0
"""Seconds stopping workers may take before they are killed."""
KILL_TIMEOUT = 5.0
RESTART_BACKOFF = 1.0
MAX_LOG_LINE = 4096


class WorkerProcess(protocol.ProcessProtocol):
    """The master's end of one worker process."""

    log = Logger()

    def __init__(self, supervisor: "WorkerSupervisor", slot: int) -> None:
        self.supervisor = supervisor
        self.slot = slot
        self.ready = False
        self.pid = None
        self.counters: dict = {}
        self.exited = False
        self._end_waiters: list = []
        self._status = StatusDecoder()
        self._partial = {1: b"", 2: b""}

    def makeConnection(self, transport):
        self.pid = transport.pid
        super().makeConnection(transport)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == STATUS_FD:
            for message in self._status.receive(data):
                self._status_received(message)
        elif fd in self._partial:
            self._log_lines(fd, data)

    def _status_received(self, message) -> None:
        if isinstance(message, StatusError):
            self.supervisor.bad_status += 1
            self.log.warn("worker {slot}: bad status line dropped: {error}",
                          slot=self.slot, error=message)
        elif message.kind == "ready":
            self.ready = True
            self.supervisor.worker_ready(self)
        else:
            self.counters = message.counters

    def _log_lines(self, fd: int, data: bytes) -> None:
        *lines, rest = (self._partial[fd] + data).split(b"\n")
        if len(rest) > MAX_LOG_LINE:
            lines.append(rest)
            rest = b""
        self._partial[fd] = rest
        for line in lines:
            if line:
                self.log.info("worker {slot}: {line}", slot=self.slot,
                              line=line[:MAX_LOG_LINE].decode("utf-8", "replace"))

    def stop(self) -> None:
        """Ask the worker to finish: end of file on its stdin."""
        self.transport.closeStdin()

    def kill(self) -> None:
        try:
            self.transport.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass

    def when_ended(self) -> defer.Deferred:
        """A new Deferred firing once the process has exited (a waiter may give up alone)."""
        if self.exited:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._end_waiters.append(waiter)
        return waiter

    def processEnded(self, reason) -> None:
        self.exited = True
        self.supervisor.worker_ended(self, reason.value)
        waiters, self._end_waiters = self._end_waiters, []
        for waiter in waiters:
            waiter.callback(None)


class WorkerSupervisor(Service):
    """
    Keeps C{count} workers running while the service runs.

    C{arguments} is the worker's command line after the executable;
    C{listening} is the L{marketplace.sharedsocket.SharedSocket} whose
    descriptor each worker inherits; C{reactor} spawns processes and keeps
    time.
    """

    log = Logger()

    def __init__(self, count: int, executable: str, arguments: list, listening, reactor,
                 env=None) -> None:
        self.count = count
        self._executable = executable
        self._arguments = arguments
        self._listening = listening
        self._reactor = reactor
        self._env = env
        self.workers: dict[int, WorkerProcess] = {}
        self.restarts = 0
        self.bad_status = 0
        self._exited_counters: Counter = Counter()
        self._restart_calls: dict = {}
        self._ready_waiters: list = []

    def startService(self):
        super().startService()
        for slot in range(1, self.count + 1):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        self._restart_calls.pop(slot, None)
        worker = WorkerProcess(self, slot)
        self._reactor.spawnProcess(
            worker, self._executable, [self._executable, *self._arguments], env=self._env,
            childFDs={0: "w", 1: "r", 2: "r", LISTEN_FD: self._listening.fileno(),
                      STATUS_FD: "r"})
        self.workers[slot] = worker
        self.log.info("worker {slot} started (pid {pid})", slot=slot, pid=worker.pid)

    def worker_ready(self, worker: WorkerProcess) -> None:
        self.log.info("worker {slot} ready (pid {pid})", slot=worker.slot, pid=worker.pid)
        if self.all_ready():
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def all_ready(self) -> bool:
        return (len(self.workers) == self.count
                and all(worker.ready for worker in self.workers.values()))

    def when_all_ready(self) -> defer.Deferred:
        if self.all_ready():
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def worker_ended(self, worker: WorkerProcess, reason) -> None:
        self._exited_counters.update(_final_counters(worker.counters))
        if self.workers.get(worker.slot) is not worker:
            return
        del self.workers[worker.slot]
        if not self.running:
            self.log.info("worker {slot} (pid {pid}) exited: {reason}",
                          slot=worker.slot, pid=worker.pid, reason=reason)
            return
        delay = 0 if worker.ready else RESTART_BACKOFF
        self.restarts += 1
        self.log.warn("worker {slot} (pid {pid}) died: {reason}; restarting it in {delay}s",
                      slot=worker.slot, pid=worker.pid, reason=reason, delay=delay)
        self._restart_calls[worker.slot] = self._reactor.callLater(delay, self._spawn, worker.slot)

    def counters(self) -> dict:
        """Every worker's counters added up, those of exited workers included."""
        total = Counter(self._exited_counters)
        for worker in self.workers.values():
            total.update(worker.counters)
        return dict(total)

    def stopService(self):
        super().stopService()
        for call in self._restart_calls.values():
            call.cancel()
        self._restart_calls.clear()
        workers = list(self.workers.values())
        for worker in workers:
            worker.stop()
        finished = defer.DeferredList([w.when_ended() for w in workers], consumeErrors=True)
        finished.addTimeout(STOP_TIMEOUT, self._reactor, onTimeoutCancel=self._kill_remaining)
        return finished.addCallback(self._stopped)

    def _kill_remaining(self, result, timeout):
        remaining = [w for w in self.workers.values() if not w.exited]
        self.log.warn("{n} worker(s) still running {timeout}s after the stop: killing them",
                      n=len(remaining), timeout=timeout)
        for worker in remaining:
            worker.kill()
        killed = defer.DeferredList([w.when_ended() for w in remaining], consumeErrors=True)
        return killed.addTimeout(KILL_TIMEOUT, self._reactor)

    def _stopped(self, _):
        self.log.info("workers stopped; their counters: {counters}",
                      counters=unflatten(self.counters()).events)


def _final_counters(counters: dict) -> dict:
    """
    A dead worker's last counters, with every connection it had open
    counted as closed: they died with it, and the master's open-connections
    gauge (opened minus closed) must not keep them open for ever.
    """
    final = dict(counters)
    if CONNECTION_OPENED in final:
        final[CONNECTION_CLOSED] = final[CONNECTION_OPENED]
    return final


def worker_environment() -> dict:
    """
    The master's environment, with the directory holding this project on
    the workers' C{PYTHONPATH}: they are started as C{python -m ...}, which
    must find the same code wherever the master found it.
    """
    import marketplace
    root = os.path.dirname(os.path.dirname(os.path.abspath(marketplace.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env
