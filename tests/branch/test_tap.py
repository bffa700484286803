"""
Tests for the C{branch} and C{branch-aggregator} plugins' options and
services, and for tapfiles/branches.tac.
"""

import os
import socket

from twisted.application.internet import TimerService
from twisted.application.service import IServiceCollection, loadApplication
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from marketplace.branch import aggregator_tap, tap
from marketplace.branch.aggregate import Limits
from marketplace.net import Listener
from tests.support.services import listeners_of

TAC = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "tapfiles",
    "branches.tac",
)


class BranchOptionsTests(SynchronousTestCase):
    def parse(self, *args):
        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self):
        options = self.parse()
        self.assertEqual(
            (options["listen"], options["id"], options["csv"]), ("tcp:5001", "A", "branchA.csv")
        )

    def test_bad_ids(self):
        for bad, message in [
            ("", "must not be empty"),
            ("A B", "whitespace"),
            ("A" * 64, "at most 63"),
            ("A,B", "commas"),
        ]:
            with self.assertRaises(usage.UsageError) as raised:
                self.parse("--id", bad)
            self.assertIn(message, str(raised.exception))

    def test_bad_listen(self):
        self.assertRaises(usage.UsageError, self.parse, "--listen", "tcp:notaport")

    def test_bad_limits(self):
        self.assertRaises(usage.UsageError, self.parse, "--idle-timeout", "-1")
        self.assertRaises(usage.UsageError, self.parse, "--max-request", "4")

    def test_make_service(self):
        service = tap.makeService(self.parse("--id", "B", "--listen", "tcp:0"))
        [listener] = listeners_of(service)
        self.assertEqual(listener.description, "tcp:0")
        self.assertEqual(listener.factory.sales.branch_id, "B")


class AggregatorOptionsTests(SynchronousTestCase):
    def parse(self, *args):
        options = aggregator_tap.Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self):
        options = self.parse()
        self.assertEqual(options["branches"], ["tcp:127.0.0.1:5001"])
        self.assertEqual((options["main"], options["interval"]), ("main.csv", 60.0))

    def test_branches(self):
        options = self.parse("--branch", "tcp:a:5001", "--branch", "tls:b:5002")
        self.assertEqual(options["branches"], ["tcp:a:5001", "tls:b:5002"])

    def test_bad_branch(self):
        self.assertRaises(usage.UsageError, self.parse, "--branch", "tcp:a:notaport")

    def test_make_service(self):
        options = self.parse("--interval", "5", "--branch", "tcp:a:5001", "--reply-timeout", "2")
        service = aggregator_tap.makeService(options)
        [timer] = [s for s in service if isinstance(s, TimerService)]
        self.assertEqual(timer.step, 5.0)
        main, branches, limits, lock_timeout, _, _ = timer.call[1]
        self.assertEqual((main, branches, limits.reply), ("main.csv", ["tcp:a:5001"], 2.0))


class TacTests(SynchronousTestCase):
    def test_two_branches_one_process(self):
        application = loadApplication(TAC, "python")
        listeners = listeners_of(IServiceCollection(application))
        self.assertEqual(
            [(l.factory.sales.branch_id, l.description) for l in listeners],
            [("A", "tcp:5001"), ("B", "tcp:5002")],
        )
        self.assertTrue(all(isinstance(l, Listener) for l in listeners))


class SuiteTests(SynchronousTestCase):
    def test_branch_in_suite(self):
        from marketplace.suite import Options as SuiteOptions
        options = SuiteOptions()
        options.parseOptions(["--branch-port", "5101", "--interface", "127.0.0.1"])
        [listener] = listeners_of(tap.suite_service(options))
        self.assertEqual(listener.description, "tcp:5101:interface=127.0.0.1")
        self.assertEqual(listener.factory.sales.branch_id, "A")


class AggregateAndLogTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_failed_run_logged_not_raised(self):
        """
        A run that cannot write main.csv is logged and does not fail, so
        the interval timer keeps running.
        """
        refusing = socket.socket()
        self.addCleanup(refusing.close)
        refusing.bind(("127.0.0.1", 0))
        endpoint = f"tcp:127.0.0.1:{refusing.getsockname()[1]}"
        main = os.path.join(self.mktemp(), "missing-directory", "main.csv")
        with capturedLogs() as events:
            result = yield aggregator_tap.aggregate_and_log(
                main, [endpoint], Limits(connect=1, reply=1, run=2), 1.0, reactor
            )
        self.assertIsNone(result)
        messages = [formatEvent(event) for event in events]
        self.assertTrue(any("unreachable" in message for message in messages), messages)
        self.assertTrue(any("cannot write" in message for message in messages), messages)
