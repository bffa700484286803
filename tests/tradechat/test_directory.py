"""
Name -> user id through the store's directory: the hash, the id space of each
profile, and the compatibility profile's accounts.
"""

from twisted.trial import unittest

from marketplace.store import UnknownAccount, make_store
from marketplace.store.directory_rules import FULL_ID_SPACE, RESERVED_ID, fnv1a_32, home_slot
from marketplace.tradechat import compat
from marketplace.tradechat.service import TradeChatConfig
from protocols.tradechat_bodies import NO_COUNTERPARTY
from tests.tradechat.helpers import Harness


class DirectoryRuleTests(unittest.TestCase):
    def test_fnv1a_reference_values(self):
        self.assertEqual(fnv1a_32(b""), 0x811C9DC5)
        self.assertEqual(fnv1a_32(b"a"), 0xE40C292C)
        self.assertEqual(fnv1a_32(b"foobar"), 0xBF9CF968)

    def test_reserved_id_is_the_wire_formats_no_counterparty(self):
        self.assertEqual(RESERVED_ID, NO_COUNTERPARTY)


class IdSpaceTests(unittest.TestCase):
    def test_id_space_follows_the_profile(self):
        self.assertEqual(TradeChatConfig().id_space, FULL_ID_SPACE)
        self.assertEqual(TradeChatConfig(compat=True).id_space, compat.COMPAT_ACCOUNTS)
        self.assertEqual(TradeChatConfig(id_space=64).id_space, 64)

    def test_login_gets_the_store_directorys_id(self):
        for compat_profile, id_space in ((False, FULL_ID_SPACE), (True, compat.COMPAT_ACCOUNTS)):
            with self.subTest(compat=compat_profile):
                harness = Harness(compat=compat_profile)
                peer = harness.connect()
                reply = peer.login("alice")
                self.assertEqual(reply.user_id, home_slot("alice", id_space))
                self.assertEqual(
                    self.successResultOf(harness.store.directory.user_id_for("alice", id_space)),
                    reply.user_id)

    def test_compat_ids_are_the_existing_servers(self):
        harness = Harness(compat=True)
        self.assertEqual(harness.connect().login("alice").user_id, 999)

    def test_services_sharing_a_store_agree_on_ids(self):
        """Two services (worker processes) on one store, logins in opposite orders."""
        harness = Harness(compat=True)
        names = []
        by_home = {}
        n = 0
        while not names:
            name = f"user{n}"
            clash = by_home.setdefault(home_slot(name, compat.COMPAT_ACCOUNTS), [])
            clash.append(name)
            if len(clash) == 3:
                names = clash
            n += 1
        first = [harness.connect().login(name).user_id for name in names]
        other = Harness(compat=True, store=harness.store)
        second = [other.connect().login(name).user_id for name in reversed(names)]
        self.assertEqual(second[::-1], first)
        self.assertEqual(len(set(first)), 3)


class CompatTests(unittest.TestCase):
    def test_provisioning_is_idempotent(self):
        store = make_store("memory")
        self.assertEqual(self.successResultOf(compat.provision_accounts(store.ledger)), 1024)
        self.successResultOf(store.ledger.withdraw("5", 10))
        self.assertEqual(self.successResultOf(compat.provision_accounts(store.ledger)), 0)
        self.assertEqual(self.successResultOf(store.ledger.balance("5")), 99990)
        self.assertEqual(self.successResultOf(store.ledger.balance("1023")), 100000)
        self.failureResultOf(store.ledger.balance("1024"), UnknownAccount)

    def test_compat_ids_stay_in_range(self):
        directory = make_store("memory").directory
        ids = [self.successResultOf(directory.user_id_for(f"u{t}_{i}", compat.COMPAT_ACCOUNTS))
               for t in range(16) for i in range(64)]
        self.assertEqual(sorted(ids), list(range(1024)))
