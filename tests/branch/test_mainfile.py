"""
Tests for L{marketplace.branch.mainfile}: format, atomic replacement, the
dedicated lock, and no lost rows under 20 concurrent aggregator processes.
"""

import fcntl
import os
import re
import stat
import sys
from decimal import Decimal

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from marketplace.branch.aggregate import OK, TIMEOUT, BranchResult
from marketplace.branch import mainfile
from marketplace.branch.mainfile import (
    LockTimeout,
    TotalsNotWritten,
    locked_main_file,
    lock_path,
    totals_path,
    write_run,
)
from marketplace.branch.tap import branch_listener
from protocols.branch import BranchReply
from tests.support.services import listening_port, start_service

# 2026-11-22T02:04:12Z, the captured row's time.
CAPTURED_AT = 1795313052

MAIN_ROW = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ),([^,\s]+),(\d+),(-?\d+\.\d\d),\1\n"
)
TOTALS_ROW = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ),TOTAL,(\d+),(-?\d+\.\d\d),\1,(\d+),(\d+)\n"
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def answered(branch_id, records, subtotal):
    return BranchResult(
        f"tcp:host:{branch_id}", OK, reply=BranchReply(branch_id, records, Decimal(subtotal))
    )


RESULTS = [
    answered("B", 2, "30.30"),
    BranchResult("tcp:host:9", TIMEOUT, reason="not connected within 3s"),
    answered("A", 3, "350.75"),
]


def read(path):
    with open(path) as f:
        return f.read()


