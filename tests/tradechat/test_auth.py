"""
Password proofs bound to the connection nonce, the credentials file, and
the login policy, over the protocol.
"""

from twisted.trial import unittest

from marketplace.tradechat import auth
from marketplace.tradechat.auth import Authenticator
from protocols.tradechat_bodies import login_token
from protocols import tradechat_bodies as bodies
from protocols.nsframe import Status
from tests.tradechat.helpers import Harness

# Cheap Argon2id parameters keep the tests fast; production defaults are in auth.
FAST = dict(time_cost=1, memory_cost_kib=8, parallelism=1)


class ProofTests(unittest.TestCase):
    def setUp(self):
        self.credential = auth.hash_password("alice", "s3cret", **FAST)
        self.key = auth.derive_client_key("s3cret", self.credential.params)

    def test_right_password_verifies(self):
        proof = auth.make_proof(self.key, "alice", 1234)
        self.assertTrue(auth.verify_proof(self.credential, 1234, proof))

    def test_proof_does_not_replay_under_another_nonce(self):
        proof = auth.make_proof(self.key, "alice", 1234)
        self.assertFalse(auth.verify_proof(self.credential, 1235, proof))

    def test_wrong_password_fails(self):
        wrong = auth.derive_client_key("guess", self.credential.params)
        self.assertFalse(auth.verify_proof(self.credential, 1, auth.make_proof(wrong, "alice", 1)))

    def test_proof_of_wrong_length_fails(self):
        self.assertFalse(auth.verify_proof(self.credential, 1, b"short"))

    def test_stored_key_is_not_the_client_key(self):
        self.assertNotEqual(self.credential.stored_key, self.key)

    def test_credentials_file_round_trip(self):
        other = auth.hash_password("b:o:b", "pw", **FAST)
        text = "# comment\n\n" + "\n".join(auth.format_credential(c) for c in (self.credential, other))
        parsed = auth.parse_credentials(text)
        self.assertEqual(parsed, {"alice": self.credential, "b:o:b": other})

    def test_malformed_credentials_file(self):
        for text in ("alice:md5:1:2:3:AA==:AA==", "alice", "alice:argon2id:x:8:1:AA==:AA==",
                     "alice:argon2id:1:8:1:not-base64:AA==",
                     # parameters the HELLO reply's fields cannot carry
                     "alice:argon2id:1:65536:256:AA==:AA==", "alice:argon2id:0:8:1:AA==:AA=="):
            with self.subTest(text):
                self.assertRaises(auth.CredentialFileError, auth.parse_credentials, text)


class PolicyTests(unittest.TestCase):
    def setUp(self):
        self.credential = auth.hash_password("alice", "s3cret", **FAST)
        self.harness = Harness(authenticator=Authenticator({"alice": self.credential}))

    def login(self, peer, name, password=None, params_name=None):
        hello = bodies.decode_hello_reply(peer.ask(bodies.Hello(params_name or name)).body)
        proof = None
        if password is not None:
            proof = auth.make_proof(auth.derive_client_key(password, hello.auth), name, hello.nonce)
        return peer.ask(bodies.Login(name, login_token(name, hello.nonce), proof))

    def test_hello_with_a_name_returns_its_kdf_parameters(self):
        hello = bodies.decode_hello_reply(self.harness.connect().ask(bodies.Hello("alice")).body)
        self.assertEqual(hello.auth, self.credential.params)

    def test_unknown_names_get_stable_decoy_parameters(self):
        first = bodies.decode_hello_reply(self.harness.connect().ask(bodies.Hello("eve")).body)
        second = bodies.decode_hello_reply(self.harness.connect().ask(bodies.Hello("eve")).body)
        self.assertEqual(first.auth, second.auth)
        self.assertEqual(len(first.auth.salt), auth.SALT_BYTES)

    def test_password_login(self):
        response = self.login(self.harness.connect(), "alice", "s3cret")
        self.assertEqual(response.status, Status.OK)

    def test_wrong_password_is_unauthorized(self):
        response = self.login(self.harness.connect(), "alice", "nope")
        self.assertEqual(response.status, Status.UNAUTHORIZED)

    def test_account_with_password_refuses_crc_only_login(self):
        response = self.login(self.harness.connect(), "alice")
        self.assertEqual(response.status, Status.UNAUTHORIZED)

    def test_observed_proof_cannot_be_replayed(self):
        victim = self.harness.connect()
        hello = bodies.decode_hello_reply(victim.ask(bodies.Hello("alice")).body)
        key = auth.derive_client_key("s3cret", hello.auth)
        observed = bodies.Login("alice", login_token("alice", hello.nonce),
                                auth.make_proof(key, "alice", hello.nonce))
        self.assertEqual(victim.ask(observed).status, Status.OK)
        attacker = self.harness.connect()
        nonce = bodies.decode_hello_reply(attacker.ask(bodies.Hello()).body).nonce
        replay = bodies.Login("alice", login_token("alice", nonce), observed.proof)
        self.assertEqual(attacker.ask(replay).status, Status.UNAUTHORIZED)

    def test_crc_only_login_for_names_without_password(self):
        self.assertEqual(self.login(self.harness.connect(), "bob").status, Status.OK)

    def test_bytes_after_the_token_do_not_refuse_a_name_without_password(self):
        """The existing server ignores them: a proof-shaped tail included."""
        peer = self.harness.connect()
        nonce = bodies.decode_hello_reply(peer.ask(bodies.Hello()).body).nonce
        login = bodies.Login("bob", login_token("bob", nonce), b"\x00" * auth.KEY_BYTES)
        self.assertEqual(peer.ask(login).status, Status.OK)

    def test_require_password_refuses_crc_only_logins(self):
        harness = Harness(authenticator=Authenticator({"alice": self.credential},
                                                      require_password=True))
        self.assertEqual(self.login(harness.connect(), "bob").status, Status.UNAUTHORIZED)
        self.assertEqual(self.login(harness.connect(), "alice", "s3cret").status, Status.OK)
