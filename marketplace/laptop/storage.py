"""
What a replica keeps across restarts in its data directory (``--data-dir``,
on by default): its view and vote, a write-ahead log of entries, and a
snapshot of the book that lets the log be truncated.  With ``--memory-only``
a replica keeps nothing (``MemoryStorage``), which is unsafe across
restarts: it comes back empty and votes at once.

Files in the data directory:

``meta``      view (int32), voted_for (int32, -1 = none); replaced atomically.
``snapshot``  ``LAPS``, index (int64), view (int32), count (int32), then
              count x (customer int32, last order int32); replaced atomically.
``lock``      empty; held (``flock``) by the process using the directory.
``wal``       24-byte records: index (int64), view, opcode, customer, order
              (int32 each).  A record whose index is not above the previous
              one overrules the suffix from that index (a new primary
              replaced it), so the file is only ever appended to between
              snapshots.  A torn last record (crash mid-write) is dropped.

Writes are flushed to the operating system before a replica acknowledges
them, which survives the process being killed; ``fsync=True`` also survives
losing the machine, at a cost per batch.
"""

import fcntl
import os
import struct
from typing import Optional, Sequence, Tuple

import attrs
from twisted.logger import Logger

from protocols.laptop import Entry

_META = struct.Struct(">ii")
_SNAPSHOT_HEAD = struct.Struct(">4sqii")
_SNAPSHOT_MAGIC = b"LAPS"
_RECORD = struct.Struct(">ii")
_WAL_RECORD = struct.Struct(">qiiii")


@attrs.frozen
class Recovered:
    view: int = 0
    voted_for: Optional[int] = None
    snapshot_index: int = -1
    snapshot_view: int = -1
    records: Tuple[Tuple[int, int], ...] = ()
    entries: Tuple[Entry, ...] = ()


class MemoryStorage:
    """
    Keeps nothing: a restarted replica starts empty, yet votes and counts
    toward majorities at once, so it can help elect a primary that lacks an
    acknowledged order.  For simulations and ``--memory-only`` runs.
    """

    durable = False

    def load(self) -> Recovered:
        return Recovered()

    def save_vote(self, view: int, voted_for: Optional[int]) -> None:
        pass

    def append(self, first_index: int, entries: Sequence[Entry]) -> None:
        pass

    def save_snapshot(self, index, view, records, entries_after) -> None:
        pass

    def close(self) -> None:
        pass


class StorageCorrupt(Exception):
    """A data file is unreadable; the replica refuses to start rather than forget orders."""


class StorageInUse(Exception):
    """
    Another process holds the data directory: two replicas appending to one
    write-ahead log would corrupt it, so the second refuses to start.
    """


class FileStorage:
    log = Logger()
    durable = True

    def __init__(self, directory: str, fsync: bool = False):
        self.directory = directory
        self.fsync = fsync
        self._wal = None
        self._lock = None

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _replace(self, name: str, data: bytes) -> None:
        temporary = self._path(name + ".tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        os.replace(temporary, self._path(name))
        self._sync_directory()

    def _sync_directory(self) -> None:
        """With C{fsync}, make the directory's entries (a rename, a new file) durable too."""
        if self.fsync:
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def load(self) -> Recovered:
        os.makedirs(self.directory, exist_ok=True)
        self._hold_directory()
        try:
            return self._recover()
        except BaseException:
            self.close()
            raise

    def _hold_directory(self) -> None:
        lock = open(self._path("lock"), "ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StorageInUse(f"{self.directory} is in use by another replica "
                               "(started from the same directory?)") from None
        self._lock = lock

    def _recover(self) -> Recovered:
        view, voted_for = 0, None
        if os.path.exists(self._path("meta")):
            with open(self._path("meta"), "rb") as handle:
                data = handle.read()
            if len(data) != _META.size:
                raise StorageCorrupt("meta has %d bytes" % (len(data),))
            view, voted = _META.unpack(data)
            voted_for = None if voted < 0 else voted
        snapshot_index, snapshot_view, records = self._load_snapshot()
        entries = self._replay_wal(snapshot_index)
        self._wal = open(self._path("wal"), "ab")
        # The first start creates the wal: without its directory entry on
        # disk, entries fsynced into it could vanish with the machine.
        self._sync_directory()
        return Recovered(view, voted_for, snapshot_index, snapshot_view, records, tuple(entries))

    def _load_snapshot(self):
        path = self._path("snapshot")
        if not os.path.exists(path):
            return -1, -1, ()
        with open(path, "rb") as handle:
            data = handle.read()
        if len(data) < _SNAPSHOT_HEAD.size:
            raise StorageCorrupt("snapshot header truncated")
        magic, index, view, count = _SNAPSHOT_HEAD.unpack_from(data)
        if magic != _SNAPSHOT_MAGIC or len(data) != _SNAPSHOT_HEAD.size + count * _RECORD.size:
            raise StorageCorrupt("snapshot does not match its header")
        records = tuple(_RECORD.iter_unpack(data[_SNAPSHOT_HEAD.size :]))
        return index, view, records

    def _replay_wal(self, base_index: int) -> list:
        path = self._path("wal")
        if not os.path.exists(path):
            return []
        with open(path, "rb") as handle:
            data = handle.read()
        whole = len(data) - len(data) % _WAL_RECORD.size
        if whole != len(data):
            self.log.warn("dropping a torn record at the end of {path}", path=path)
            with open(path, "r+b") as handle:
                handle.truncate(whole)
        entries = []
        for index, view, opcode, customer, order in _WAL_RECORD.iter_unpack(data[:whole]):
            if index <= base_index:
                continue
            expected = base_index + len(entries) + 1
            if index > expected:
                raise StorageCorrupt("wal skips from index %d to %d" % (expected - 1, index))
            del entries[index - base_index - 1 :]
            entries.append(Entry(view, opcode, customer, order))
        return entries

    def save_vote(self, view: int, voted_for: Optional[int]) -> None:
        self._replace("meta", _META.pack(view, -1 if voted_for is None else voted_for))

    def append(self, first_index: int, entries: Sequence[Entry]) -> None:
        pack = _WAL_RECORD.pack
        self._wal.write(
            b"".join(
                [
                    pack(first_index + offset, e.view, e.opcode, e.customer_id, e.order_number)
                    for offset, e in enumerate(entries)
                ]
            )
        )
        self._wal.flush()
        if self.fsync:
            os.fsync(self._wal.fileno())

    def save_snapshot(self, index, view, records, entries_after) -> None:
        body = b"".join([_RECORD.pack(customer, order) for customer, order in records])
        self._replace(
            "snapshot", _SNAPSHOT_HEAD.pack(_SNAPSHOT_MAGIC, index, view, len(records)) + body
        )
        self._wal.close()
        pack = _WAL_RECORD.pack
        self._replace(
            "wal",
            b"".join(
                [
                    pack(index + 1 + offset, e.view, e.opcode, e.customer_id, e.order_number)
                    for offset, e in enumerate(entries_after)
                ]
            ),
        )
        self._wal = open(self._path("wal"), "ab")

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()
            self._wal = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