def leftovers(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


class WriteRunTests(SynchronousTestCase):
    def setUp(self):
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.main = os.path.join(self.directory, "main.csv")

    def test_creates_files_in_existing_format(self):
        write_run(self.main, RESULTS, CAPTURED_AT, lock_timeout=1)
        self.assertEqual(
            read(self.main),
            "2026-11-22T02:04:12Z,B,2,30.30,2026-11-22T02:04:12Z\n"
            "2026-11-22T02:04:12Z,A,3,350.75,2026-11-22T02:04:12Z\n",
        )
        self.assertEqual(totals_path(self.main), os.path.join(self.directory, "main.totals.csv"))
        self.assertEqual(
            read(totals_path(self.main)),
            "2026-11-22T02:04:12Z,TOTAL,5,381.05,2026-11-22T02:04:12Z,2,3\n",
        )
        self.assertEqual(leftovers(self.directory), [])
        self.assertTrue(os.path.exists(lock_path(self.main)))

    def test_longest_subtotals_keep_every_row(self):
        """
        Subtotals with as many digits as a reply may carry (more than the
        default decimal context's 28) are written and totalled exactly,
        along with every other branch's row.
        """
        largest = "9" * 30 + ".99"
        results = [answered("B", 1, largest), answered("C", 1, largest), *RESULTS]
        write_run(self.main, results, CAPTURED_AT, lock_timeout=1)
        self.assertEqual(
            [line.split(",")[1:4] for line in read(self.main).splitlines()],
            [["B", "1", largest], ["C", "1", largest], ["B", "2", "30.30"], ["A", "3", "350.75"]],
        )
        self.assertEqual(
            read(totals_path(self.main)).split(",")[2:4], ["7", "2" + "0" * 27 + "381.03"]
        )

    def test_appends_and_keeps_mode(self):
        with open(self.main, "w") as f:
            f.write("2026-11-22T02:04:12Z,B,2,30.30,2026-11-22T02:04:12Z\n")
        os.chmod(self.main, 0o640)
        write_run(self.main, RESULTS[:1], CAPTURED_AT + 60, lock_timeout=1)
        lines = read(self.main).splitlines(keepends=True)
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[1], "2026-11-22T02:05:12Z,B,2,30.30,2026-11-22T02:05:12Z\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.main).st_mode), 0o640)

    def test_torn_last_line_terminated(self):
        with open(self.main, "w") as f:
            f.write("2026-11-22T02:04:12Z,B,2,3")
        write_run(self.main, RESULTS[:1], CAPTURED_AT, lock_timeout=1)
        lines = read(self.main).splitlines(keepends=True)
        self.assertEqual(lines[0], "2026-11-22T02:04:12Z,B,2,3\n")
        self.assertRegex(lines[1], MAIN_ROW)

    def test_no_answers_still_records_the_run(self):
        write_run(self.main, RESULTS[1:2], CAPTURED_AT, lock_timeout=1)
        self.assertEqual(read(self.main), "")
        self.assertEqual(
            read(totals_path(self.main)),
            "2026-11-22T02:04:12Z,TOTAL,0,0.00,2026-11-22T02:04:12Z,0,1\n",
        )

    def test_symlinked_main_updates_target(self):
        target = os.path.join(self.directory, "real.csv")
        with open(target, "w"):
            pass
        os.symlink("real.csv", self.main)
        write_run(self.main, RESULTS, CAPTURED_AT, lock_timeout=1)
        self.assertTrue(os.path.islink(self.main))
        self.assertEqual(len(read(target).splitlines()), 2)

    def test_lock_held_elsewhere(self):
        fd = os.open(lock_path(self.main), os.O_RDWR | os.O_CREAT)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.assertRaises(LockTimeout, write_run, self.main, RESULTS, CAPTURED_AT, 0.05)
        self.assertFalse(os.path.exists(self.main))

    def test_waits_for_the_existing_aggregators_lock_on_main_csv(self):
        """
        The existing aggregators flock main.csv itself; while one holds it,
        ours writes nothing.
        """
        with open(self.main, "w") as f:
            f.write("2026-11-22T02:04:12Z,B,2,30.30,2026-11-22T02:04:12Z\n")
        fd = os.open(self.main, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.assertRaises(LockTimeout, write_run, self.main, RESULTS, CAPTURED_AT, 0.05)
        self.assertEqual(len(read(self.main).splitlines()), 1)
        self.assertFalse(os.path.exists(totals_path(self.main)))
        fcntl.flock(fd, fcntl.LOCK_UN)
        write_run(self.main, RESULTS, CAPTURED_AT, 1)
        self.assertEqual(len(read(self.main).splitlines()), 3)

    def test_lock_retaken_when_main_csv_was_renamed_over_while_waiting(self):
        """
        An existing aggregator renames a new main.csv over the one whose lock
        we waited for; the lock granted on the old file is not enough, and
        the rows go to the file the path names now.
        """
        with open(self.main, "w") as f:
            f.write("old\n")
        flock_before = mainfile._flock_before
        renamed = []

        def existing_aggregator_renames_first(fd, deadline, path):
            if not renamed:
                replacement = self.main + ".theirs"
                with open(replacement, "w") as f:
                    f.write("old\ntheirs\n")
                os.replace(replacement, self.main)
                renamed.append(os.stat(self.main).st_ino)
            flock_before(fd, deadline, path)

        self.patch(mainfile, "_flock_before", existing_aggregator_renames_first)
        with locked_main_file(self.main, deadline=float("inf")) as fd:
            self.assertEqual(os.fstat(fd).st_ino, renamed[0])
        write_run(self.main, RESULTS, CAPTURED_AT, 1)
        self.assertEqual(read(self.main).splitlines()[:2], ["old", "theirs"])
        self.assertEqual(len(read(self.main).splitlines()), 4)

    def test_appends_in_place(self):
        """
        main.csv keeps its inode: an existing aggregator waiting on its lock
        is then waiting on the live file.
        """
        open(self.main, "w").close()
        inode = os.stat(self.main).st_ino
        write_run(self.main, RESULTS, CAPTURED_AT, 1)
        self.assertEqual(os.stat(self.main).st_ino, inode)

    def test_symlinked_lock_file_is_not_followed(self):
        target = os.path.join(self.directory, "elsewhere")
        os.symlink(target, lock_path(os.path.realpath(self.main)))
        self.assertRaises(OSError, write_run, self.main, RESULTS, CAPTURED_AT, 1)
        self.assertFalse(os.path.exists(target))
        self.assertFalse(os.path.exists(self.main))

    def test_symlinked_totals_file_is_not_copied(self):
        secret = os.path.join(self.directory, "secret")
        with open(secret, "w") as f:
            f.write("do not copy\n")
        os.symlink(secret, totals_path(os.path.realpath(self.main)))
        self.assertRaises(OSError, write_run, self.main, RESULTS, CAPTURED_AT, 1)
        self.assertFalse(os.path.exists(self.main) and read(self.main))
        self.assertEqual(leftovers(self.directory), [])

    def test_failed_append_is_cut_off(self):
        with open(self.main, "w") as f:
            f.write("kept\n")
        real_write = os.write

        def short_write(fd, data):
            return real_write(fd, data[:5])

        self.patch(os, "write", short_write)
        self.assertRaises(OSError, write_run, self.main, RESULTS, CAPTURED_AT, 1)
        self.assertEqual(read(self.main), "kept\n")
        self.assertFalse(os.path.exists(totals_path(self.main)))
        self.assertEqual(leftovers(self.directory), [])

    def test_failed_write_leaves_no_temporary_file(self):
        os.mkdir(totals_path(self.main))
        self.assertRaises(OSError, write_run, self.main, RESULTS, CAPTURED_AT, 1)
        self.assertEqual(leftovers(self.directory), [])


    def test_unwritable_totals_changes_neither_file(self):
        """
        When the totals file cannot be written, main.csv is left as it was,
        so the run can be repeated without duplicating rows.
        """
        with open(self.main, "w") as f:
            f.write("2026-11-22T02:04:12Z,B,2,30.30,2026-11-22T02:04:12Z\n")
        os.mkdir(totals_path(self.main))
        self.assertRaises(OSError, write_run, self.main, RESULTS, CAPTURED_AT, 1)
        self.assertEqual(read(self.main), "2026-11-22T02:04:12Z,B,2,30.30,2026-11-22T02:04:12Z\n")

    def test_totals_rename_failure_says_rows_were_appended(self):
        """
        If the totals file cannot be replaced once main.csv has been, the
        error says so: it is not an I{OSError}, which means nothing changed.
        """
        totals = totals_path(os.path.realpath(self.main))
        replace = os.replace

        def failing_for_totals(source, destination):
            if destination == totals:
                raise PermissionError(13, "Permission denied", destination)
            replace(source, destination)

        self.patch(os, "replace", failing_for_totals)
        with self.assertRaises(TotalsNotWritten) as raised:
            write_run(self.main, RESULTS, CAPTURED_AT, lock_timeout=1)
        self.assertIn(f"rows appended to {os.path.realpath(self.main)}", str(raised.exception))
        self.assertIn("Permission denied", str(raised.exception))
        self.assertEqual(len(read(self.main).splitlines()), 2)
        self.assertFalse(os.path.exists(totals))
        self.assertEqual(leftovers(self.directory), [])


class _Exit(ProcessProtocol):
    def __init__(self):
        self.ended = Deferred()
        self.output = []

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback((reason.value.exitCode, b"".join(self.output)))


class ConcurrentAggregatorsTests(TestCase):
    """
    The existing aggregators lost rows when five ran at once; twenty of
    ours, real processes started together, lose none.
    """

    timeout = 90
    processes = 20

    @inlineCallbacks
    def start_branches(self, directory):
        endpoints = []
        for branch_id, amounts in [("A", ["1.10", "2.20"]), ("B", ["3.30"]), ("C", [])]:
            path = os.path.join(directory, f"branch{branch_id}.csv")
            with open(path, "w") as f:
                f.write("date,amount\n" + "".join(f"d,{a}\n" for a in amounts))
            listener = start_service(
                self, branch_listener(branch_id, path, listen="tcp:0:interface=127.0.0.1")
            )
            endpoints.append(f"tcp:127.0.0.1:{(yield listening_port(listener))}")
        return endpoints

    def run_ours(self, main, endpoints, count):
        env = dict(os.environ, PYTHONPATH=REPO)
        runs = []
        for _ in range(count):
            protocol = _Exit()
            argv = [sys.executable, "-m", "marketplace.branch.cli", "--run-timeout", "30",
                    "--reply-timeout", "30", "--lock-timeout", "60", main, *endpoints]
            reactor.spawnProcess(protocol, sys.executable, argv, env=env, path=REPO)
            runs.append(protocol.ended)
        return runs

    @inlineCallbacks
    def test_ours_beside_the_existing_aggregator(self):
        """
        Ours and a process appending the existing aggregators' way (flock on
        main.csv, rename over it) run at once; neither loses a row.
        """
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        endpoints = yield self.start_branches(directory)
        main = os.path.join(directory, "main.csv")
        open(main, "w").close()
        stop = os.path.join(directory, "stop")
        theirs = _Exit()
        script = os.path.join(REPO, "tests", "branch", "existing_aggregator.py")
        reactor.spawnProcess(theirs, sys.executable, [sys.executable, script, main, stop],
                             env=dict(os.environ), path=REPO)
        ours = 8
        outcomes = yield gatherResults(self.run_ours(main, endpoints, ours))
        open(stop, "w").close()
        code, appended = yield theirs.ended
        self.assertEqual([code, *(code for code, _ in outcomes)], [0] * (ours + 1), outcomes)
        lines = read(main).splitlines()
        existing = [line for line in lines if ",EXISTING," in line]
        self.assertEqual(len(existing), int(appended))
        self.assertEqual(len(lines) - len(existing), 3 * ours)

    @inlineCallbacks
    def test_twenty_aggregators_one_main_csv(self):
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        endpoints = yield self.start_branches(directory)
        main = os.path.join(directory, "main.csv")
        runs = self.run_ours(main, endpoints, self.processes)
        outcomes = yield gatherResults(runs)
        self.assertEqual([code for code, _ in outcomes], [0] * self.processes, outcomes)

        main_text = read(main)
        rows = MAIN_ROW.findall(main_text)
        self.assertEqual(len(main_text.splitlines()), 3 * self.processes)
        self.assertEqual(len(rows), 3 * self.processes, "torn or foreign line in main.csv")
        self.assertEqual(
            sorted((branch, records, subtotal) for _, branch, records, subtotal in rows),
            sorted([("A", "2", "3.30"), ("B", "1", "3.30"), ("C", "0", "0.00")] * self.processes),
        )
        totals_text = read(totals_path(main))
        totals = TOTALS_ROW.findall(totals_text)
        self.assertEqual(len(totals_text.splitlines()), self.processes)
        self.assertEqual({row[1:] for row in totals}, {("3", "6.60", "3", "3")})
        self.assertEqual(leftovers(directory), [])
