"""
Tests for L{marketplace.branch.csvsource}.
"""

import csv
import io
import os
from decimal import Decimal

from twisted.internet.defer import maybeDeferred
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from marketplace.branch.csvsource import (
    REJECTED_SAMPLE,
    BranchSales,
    SalesFile,
    UnreadableSales,
    summarize,
)
from marketplace.metrics import Counters


def summary_of(text):
    return summarize(csv.reader(io.StringIO(text, newline="")))


class SummarizeTests(SynchronousTestCase):
    def test_spec_example(self):
        summary = summary_of("date,amount\n2025-01-01,100.25\n2025-01-02,250.50\n")
        self.assertEqual((summary.records, summary.subtotal), (2, Decimal("350.75")))
        self.assertTrue(summary.header_skipped)
        self.assertEqual(summary.rejected_count, 0)

    def test_first_row_kept_when_it_is_data(self):
        summary = summary_of("2025-01-01,100.25\n2025-01-02,250.50\n")
        self.assertEqual((summary.records, summary.subtotal), (2, Decimal("350.75")))
        self.assertFalse(summary.header_skipped)

    def test_sum_is_exact(self):
        summary = summary_of("date,amount\n" + "d,0.10\n" * 10 + "d,0.20\n")
        self.assertEqual(summary.subtotal, Decimal("1.20"))

    def test_sum_exact_beyond_default_precision(self):
        """
        Python's default context keeps 28 digits; the sum keeps them all,
        so it rounds to the right cent.
        """
        summary = summary_of(
            "date,amount\nd,1000000000000000000000.00\nd,0.005000000000000000000001\n"
        )
        self.assertEqual(
            summary.subtotal, Decimal("1000000000000000000000.005000000000000000000001")
        )

    def test_quoted_fields(self):
        summary = summary_of('date,amount\n"Jan 1, 2025","1200.50"\n"x","-0.50"\n')
        self.assertEqual((summary.records, summary.subtotal), (2, Decimal("1200.00")))

    def test_bad_rows_rejected_with_reasons(self):
        summary = summary_of(
            "date,amount\n2025-01-01,10.00\n2025-01-02,ten\n2025-01-03\n"
            "2025-01-04,1e9999\n2025-01-05,\n2025-01-06,NaN\n2025-01-07, 5 \n"
        )
        self.assertEqual((summary.records, summary.subtotal), (2, Decimal("15.00")))
        self.assertEqual(summary.rejected_count, 5)
        self.assertEqual([r.line for r in summary.rejected], [3, 4, 5, 6, 7])
        self.assertIn("'ten' is not a decimal number", summary.rejected[0].reason)
        self.assertIn("no amount column", summary.rejected[1].reason)

    def test_blank_lines_are_not_rows(self):
        summary = summary_of("\ndate,amount\n\n2025-01-01,1.00\n\n")
        self.assertEqual((summary.records, summary.rejected_count), (1, 0))

    def test_rejected_sample_bounded(self):
        summary = summary_of("date,amount\n" + "d,x\n" * (REJECTED_SAMPLE + 5))
        self.assertEqual(summary.rejected_count, REJECTED_SAMPLE + 5)
        self.assertEqual(len(summary.rejected), REJECTED_SAMPLE)


class SalesFileTests(SynchronousTestCase):
    def setUp(self):
        self.path = self.mktemp()

    def write(self, text, mtime=None):
        with open(self.path, "w", newline="") as f:
            f.write(text)
        if mtime is not None:
            os.utime(self.path, (mtime, mtime))

    def test_missing_file(self):
        with self.assertRaises(UnreadableSales) as raised:
            SalesFile(self.path).current()
        self.assertIn("No such file", str(raised.exception))

    def test_empty_file_is_unreadable(self):
        """
        A 0-byte file (not even a header) is answered as the existing
        servers answer it: cannot read, not zero records.
        """
        self.write("")
        with self.assertRaises(UnreadableSales) as raised:
            SalesFile(self.path).current()
        self.assertIn("empty", str(raised.exception))

    def test_header_only_file_has_no_records(self):
        self.write("date,amount\n")
        summary, _ = SalesFile(self.path).current()
        self.assertEqual(summary.records, 0)

    def test_directory(self):
        os.mkdir(self.path)
        self.assertRaises(UnreadableSales, SalesFile(self.path).current)

    def test_byte_order_mark(self):
        with open(self.path, "wb") as f:
            f.write(b"\xef\xbb\xbf2025-01-01,1.50\n")
        summary, _ = SalesFile(self.path).current()
        self.assertEqual((summary.records, summary.header_skipped), (1, False))

    def test_unchanged_file_read_once(self):
        self.write("date,amount\nd,1.00\n", mtime=1_000_000)
        sales = SalesFile(self.path)
        self.assertEqual(sales.current()[1], True)
        self.assertEqual(sales.current()[1], False)
        self.assertEqual(sales.current()[0].subtotal, Decimal("1.00"))
        self.assertEqual(sales.reads, 1)

    def test_changed_file_reflected(self):
        self.write("date,amount\nd,1.00\n", mtime=1_000_000)
        sales = SalesFile(self.path)
        sales.current()
        self.write("date,amount\nd,2.00\n", mtime=1_000_000)
        self.assertEqual(sales.current()[0].subtotal, Decimal("2.00"))
        self.write("date,amount\nd,3.00\n", mtime=1_000_001)
        self.assertEqual(sales.current()[0].subtotal, Decimal("3.00"))
        self.assertEqual(sales.reads, 3)

    def test_replaced_file_reflected(self):
        """
        A file renamed into place (a new inode) is re-read even when its
        size and mtime equal the old one's.
        """
        self.write("date,amount\nd,1.00\n", mtime=1_000_000)
        sales = SalesFile(self.path)
        sales.current()
        replacement = self.path + ".new"
        with open(replacement, "w") as f:
            f.write("date,amount\nd,7.00\n")
        os.utime(replacement, (1_000_000, 1_000_000))
        os.replace(replacement, self.path)
        self.assertEqual(sales.current()[0].subtotal, Decimal("7.00"))

    def test_recently_modified_file_not_cached(self):
        """
        A file modified just now may change again within the same mtime
        tick, so its summary is not reused.
        """
        self.write("date,amount\nd,1.00\n")
        sales = SalesFile(self.path)
        sales.current()
        self.assertEqual(sales.current()[1], True)


class BranchSalesTests(SynchronousTestCase):
    def setUp(self):
        self.path = self.mktemp()
        self.counters = Counters()
        self.sales = BranchSales("A", SalesFile(self.path), self.counters, run_blocking=maybeDeferred)

    def test_rejected_rows_logged_and_counted(self):
        with open(self.path, "w") as f:
            f.write("date,amount\nd,1.00\nd,oops\n")
        with capturedLogs() as events:
            summary = self.successResultOf(self.sales.summary())
        self.assertEqual(summary.records, 1)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["line"], 3)
        self.assertIn("oops", warnings[0]["reason"])
        self.assertEqual(self.counters.counts["branch.rows_rejected"], 1)

    def test_header_decision_logged(self):
        with open(self.path, "w") as f:
            f.write("date,amount\nd,1.00\n")
        with capturedLogs() as events:
            self.successResultOf(self.sales.summary())
        self.assertEqual([e.get("header") for e in events], ["skipped as a header"])

    def test_unreadable_fails_and_is_logged(self):
        with capturedLogs() as events:
            self.failureResultOf(self.sales.summary(), UnreadableSales)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.error])
        self.assertEqual(self.counters.counts["branch.csv_unreadable"], 1)
