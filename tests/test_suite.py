"""
``twistd -n suite`` starts every system and logs where each one listens.
"""

from __future__ import annotations

import re

from twisted.internet import defer, reactor
from twisted.trial import unittest

from marketplace import suite
from tests.support.twistd import spawn_twistd

STARTUP_TIMEOUT = 60.0


class SuiteTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_twistd_suite_starts_every_system(self):
        twistd = spawn_twistd(self, re.compile(rb"system +listener +address"), "suite")
        yield twistd.seen.addTimeout(STARTUP_TIMEOUT, reactor)
        # The table is one log event, written once every listener is bound.
        output = twistd.output.decode()
        for name, _ in suite.SYSTEMS:
            self.assertRegex(output, rf"(?m)^\s*{name}\s+\S.*\s[\d.]+:\d+$")
        self.assertNotIn("Traceback", output)


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
