"""
Append an aggregation run to main.csv, safely under any concurrency.

Format.  main.csv keeps the existing append-log rows, one per branch that
answered, so existing readers keep working::

    2026-11-22T02:04:12Z,B,2,30.30,2026-11-22T02:04:12Z

The grand total of each run goes to a separate file next to it,
C{main.totals.csv} for C{main.csv}, never into main.csv itself: an existing
reader that sums main.csv's subtotal column would otherwise count every sale
twice.  Its rows start with the same five columns (id C{TOTAL}), then how
many branches answered and how many were queried::

    2026-11-22T02:04:12Z,TOTAL,5,381.05,2026-11-22T02:04:12Z,2,3

Safety.  Any number of our aggregators and of the existing ones may write
main.csv at once.  The existing aggregators take an exclusive C{flock} on
main.csv itself; ours take that same lock and, before it, one on a
dedicated lock file (C{main.csv.lock}) that is never renamed, so two of ours
never even contend for main.csv's inode.  After main.csv's lock is granted
the path is checked to still name the locked file (an existing aggregator
renames a new file over it); if it does not, the lock is taken again on the
new file.  Under both locks the run's rows are appended to main.csv in
place, with one write, then fsynced: main.csv's inode never changes under
our hands, so an existing aggregator waiting on its lock is never left
holding a lock on a file that is no longer main.csv.  The totals file is
ours alone: its new version is written to a uniquely named temporary file,
fsynced, and renamed over it once main.csv's rows are durable, and the
directory is fsynced.  A failure before or during the append leaves both
files as they were (a partial append is cut off again); one after it is
reported as L{TotalsNotWritten}, since running again would repeat
main.csv's rows.  No file is opened through a symbolic link other than
main.csv's own path, which is resolved once, so a symlinked C{main.csv}
updates its target.

Threads.  All of this is blocking file I/O, so it runs after every branch has
been collected, in a worker thread (L{record_run} uses C{deferToThread}):
the reactor stays free for the long-running aggregator's timers and any
other service in the same process.
"""

import fcntl
import os
import secrets
import shutil
import stat
import time
from contextlib import contextmanager
from decimal import Decimal, localcontext

from twisted.internet.threads import deferToThread

from protocols.branch import MONEY_CONTEXT, format_amount

#: The id written in the totals file's rows.
TOTAL_ID = "TOTAL"


class LockTimeout(Exception):
    """
    Another writer held main.csv's lock for longer than we may wait.
    """


class TotalsNotWritten(Exception):
    """
    main.csv has the run's rows but the totals file could not be updated
    (or the update could not be made durable).  Running again would append
    the same rows to main.csv a second time.
    """


def totals_path(main_path):
    """
    Where the grand totals for C{main_path} are kept.
    """
    root, extension = os.path.splitext(main_path)
    return f"{root}.totals{extension or '.csv'}"


def lock_path(main_path):
    """
    The dedicated lock file for C{main_path}; it is never replaced.
    """
    return f"{main_path}.lock"


def format_timestamp(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def branch_rows(results, timestamp):
    """
    main.csv lines for the branches that answered, in query order.
    """
    return [
        f"{timestamp},{r.reply.branch_id},{r.reply.records},"
        f"{format_amount(r.reply.subtotal)},{timestamp}\n"
        for r in results
        if r.answered
    ]


def totals_row(results, timestamp):
    """
    The totals-file line for one run.  The subtotals are added exactly
    (L{MONEY_CONTEXT}): each may have 32 significant digits.
    """
    answered = [r.reply for r in results if r.answered]
    records = sum(reply.records for reply in answered)
    with localcontext(MONEY_CONTEXT):
        subtotal = sum((reply.subtotal for reply in answered), Decimal(0))
    return (
        f"{timestamp},{TOTAL_ID},{records},{format_amount(subtotal)},{timestamp},"
        f"{len(answered)},{len(results)}\n"
    )


def _flock_before(fd, deadline, path):
    """
    Take an exclusive C{flock} on C{fd}, waiting until C{deadline} at the
    most.  Polls with a non-blocking attempt so that a writer stuck elsewhere
    makes us fail with L{LockTimeout} instead of waiting forever.
    """
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(f"{path} still locked") from None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)


