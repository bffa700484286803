"""
Running ``twistd`` with one of the project's plugins as a child process.
"""

from __future__ import annotations

import os
import re
import signal
import sys

from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ProcessExitedAlready

#: The project's root, put on the child's PYTHONPATH so it finds the plugins.
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TwistdProcess(protocol.ProcessProtocol):
    """
    Collects a ``twistd`` child's stdout and stderr together.

    ``seen`` fires with the output once ``marker`` appears in it, or fails
    if the process ends first, with the output's last error line (what it
    could not bind, say) ahead of the output's tail; ``ended`` fires with
    the exit code (``None`` when a signal ended it).
    """

    def __init__(self, marker: re.Pattern):
        self.marker = marker
        self.output = b""
        self.seen = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data
        if not self.seen.called and self.marker.search(self.output):
            self.seen.callback(self.output)

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.seen.called:
            self.seen.errback(AssertionError(self.failure_report(reason.value.exitCode)))
        self.ended.callback(reason.value.exitCode)

    def failure_report(self, code) -> str:
        output = self.output.decode(errors="replace")
        errors = re.findall(r"(?m)^(?:.*\] )?(\w+(?:\.\w+)*(?:Error|Exception)\b.*)$", output)
        reason = errors[-1] if errors else "no error was printed"
        tail = "\n".join(output.splitlines()[-40:])
        return (f"twistd exited (status {code}) before printing {self.marker.pattern!r}: "
                f"{reason}\n--- last lines of its output ---\n{tail}")


def spawn_twistd(testcase, marker: re.Pattern, *arguments: str,
                 process: TwistdProcess | None = None, env=None) -> TwistdProcess:
    """
    Start ``twistd --nodaemon ARGUMENTS`` in a fresh directory, logging to
    its stdout; the test's cleanup stops it if it is still running.
    ``process`` is the protocol to use (a ``TwistdProcess`` for ``marker``
    by default); ``env`` adds variables to the child's environment.
    """
    twistd = TwistdProcess(marker) if process is None else process
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(env or {})}
    env["PYTHONPATH"] = PROJECT
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    reactor.spawnProcess(
        twistd, sys.executable,
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "--nodaemon", "--pidfile=", "--logfile=-", *arguments],
        env=env, path=directory)

    def stop():
        if not twistd.ended.called:
            try:
                twistd.transport.signalProcess(signal.SIGTERM)
            except ProcessExitedAlready:
                pass  # its end is being reported: ``ended`` fires shortly
        return twistd.ended

    testcase.addCleanup(stop)
    return twistd
