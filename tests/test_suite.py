"""
``twistd -n suite`` starts every system and logs where each one listens.
"""

from __future__ import annotations

import re
import socket

from twisted.internet import defer, reactor
from twisted.python import usage
from twisted.trial import unittest

from marketplace import suite
from tests.support.services import free_ports
from tests.support.twistd import spawn_twistd

STARTUP_TIMEOUT = 60.0

#: The suite's port options, in the order free_ports fills them.
PORT_OPTIONS = ("branch", "tradechat", "customer-db", "product-db", "payments",
                "seller-front", "buyer-front")


def suite_arguments() -> list[str]:
    """Every port of the suite on a free loopback port: no test needs a default port."""
    ports = free_ports(len(PORT_OPTIONS) + 3)
    arguments = ["--interface", "127.0.0.1"]
    for name, port in zip(PORT_OPTIONS, ports):
        arguments += [f"--{name}-port", str(port)]
    return arguments + ["--laptop-ports", ",".join(map(str, ports[-3:]))]


class SuiteTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_twistd_suite_starts_every_system(self):
        arguments = suite_arguments()
        twistd = spawn_twistd(self, re.compile(rb"system +listener +address"), "suite",
                              *arguments)
        yield twistd.seen.addTimeout(STARTUP_TIMEOUT, reactor)
        # The table is one log event, written once every listener is bound.
        output = twistd.output.decode()
        for name, _ in suite.SYSTEMS:
            self.assertRegex(output, rf"(?m)^\s*{name}\s+\S.*\s127\.0\.0\.1:\d+$")
        for port in arguments[3::2]:
            for number in port.split(","):
                self.assertIn(f"127.0.0.1:{number}", output)
        self.assertNotIn("Traceback", output)

    @defer.inlineCallbacks
    def test_a_port_in_use_is_named(self):
        """A suite that cannot bind says which address, and fails once."""
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        arguments = suite_arguments()
        arguments[arguments.index("--branch-port") + 1] = str(taken.getsockname()[1])
        twistd = spawn_twistd(self, re.compile(rb"system +listener +address"), "suite",
                              *arguments)
        error = yield self.assertFailure(twistd.seen.addTimeout(STARTUP_TIMEOUT, reactor),
                                         AssertionError)
        self.assertIn(f"CannotListenError: Couldn't listen on 127.0.0.1:{taken.getsockname()[1]}",
                      str(error).splitlines()[0])


class OptionsTests(unittest.TestCase):
    def test_defaults_are_each_systems_own(self):
        options = suite.Options()
        options.parseOptions([])
        self.assertEqual((options["branch-port"], options["buyer-front-port"],
                          options["laptop-ports"], options["session-ttl"]),
                         (5001, 7011, [8080, 8081, 8082], 300.0))
        self.assertEqual(options.endpoint(5001), "tcp:5001")
        self.assertEqual(options.endpoint(7001, loopback=True), "tcp:7001:interface=127.0.0.1")

    def test_interface(self):
        options = suite.Options()
        options.parseOptions(["--interface", "127.0.0.1"])
        self.assertEqual(options.endpoint(9000), "tcp:9000:interface=127.0.0.1")

    def test_session_ttl_reaches_the_customer_db(self):
        from marketplace.market import tap as market_tap
        built = []
        original = market_tap.CustomerDbService

        def recording(*arguments):
            built.append(arguments)
            return original(*arguments)

        self.patch(market_tap, "CustomerDbService", recording)
        options = suite.Options()
        options.parseOptions(["--session-ttl", "42"])
        market_tap.suite_service(options)
        [arguments] = built
        self.assertEqual(arguments[-1], 42.0)

    def test_bad_ports_are_usage_errors(self):
        for arguments in (["--branch-port", "70000"], ["--laptop-ports", "1,2"],
                          ["--laptop-ports", "a,b,c"], ["--session-ttl", "0"]):
            self.assertRaises(usage.UsageError, suite.Options().parseOptions, arguments)


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
