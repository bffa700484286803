"""
Tests for the C{branch-aggregate} command, L{marketplace.branch.cli}.
"""

import io
import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from marketplace.branch.cli import (
    EXIT_BRANCHES_FAILED,
    EXIT_TOTALS_NOT_WRITTEN,
    EXIT_WRITE_FAILED,
    Options,
    main,
    run,
)
from marketplace.branch.mainfile import totals_path
from marketplace.branch.tap import branch_listener
from marketplace.options import EXIT_USAGE
from tests.support.services import listening_port, start_service


class OptionsTests(SynchronousTestCase):
    def test_parses_endpoints_and_timeouts(self):
        options = Options()
        options.parseOptions(
            ["--connect-timeout", "1.5", "main.csv", "tcp:a:5001", "tls:b:5002"]
        )
        self.assertEqual(options["main"], "main.csv")
        self.assertEqual(options["endpoints"], ("tcp:a:5001", "tls:b:5002"))
        self.assertEqual(options["connect-timeout"], 1.5)

    def test_needs_an_endpoint(self):
        self.assertRaises(usage.UsageError, Options().parseOptions, ["main.csv"])

    def test_rejects_bad_endpoint(self):
        with self.assertRaises(usage.UsageError) as raised:
            Options().parseOptions(["main.csv", "tcp:a:notaport"])
        self.assertIn("tcp:a:notaport", str(raised.exception))

    def test_usage_error_exit_status(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as raised:
            main(["main.csv"])
        self.assertEqual(raised.exception.code, EXIT_USAGE)
        self.assertIn("give at least one branch ENDPOINT", err.getvalue())

    def test_rejects_non_positive_timeout(self):
        self.assertRaises(
            usage.UsageError, Options().parseOptions, ["--run-timeout", "0", "m", "tcp:a:1"]
        )


class RunTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def run_cli(self, *args):
        options = Options()
        options.parseOptions(["--connect-timeout", "1", "--reply-timeout", "1", *args])
        out, err = io.StringIO(), io.StringIO()
        with self.assertRaises(SystemExit) as raised:
            yield run(reactor, options, out, err)
        return raised.exception.code, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def branch(self, branch_id, csv_text):
        path = self.mktemp()
        if csv_text is not None:
            with open(path, "w") as f:
                f.write(csv_text)
        listener = start_service(
            self, branch_listener(branch_id, path, listen="tcp:0:interface=127.0.0.1")
        )
        return f"tcp:127.0.0.1:{(yield listening_port(listener))}"

    @inlineCallbacks
    def test_all_answered(self):
        a = yield self.branch("A", "date,amount\n2025-01-01,100.25\n2025-01-02,250.50\n")
        b = yield self.branch("B", "date,amount\nx,30.30\n")
        main = os.path.join(self.mktemp(), "main.csv")
        os.mkdir(os.path.dirname(main))
        code, out, err = yield self.run_cli(main, a, b)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out.splitlines()[:2],
            [f"{a} ok branch=A records=2 subtotal=350.75", f"{b} ok branch=B records=1 subtotal=30.30"],
        )
        with open(main) as f:
            self.assertEqual([line.split(",")[1:4] for line in f], [["A", "2", "350.75"], ["B", "1", "30.30"]])

    @inlineCallbacks
    def test_failures_summarised_on_stderr(self):
        a = yield self.branch("A", "date,amount\n2025-01-01,1.00\n")
        missing = yield self.branch("M", None)
        main = os.path.join(self.mktemp(), "main.csv")
        os.mkdir(os.path.dirname(main))
        code, out, err = yield self.run_cli(main, a, missing)
        self.assertEqual(code, EXIT_BRANCHES_FAILED)
        self.assertIn(f"{missing} error branch says: cannot read CSV", out)
        self.assertIn("1 of 2 branches did not answer", err)
        self.assertIn(f"{missing} error", err)
        with open(main) as f:
            self.assertEqual(len(f.readlines()), 1)

    @inlineCallbacks
    def test_unwritable_main(self):
        a = yield self.branch("A", "date,amount\n2025-01-01,1.00\n")
        main = os.path.join(self.mktemp(), "missing-directory", "main.csv")
        code, out, err = yield self.run_cli(main, a)
        self.assertEqual(code, EXIT_WRITE_FAILED)
        self.assertIn("cannot write", err)
        self.assertIn(f"{a} ok branch=A", out)

    @inlineCallbacks
    def test_totals_not_written_has_its_own_status(self):
        """
        Rows appended but no total is not exit 3, which means the run may
        be repeated.
        """
        a = yield self.branch("A", "date,amount\n2025-01-01,1.00\n")
        main = os.path.join(os.path.realpath(self.mktemp()), "main.csv")
        os.mkdir(os.path.dirname(main))
        replace = os.replace

        def failing_for_totals(source, destination):
            if destination == totals_path(main):
                raise OSError(28, "No space left on device", destination)
            replace(source, destination)

        self.patch(os, "replace", failing_for_totals)
        code, out, err = yield self.run_cli(main, a)
        self.assertEqual(code, EXIT_TOTALS_NOT_WRITTEN)
        self.assertIn(f"rows appended to {main}", err)
        self.assertIn("do not run again", err)
        with open(main) as f:
            self.assertEqual(len(f.readlines()), 1)