@contextmanager
def exclusive_lock(path, deadline):
    """
    Hold an exclusive C{flock} on C{path} (created if missing, never through
    a symbolic link).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    try:
        _flock_before(fd, deadline, path)
        yield
    finally:
        os.close(fd)


@contextmanager
def locked_main_file(path, deadline):
    """
    Open C{path} for appending (created if missing) and hold the existing
    aggregators' lock on it: an exclusive C{flock} on the file itself.

    They rename a new file over main.csv while holding that lock, so once it
    is granted the path must still name the file locked; if it does not,
    the lock is taken again on the file the path names now.  Yields the
    locked descriptor.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o666)
        try:
            _flock_before(fd, deadline, path)
            if _same_file(os.fstat(fd), path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _same_file(status, path):
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (status.st_dev, status.st_ino)


def append_rows(fd, lines):
    """
    Append C{lines} to the locked main.csv C{fd} with one write, then make
    them durable.  A last line left unterminated by some other writer's
    crash is terminated first, so our rows start on a line of their own.  A
    failed or short write is cut off again, leaving the file as it was.
    """
    size = os.fstat(fd).st_size
    data = "".join(lines).encode("utf-8")
    if size and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write: {written} of {len(data)} bytes")
        os.fsync(fd)
    except BaseException:
        os.ftruncate(fd, size)
        raise


def stage(path, lines):
    """
    Write C{path}'s current content followed by C{lines} to a new, uniquely
    named temporary file next to it, with C{path}'s mode, and make it
    durable; return the temporary file's name.

    The caller must hold the lock, and either rename the temporary file
    over C{path} (an atomic append) or remove it.  A last line left
    unterminated by some other writer's crash is kept and terminated, so
    our rows start on a line of their own.
    """
    directory = os.path.dirname(path)
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    )
    # 0o666 lets the umask decide a new file's mode, as for any new file.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_existing(path, out)
            out.write("".join(lines).encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        _remove_quietly(temporary)
        raise
    return temporary


def _copy_existing(path, out):
    try:
        original = os.fdopen(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), "rb")
    except FileNotFoundError:
        return
    with original:
        os.fchmod(out.fileno(), stat.S_IMODE(os.fstat(original.fileno()).st_mode))
        shutil.copyfileobj(original, out)
        if out.tell() > 0:
            original.seek(-1, os.SEEK_END)
            if original.read(1) != b"\n":
                out.write(b"\n")


def _remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_run(main_path, results, finished_at, lock_timeout):
    """
    Append one run's branch rows to main.csv and its total to the totals
    file, under both locks (see the module docstring).  Blocking.

    Everything that can reasonably fail on the totals file (reading it,
    writing and fsyncing its new version) is done before main.csv is
    touched; only its rename and the directory fsync remain afterwards.

    @raise LockTimeout: a lock was not obtained within C{lock_timeout};
        nothing was written.
    @raise OSError: a file could not be written; neither file changed.
    @raise TotalsNotWritten: main.csv has the rows, the totals file may not
        have the total.
    """
    main_path = os.path.realpath(main_path)
    totals = totals_path(main_path)
    timestamp = format_timestamp(finished_at)
    # Format every line before taking the lock: nothing that can fail on a
    # branch's values runs while other aggregators wait or a file is open.
    rows = branch_rows(results, timestamp)
    total = totals_row(results, timestamp)
    deadline = time.monotonic() + lock_timeout
    try:
        with exclusive_lock(lock_path(main_path), deadline), \
                locked_main_file(main_path, deadline) as main_fd:
            staged = stage(totals, [total])
            try:
                append_rows(main_fd, rows)
            except BaseException:
                _remove_quietly(staged)
                raise
            try:
                os.replace(staged, totals)
                _fsync_directory(os.path.dirname(main_path))
            except OSError as e:
                _remove_quietly(staged)
                raise TotalsNotWritten(
                    f"rows appended to {main_path}, but updating {totals} failed: {e}"
                ) from e
    except LockTimeout as e:
        raise LockTimeout(f"{e} after {lock_timeout:g}s") from None


def record_run(main_path, results, finished_at, lock_timeout, run_blocking=deferToThread):
    """
    L{write_run} in a worker thread.

    @return: a Deferred that fires with C{None} once both files are durable.
    """
    return run_blocking(write_run, main_path, results, finished_at, lock_timeout)
