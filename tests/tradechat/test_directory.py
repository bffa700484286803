"""
Name -> user id through the store's directory: the hash, the id space of each
profile, and the compatibility profile's accounts.
"""

from twisted.trial import unittest

from marketplace.tradechat import auth
from marketplace.tradechat.auth import Authenticator
from protocols import tradechat_bodies as bodies
from protocols.nsframe import Status

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


def _password_peer(harness, name, password):
    """Log C{name} in with its password proof; return the LOGIN response."""
    peer = harness.connect()
    hello = bodies.decode_hello_reply(peer.ask(bodies.Hello(name)).body)
    proof = auth.make_proof(auth.derive_client_key(password, hello.auth), name, hello.nonce)
    return peer.ask(bodies.Login(name, bodies.login_token(name, hello.nonce), proof))


def _anonymous_login(harness, name):
    peer = harness.connect()
    nonce = bodies.decode_hello_reply(peer.ask(bodies.Hello()).body).nonce
    return peer, peer.ask(bodies.Login(name, bodies.login_token(name, nonce)))


class AnonymousLeaseTests(unittest.TestCase):
    """
    Names without a password hold their user id on a lease: a flood of them
    can neither take the ids password accounts need nor keep ids it no
    longer uses.
    """

    def setUp(self):
        self.credential = auth.hash_password("alice", "s3cret", time_cost=1, memory_cost_kib=8,
                                             parallelism=1)
        self.authenticator = Authenticator({"alice": self.credential},
                                           decoy_secret=b"d" * 32)

    def harness(self, **config):
        config = TradeChatConfig(**{"session_ttl": 300.0, "anonymous_lease": 600.0, **config})
        return Harness(authenticator=self.authenticator, config=config,
                       idle_timeout=10_000.0, login_timeout=10_000.0)

    def test_a_compat_flood_of_anonymous_names_cannot_lock_out_a_password_account(self):
        harness = self.harness(compat=True, opening_balance=100)
        for n in range(compat.COMPAT_ACCOUNTS - 1):
            _, response = _anonymous_login(harness, f"flood{n}")
            self.assertEqual(response.status, Status.OK, n)
        _, refused = _anonymous_login(harness, "one more")
        self.assertEqual(refused.status, Status.SERVER_BUSY)
        self.assertEqual(harness.counters.counts["directory_full"], 1)
        response = _password_peer(harness, "alice", "s3cret")
        self.assertEqual(response.status, Status.OK)

    def test_ids_of_names_gone_for_a_lease_are_free_again(self):
        harness = self.harness(id_space=4)
        peers = [_anonymous_login(harness, f"gone{n}")[0] for n in range(3)]
        self.assertEqual(_anonymous_login(harness, "refused")[1].status, Status.SERVER_BUSY)
        for peer in peers:
            peer.protocol.connectionLost(None)
        harness.clock.advance(601)
        self.assertEqual(_anonymous_login(harness, "welcome")[1].status, Status.OK)
        self.assertEqual(_password_peer(harness, "alice", "s3cret").status, Status.OK)

    def test_a_logged_in_name_keeps_its_id_past_the_lease(self):
        harness = self.harness(id_space=4)
        peers = []
        for n in range(3):
            peer, response = _anonymous_login(harness, f"stays{n}")
            peers.append((peer, bodies.decode_login_reply(response.body).user_id))
        for _ in range(30):  # 3000 s, five leases, heartbeats every 100 s
            harness.clock.advance(100)
            for peer, _ in peers:
                self.assertEqual(peer.ask(bodies.Heartbeat()).status, Status.OK)
        self.assertEqual(_anonymous_login(harness, "latecomer")[1].status, Status.SERVER_BUSY)
        for peer, user_id in peers:
            self.assertEqual(peer.ask(bodies.Balance()).status, Status.OK)
            self.assertEqual(peer.protocol.state.user_id, user_id)

    def test_a_login_whose_id_was_lost_ends(self):
        harness = self.harness()
        peer, _ = _anonymous_login(harness, "bob")
        directory = harness.store.directory
        real = directory.user_id_for
        self.patch(directory, "user_id_for", lambda name, *args: real("not bob", *args))
        harness.clock.advance(200)
        self.assertEqual(peer.ask(bodies.Heartbeat()).status, Status.UNAUTHORIZED)
        self.assertIsNone(peer.protocol.state.user_id)
        self.assertEqual(peer.ask(bodies.Balance()).status, Status.UNAUTHORIZED)
        self.assertEqual(self.successResultOf(
            harness.store.sessions.sessions_of(str(home_slot("bob", FULL_ID_SPACE)))), [])

    def test_the_next_holder_of_an_id_gets_its_account_as_it_is_and_the_audit_holds(self):
        self.authenticator = Authenticator(decoy_secret=b"d" * 32)
        harness = self.harness(id_space=1, opening_balance=10)
        first, response = _anonymous_login(harness, "first")
        self.assertEqual(bodies.decode_login_reply(response.body), bodies.LoginReply(0, 10))
        self.assertEqual(first.ask(bodies.Deposit(25)).status, Status.OK)
        self.assertEqual(_anonymous_login(harness, "second")[1].status, Status.SERVER_BUSY)
        first.protocol.connectionLost(None)
        harness.clock.advance(601)
        _, response = _anonymous_login(harness, "second")
        self.assertEqual(bodies.decode_login_reply(response.body), bodies.LoginReply(0, 35))
        audit = self.successResultOf(harness.store.ledger.audit())
        self.assertTrue(audit.balanced)
        self.assertEqual((audit.accounts, audit.balance_total), (1, 35))

    def test_password_accounts_keep_their_id_for_good(self):
        harness = self.harness(id_space=4)
        alice = bodies.decode_login_reply(_password_peer(harness, "alice", "s3cret").body).user_id
        harness.clock.advance(10_000)
        self.assertEqual(bodies.decode_login_reply(
            _password_peer(harness, "alice", "s3cret").body).user_id, alice)
        for n in range(3):
            self.assertEqual(_anonymous_login(harness, f"other{n}")[1].status, Status.OK)
        self.assertEqual(_anonymous_login(harness, "full")[1].status, Status.SERVER_BUSY)
