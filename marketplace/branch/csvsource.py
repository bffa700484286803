"""
A branch's sales figures, read from its CSV file.

The file is the branch's source of truth and may be rewritten at any time by
another program, so every request checks it; but re-parsing an unchanged file
for every aggregator would waste the branch's time, so the parsed result is
cached against the file's identity, size and timestamps.

Reading happens in a worker thread (L{BranchSales.summary}) because a large
or slow file would otherwise stall every other connection on the reactor.
"""

import csv
import os
import re
import threading
import time
from decimal import Decimal

import attrs
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from protocols.branch import MONEY_CONTEXT

#: How many rejected rows to keep for the log; the count is always exact.
REJECTED_SAMPLE = 20

# Filesystems stamp mtimes with a granularity of up to 2 s (FAT; ext4 and
# tmpfs use a clock tick).  A file modified within that window of our read
# may change again without its mtime moving, so such a read is never reused.
_RACY_WINDOW_NS = 2_000_000_000

# Plain decimal notation only: what a spreadsheet or C's printf writes.  An
# exponent form such as 1e999999 is rejected rather than summed.
_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class UnreadableSales(Exception):
    """
    The CSV file cannot be read at all; the branch answers with an error.
    """


@attrs.frozen
class RejectedRow:
    """
    A data row left out of the totals, and why.
    """

    line: int
    reason: str


@attrs.frozen
class SalesSummary:
    """
    The totals a branch reports, plus what was left out of them.

    @ivar header_skipped: whether the first row was a header (not a data
        row) and was therefore skipped.
    @ivar rejected_count: how many data rows were rejected; C{rejected}
        holds the first L{REJECTED_SAMPLE} of them.
    """

    records: int
    subtotal: Decimal
    header_skipped: bool
    rejected_count: int = 0
    rejected: tuple = ()


def parse_amount(text):
    """
    Return the amount in C{text} as an exact L{Decimal}, or C{None}.
    """
    text = text.strip()
    if _AMOUNT.fullmatch(text) is None:
        return None
    return Decimal(text)


def summarize(rows):
    """
    Total the C{(date, amount, ...)} rows produced by a C{csv.reader}.

    The first non-blank row is skipped only when its amount column does not
    parse: existing servers skip it unconditionally, which silently drops
    the first sale of a file without a header.  Blank lines are not rows.
    Amounts are added in L{MONEY_CONTEXT}, so the sum is exact whatever
    their digits (the default context would round it to 28 digits).
    """
    records = 0
    subtotal = Decimal(0)
    header_skipped = False
    rejected = []
    rejected_count = 0
    first = True
    for line, row in enumerate(rows, start=1):
        if not row or all(not field.strip() for field in row):
            continue
        amount = parse_amount(row[1]) if len(row) > 1 else None
        if first:
            first = False
            if amount is None:
                header_skipped = True
                continue
        if amount is None:
            rejected_count += 1
            if len(rejected) < REJECTED_SAMPLE:
                rejected.append(RejectedRow(line, _rejection_reason(row)))
            continue
        records += 1
        subtotal = MONEY_CONTEXT.add(subtotal, amount)
    return SalesSummary(
        records=records,
        subtotal=subtotal,
        header_skipped=header_skipped,
        rejected_count=rejected_count,
        rejected=tuple(rejected),
    )


def _rejection_reason(row):
    if len(row) < 2:
        return f"no amount column in {row!r}"
    return f"amount {row[1][:40]!r} is not a decimal number"


@attrs.frozen
class _Signature:
    """
    What identifies one version of a file without reading it.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, stat):
        return cls(
            stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns
        )


class SalesFile:
    """
    A CSV file whose summary is re-parsed only when the file changed.

    Thread-safe: L{current} may run in several worker threads at once.
    """

    def __init__(self, path):
        self.path = path
        self.reads = 0
        self._lock = threading.Lock()
        self._cached = None

    def current(self):
        """
        Return C{(summary, reread)}, where C{reread} says whether the file
        was parsed for this call.  Blocking.

        @raise UnreadableSales: the file is missing, unreadable or not CSV.
        """
        try:
            signature = _Signature.of(os.stat(self.path))
        except OSError as e:
            raise UnreadableSales(f"{self.path}: {e.strerror}") from e
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] == signature:
            return cached[1], False
        summary, signature, reusable = self._read()
        with self._lock:
            self.reads += 1
            self._cached = (signature, summary) if reusable else None
        return summary, True

    def _read(self):
        started_ns = time.time_ns()
        try:
            with open(
                self.path, newline="", encoding="utf-8-sig", errors="replace"
            ) as f:
                signature = _Signature.of(os.fstat(f.fileno()))
                if signature.size == 0:
                    # Not even a header: a file truncated or not yet written,
                    # as the existing servers also judge it.
                    raise UnreadableSales(f"{self.path}: the file is empty")
                summary = summarize(csv.reader(f))
        except OSError as e:
            raise UnreadableSales(f"{self.path}: {e.strerror}") from e
        except csv.Error as e:
            raise UnreadableSales(f"{self.path}: not valid CSV: {e}") from e
        reusable = signature.mtime_ns < started_ns - _RACY_WINDOW_NS
        return summary, signature, reusable


class BranchSales:
    """
    The Deferred-returning face of one branch's sales file, for protocols.

    Parsing runs through C{run_blocking} (a worker thread by default) and
    its findings (header or not, rejected rows) are logged, back on the
    reactor thread, each time the file is actually re-read.
    """

    log = Logger()

    def __init__(self, branch_id, sales_file, counters, run_blocking=deferToThread):
        self.branch_id = branch_id
        self._file = sales_file
        self._counters = counters
        self._run_blocking = run_blocking
        self._last_logged = None

    def summary(self):
        """
        @return: a Deferred firing with the current L{SalesSummary}, or
            failing with L{UnreadableSales}.
        """
        d = self._run_blocking(self._file.current)
        d.addCallbacks(self._reported, self._unreadable)
        return d

    def _reported(self, result):
        summary, reread = result
        if reread:
            self._counters.increment("branch.csv_reads")
            if summary != self._last_logged:
                self._last_logged = summary
                self._log_findings(summary)
        return summary

    def _unreadable(self, failure):
        failure.trap(UnreadableSales)
        self._counters.increment("branch.csv_unreadable")
        self._last_logged = None
        self.log.error(
            "branch {branch_id}: cannot read sales: {reason}",
            branch_id=self.branch_id,
            reason=str(failure.value),
        )
        return failure

    def _log_findings(self, summary):
        self.log.info(
            "branch {branch_id}: read {path}: {records} records, subtotal "
            "{subtotal}, first row {header}",
            branch_id=self.branch_id,
            path=self._file.path,
            records=summary.records,
            subtotal=summary.subtotal,
            header="skipped as a header" if summary.header_skipped else "is data",
        )
        if summary.rejected_count:
            self._counters.increment("branch.rows_rejected", summary.rejected_count)
        for row in summary.rejected:
            self.log.warn(
                "branch {branch_id}: rejected row {line} of {path}: {reason}",
                branch_id=self.branch_id,
                line=row.line,
                path=self._file.path,
                reason=row.reason,
            )
        if summary.rejected_count > len(summary.rejected):
            self.log.warn(
                "branch {branch_id}: {more} more rejected rows in {path}",
                branch_id=self.branch_id,
                more=summary.rejected_count - len(summary.rejected),
                path=self._file.path,
            )
