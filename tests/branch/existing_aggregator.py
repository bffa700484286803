"""
Re-enacts how the existing C aggregators append to main.csv, for tests that
run ours beside them: open main.csv (it must exist), take an exclusive
flock on that file, copy it to the one temporary name they all share, add a
row, fsync, rename the copy over main.csv, and only then let the lock go.

Run as ``python existing_aggregator.py MAIN_CSV STOP_FILE``: appends rows of
branch ``EXISTING``, one run per row, until STOP_FILE exists (or 20 s or
100,000 rows have passed), then prints how many it appended and exits 0.
"""

import fcntl
import os
import shutil
import sys
import time


def append_like_the_existing_aggregator(main_path, row):
    fd = os.open(main_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        temporary = main_path + ".tmp"
        with open(main_path, "rb") as original, open(temporary, "wb") as copy:
            shutil.copyfileobj(original, copy)
            copy.write(row.encode())
            copy.flush()
            os.fsync(copy.fileno())
        os.rename(temporary, main_path)
    finally:
        os.close(fd)


def main(main_path, stop_file):
    deadline = time.monotonic() + 20
    rows = 0
    while rows < 100_000 and time.monotonic() < deadline and not os.path.exists(stop_file):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        append_like_the_existing_aggregator(main_path, f"{stamp},EXISTING,{rows},1.00,{stamp}\n")
        rows += 1
    print(rows)


if __name__ == "__main__":
    main(*sys.argv[1:])
