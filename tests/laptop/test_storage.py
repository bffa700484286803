"""
The write-ahead log and snapshots behind ``--data-dir``.
"""

import os
import stat

from twisted.trial import unittest

from marketplace.laptop.storage import FileStorage, Recovered, StorageCorrupt, StorageInUse
from protocols.laptop import Entry


def entry(n, view=1):
    return Entry(view, 1, n % 3, n)


class FileStorageTests(unittest.TestCase):
    def setUp(self):
        self.directory = self.mktemp()

    def reopen(self):
        storage = FileStorage(self.directory)
        self.addCleanup(storage.close)
        return storage, storage.load()

    def test_empty_directory(self):
        storage, recovered = self.reopen()
        self.assertEqual(recovered, Recovered())

    def test_vote_and_entries_survive(self):
        storage, _ = self.reopen()
        storage.save_vote(4, 2)
        storage.append(0, [entry(0), entry(1)])
        storage.append(2, [entry(2)])
        storage.close()
        _, recovered = self.reopen()
        self.assertEqual((recovered.view, recovered.voted_for), (4, 2))
        self.assertEqual(recovered.entries, (entry(0), entry(1), entry(2)))

    def test_overruled_suffix_is_replaced(self):
        storage, _ = self.reopen()
        storage.append(0, [entry(0), entry(1), entry(2)])
        storage.append(1, [entry(9, view=2)])
        storage.close()
        _, recovered = self.reopen()
        self.assertEqual(recovered.entries, (entry(0), entry(9, view=2)))

    def test_snapshot_truncates_log(self):
        storage, _ = self.reopen()
        storage.append(0, [entry(n) for n in range(5)])
        storage.save_snapshot(2, 1, ((0, 0), (1, 1), (2, 2)), [entry(3), entry(4)])
        storage.append(5, [entry(5)])
        storage.close()
        self.assertEqual(os.path.getsize(os.path.join(self.directory, "wal")), 3 * 24)
        _, recovered = self.reopen()
        self.assertEqual((recovered.snapshot_index, recovered.snapshot_view), (2, 1))
        self.assertEqual(recovered.records, ((0, 0), (1, 1), (2, 2)))
        self.assertEqual(recovered.entries, (entry(3), entry(4), entry(5)))

    def test_torn_last_record_dropped(self):
        storage, _ = self.reopen()
        storage.append(0, [entry(0), entry(1)])
        storage.close()
        with open(os.path.join(self.directory, "wal"), "ab") as handle:
            handle.write(b"\x00" * 10)
        storage, recovered = self.reopen()
        self.assertEqual(recovered.entries, (entry(0), entry(1)))
        storage.append(2, [entry(2)])
        storage.close()
        _, recovered = self.reopen()
        self.assertEqual(recovered.entries, (entry(0), entry(1), entry(2)))

    def test_a_directory_in_use_is_refused_until_its_user_closes(self):
        storage, _ = self.reopen()
        storage.append(0, [entry(0)])
        self.assertRaises(StorageInUse, FileStorage(self.directory).load)
        storage.close()
        _, recovered = self.reopen()
        self.assertEqual(recovered.entries, (entry(0),))

    def test_gap_is_corruption(self):
        storage, _ = self.reopen()
        storage.append(0, [entry(0)])
        storage.append(5, [entry(5)])
        storage.close()
        self.assertRaises(StorageCorrupt, FileStorage(self.directory).load)
        # a refused load lets go of the directory: the next one is refused for the same reason
        self.assertRaises(StorageCorrupt, FileStorage(self.directory).load)

    def test_bad_snapshot_is_corruption(self):
        os.makedirs(self.directory)
        with open(os.path.join(self.directory, "snapshot"), "wb") as handle:
            handle.write(b"LAPS" + b"\x00" * 20)
        self.assertRaises(StorageCorrupt, FileStorage(self.directory).load)

    def test_fsync_mode_makes_the_new_wal_entry_durable(self):
        synced = []
        real_fsync = os.fsync

        def recording_fsync(fd):
            synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
            real_fsync(fd)

        self.patch(os, "fsync", recording_fsync)
        storage = FileStorage(self.directory, fsync=True)
        self.addCleanup(storage.close)
        storage.load()
        self.assertEqual(synced, [True])

    def test_fsync_mode_writes_the_same(self):
        storage = FileStorage(self.directory, fsync=True)
        storage.load()
        storage.save_vote(1, None)
        storage.append(0, [entry(0)])
        storage.save_snapshot(0, 1, ((0, 0),), [])
        storage.close()
        _, recovered = self.reopen()
        self.assertEqual((recovered.view, recovered.voted_for, recovered.snapshot_index), (1, None, 0))
