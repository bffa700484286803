# -*- test-case-name: tests.tradechat.test_workers -*-
"""
The worker side of L{marketplace.supervisor}: running one service tree in a
process its master spawned.

The worker accepts on the listening descriptor it inherited, reports to the
master on descriptor 4 (ready once its service runs, then its counters every
second and once more when it stops), and stops on end of file on its stdin,
which comes when the master asks it to stop and when the master dies, or on
SIGTERM.  SIGINT is ignored: a Ctrl-C at a terminal reaches the whole
process group, and the master, which gets it too, stops the workers in
order.  Stopping is the service tree's own graceful stop; the process exits
when it is done.
"""

from __future__ import annotations

import os
import signal
import sys

from twisted.internet import stdio, task
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, eventAsText, globalLogBeginner
from zope.interface import implementer

from marketplace.supervisor import STATUS_FD
from protocols.workerstatus import encode_status

REPORT_INTERVAL = 1.0


@implementer(IHalfCloseableProtocol)
class MasterLink(Protocol):
    """
    The worker's end of its pipes to the master: reads nothing but end of
    file from stdin, writes status lines to L{STATUS_FD}.
    """

    def __init__(self, on_master_gone) -> None:
        self._on_master_gone = on_master_gone

    def dataReceived(self, data: bytes) -> None:
        """The master writes nothing; whatever arrives is ignored."""

    def readConnectionLost(self) -> None:
        self._on_master_gone()

    def writeConnectionLost(self) -> None:
        """The master no longer reads (it died): reports go nowhere."""

    def report(self, kind: str, counters=None) -> None:
        if self.transport is not None and self.connected:
            self.transport.write(encode_status(kind, counters))


def _log_to_stderr() -> None:
    """One line per event, without a timestamp: the master's log adds its own."""
    def observer(event):
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        try:
            sys.stderr.write(text.replace("\n", "\n  ") + "\n")
            sys.stderr.flush()
        except OSError:
            pass  # the master is gone; the worker is stopping
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def run_worker(root, counters, reactor) -> int:
    """
    Run service tree C{root} until the master goes or says stop.
    C{counters} returns the worker's counters (name -> int) to report.

    @return: the process's exit status.
    """
    log = Logger()
    _log_to_stderr()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_status = [0]
    stopping_once = []

    def stop():
        if reactor.running and not stopping_once:
            stopping_once.append(True)
            reactor.stop()

    link = MasterLink(stop)
    stdio.StandardIO(link, stdin=0, stdout=STATUS_FD, reactor=reactor)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(stop))
    reporting = task.LoopingCall(lambda: link.report("counters", counters()))
    reporting.clock = reactor

    def start():
        try:
            root.startService()
        except Exception:
            log.failure("the worker could not start")
            exit_status[0] = 1
            stop()
            return
        link.report("ready")
        reporting.start(REPORT_INTERVAL, now=False)

    def stopping():
        if reporting.running:
            reporting.stop()
        if not root.running:
            return None
        return root.stopService()

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    _final_report(counters())
    return exit_status[0]


def _final_report(counters: dict) -> None:
    """
    The counters once the service has stopped, written directly: the reactor
    no longer runs to flush a transport.  The leading newline ends any line
    the transport left half-written.
    """
    try:
        os.write(STATUS_FD, b"\n" + encode_status("counters", counters))
    except OSError:
        pass  # the master is gone
