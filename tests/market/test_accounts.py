"""
User-name rules and argon2id password hashing off the reactor thread.
"""

from twisted.internet import defer
from twisted.trial import unittest

from marketplace.market import accounts
from marketplace.market.errors import ClientError


def run_inline(function, *args):
    """Stands in for deferToThread so the test needs no thread pool."""
    return defer.maybeDeferred(function, *args)


class PasswordTests(unittest.TestCase):
    def setUp(self):
        self.passwords = accounts.Passwords(accounts.CHEAP_COST, defer_to_thread=run_inline)

    def test_hash_is_argon2id_and_salted(self):
        first = self.successResultOf(self.passwords.hash("pw"))
        second = self.successResultOf(self.passwords.hash("pw"))
        self.assertTrue(first.startswith("$argon2id$"))
        self.assertNotEqual(first, second)

    def test_verify(self):
        encoded = self.successResultOf(self.passwords.hash("pw"))
        self.assertTrue(self.successResultOf(self.passwords.verify(encoded, "pw")))
        self.assertFalse(self.successResultOf(self.passwords.verify(encoded, "PW")))
        self.assertFalse(self.successResultOf(self.passwords.verify("not a hash", "pw")))

    @defer.inlineCallbacks
    def test_hashing_runs_in_a_thread_by_default(self):
        passwords = accounts.Passwords(accounts.CHEAP_COST)
        encoded = yield passwords.hash("pw")
        self.assertTrue((yield passwords.verify(encoded, "pw")))


class NameTests(unittest.TestCase):
    def test_user_names(self):
        self.assertEqual(accounts.username({"username": "bea.b-1_x"}), "bea.b-1_x")
        for bad in ("ab", "x" * 33, "bea b", "bé", 7, None):
            self.assertRaises(ClientError, accounts.username, {"username": bad})

    def test_passwords_and_roles(self):
        self.assertRaises(ClientError, accounts.password, {"password": ""})
        self.assertRaises(ClientError, accounts.password, {"password": "x" * 129})
        self.assertRaises(ClientError, accounts.role, "admin")
