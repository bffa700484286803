"""
``twistd -n suite`` starts every system and logs where each one listens.
"""

from __future__ import annotations

import re
import socket
import sys

from twisted.internet import defer, reactor
from twisted.python import usage
from twisted.trial import unittest

from marketplace import suite
from tests.support.services import free_ports
from tests.support.twistd import spawn_twistd

STARTUP_TIMEOUT = 60.0

#: How many times a suite is started on fresh ports when one was taken before it bound it.
START_ATTEMPTS = 5

#: How the suite reports a port it could not bind, first in the failure's report.
PORT_IN_USE = re.compile(r"CannotListenError: Couldn't listen on 127\.0\.0\.1:(\d+): "
                         r".*Address already in use")

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


def port_in_use(error: AssertionError) -> int | None:
    """The port a suite that failed to start could not bind, if that is why it failed."""
    found = PORT_IN_USE.search(str(error).splitlines()[0])
    return int(found.group(1)) if found else None


@defer.inlineCallbacks
def start_suite(testcase, held: int | None = None):
    """
    Start ``twistd suite`` with every port on a free loopback port (the
    branch port on ``held``, a port the test holds, when given); fire with
    the process and its arguments once it printed its address table.

    free_ports closes the ports it found before the child binds them, so
    another process may take one first: when the child fails because a
    port other than ``held`` is in use, it is started again on fresh ports,
    at most START_ATTEMPTS times.  Any other failure is the test's.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        arguments = suite_arguments()
        if held is not None:
            arguments[arguments.index("--branch-port") + 1] = str(held)
        twistd = spawn_twistd(testcase, re.compile(rb"system +listener +address"), "suite",
                              *arguments)
        try:
            yield twistd.seen.addTimeout(STARTUP_TIMEOUT, reactor)
        except AssertionError as error:
            if attempt == START_ATTEMPTS or port_in_use(error) in (None, held):
                raise
        else:
            return twistd, arguments


class SuiteTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_twistd_suite_starts_every_system(self):
        twistd, arguments = yield start_suite(self)
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
        error = yield self.assertFailure(start_suite(self, held=taken.getsockname()[1]),
                                         AssertionError)
        self.assertIn(f"CannotListenError: Couldn't listen on 127.0.0.1:{taken.getsockname()[1]}",
                      str(error).splitlines()[0])

    @defer.inlineCallbacks
    def test_a_port_taken_before_the_suite_binds_it_is_replaced(self):
        """
        Another process may take a port between free_ports and the suite's
        bind: the suite is started again on fresh ports.
        """
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        picks = [[taken.getsockname()[1], *free_ports(len(PORT_OPTIONS) + 2)]]
        fresh = free_ports
        self.patch(sys.modules[__name__], "free_ports",
                   lambda count: picks.pop() if picks else fresh(count))
        twistd, arguments = yield start_suite(self)
        self.assertEqual(picks, [])
        self.assertNotIn(str(taken.getsockname()[1]), arguments)
        branch_port = arguments[arguments.index("--branch-port") + 1]
        self.assertIn(f"127.0.0.1:{branch_port}", twistd.output.decode())

    def test_port_in_use_reads_only_an_address_in_use(self):
        bound = AssertionError("twistd exited (status 1) before printing b'x': "
                               "twisted.internet.error.CannotListenError: Couldn't listen on "
                               "127.0.0.1:56285: [Errno 98] Address already in use.\n"
                               "--- last lines of its output ---")
        refused = AssertionError("twistd exited (status 1) before printing b'x': "
                                 "twisted.internet.error.CannotListenError: Couldn't listen on "
                                 "127.0.0.1:80: [Errno 13] Permission denied.")
        later = AssertionError("twistd exited (status 1) before printing b'x': ValueError: no\n"
                               "CannotListenError: Couldn't listen on 127.0.0.1:5: "
                               "[Errno 98] Address already in use.")
        self.assertEqual([port_in_use(bound), port_in_use(refused), port_in_use(later)],
                         [56285, None, None])


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
