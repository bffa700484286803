"""
``twistd -n suite`` starts every system and logs where each one listens.
"""

from __future__ import annotations

import os
import re
import signal
import sys

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from marketplace import suite

STARTUP_TIMEOUT = 60.0


class _Twistd(protocol.ProcessProtocol):
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
            self.seen.errback(AssertionError(self.output.decode(errors="replace")[-3000:]))
        self.ended.callback(None)


class SuiteTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_twistd_suite_starts_every_system(self):
        twistd = _Twistd(re.compile(rb"system +listener +address"))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        reactor.spawnProcess(
            twistd, sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "--nodaemon", "--pidfile=", "--logfile=-", "suite"],
            env=env, path=directory)
        self.addCleanup(self._stop, twistd)
        yield twistd.seen.addTimeout(STARTUP_TIMEOUT, reactor)
        # The table is one log event, written once every listener is bound.
        output = twistd.output.decode()
        for name, _ in suite.SYSTEMS:
            self.assertRegex(output, rf"(?m)^\s*{name}\s+\S.*\s[\d.]+:\d+$")
        self.assertNotIn("Traceback", output)

    def _stop(self, twistd):
        if not twistd.ended.called:
            twistd.transport.signalProcess(signal.SIGTERM)
        return twistd.ended


class AddressTableTests(unittest.TestCase):
    def test_format(self):
        class FakeListener:
            name = "front"
            description = "tcp:7011"
            address = "0.0.0.0:7011"
        table = suite.AddressTable.format([("market", FakeListener())])
        self.assertEqual(table.splitlines(), [
            "system  listener  address",
            "market  front     0.0.0.0:7011",
        ])
