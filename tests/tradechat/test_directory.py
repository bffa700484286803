"""FNV-1a name -> id mapping with linear probing, and the compatibility profile."""

from twisted.trial import unittest

from marketplace.store import make_store
from marketplace.tradechat import compat, directory as directory_module
from marketplace.tradechat.directory import DirectoryFull, NameDirectory, fnv1a_32
from protocols.tradechat_bodies import NO_COUNTERPARTY


class DirectoryTests(unittest.TestCase):
    def test_fnv1a_reference_values(self):
        self.assertEqual(fnv1a_32(b""), 0x811C9DC5)
        self.assertEqual(fnv1a_32(b"a"), 0xE40C292C)
        self.assertEqual(fnv1a_32(b"foobar"), 0xBF9CF968)

    def test_home_slot_then_linear_probing(self):
        directory = NameDirectory(id_space=8)
        names = [f"user{n}" for n in range(40)]
        home = {name: fnv1a_32(name.encode()) % 8 for name in names}
        first = names[0]
        clash = next(name for name in names[1:] if home[name] == home[first])
        self.assertEqual(self.successResultOf(directory.user_id_for(first)), home[first])
        self.assertEqual(self.successResultOf(directory.user_id_for(clash)), (home[first] + 1) % 8)
        self.assertEqual(self.successResultOf(directory.user_id_for(first)), home[first])

    def test_no_counterparty_id_is_never_given_out(self):
        self.patch(directory_module, "fnv1a_32", lambda data: NO_COUNTERPARTY)
        directory = NameDirectory()
        self.assertEqual(self.successResultOf(directory.user_id_for("unlucky")), 0)
        self.assertEqual(self.successResultOf(directory.user_id_for("next")), 1)

    def test_full_directory(self):
        directory = NameDirectory(id_space=4)
        ids = {self.successResultOf(directory.user_id_for(f"n{n}")) for n in range(4)}
        self.assertEqual(ids, {0, 1, 2, 3})
        self.failureResultOf(directory.user_id_for("one too many"), DirectoryFull)
        self.assertIn(self.successResultOf(directory.user_id_for("n0")), ids)


class CompatTests(unittest.TestCase):
    def test_provisioning_is_idempotent(self):
        store = make_store("memory")
        self.assertEqual(self.successResultOf(compat.provision_accounts(store.ledger)), 1024)
        self.successResultOf(store.ledger.withdraw("5", 10))
        self.assertEqual(self.successResultOf(compat.provision_accounts(store.ledger)), 0)
        self.assertEqual(self.successResultOf(store.ledger.balance("5")), 99990)
        self.assertEqual(self.successResultOf(store.ledger.balance("1023")), 100000)
        self.failureResultOf(store.ledger.balance("1024"))

    def test_compat_ids_stay_in_range(self):
        directory = compat.compat_directory()
        ids = [self.successResultOf(directory.user_id_for(f"u{t}_{i}")) for t in range(16)
               for i in range(64)]
        self.assertEqual(sorted(ids), list(range(1024)))
