"""
Tests for the argument rules of L{marketplace.store.ledger_rules} where they
live: every backend checks amounts, accounts and idempotency lifetimes with
these, so a moved bound fails here whatever the backend.
"""

from twisted.trial import unittest

from marketplace.store import ledger_rules as rules
from marketplace.store.errors import InvalidAmount, SelfTransfer

#: The largest integer a double holds exactly (see the module's docstring).
LARGEST_EXACT = 9007199254740991


class AmountTests(unittest.SynchronousTestCase):
    def test_an_amount_is_an_int_from_one_to_the_largest_exact_double(self):
        for amount in (1, 2, LARGEST_EXACT):
            self.assertEqual(rules.check_amount(amount), amount)
        for amount in (0, -1, LARGEST_EXACT + 1, True, 1.0, "1", None):
            self.assertRaises(InvalidAmount, rules.check_amount, amount)

    def test_an_opening_balance_may_be_zero(self):
        for amount in (0, 1, LARGEST_EXACT):
            self.assertEqual(rules.check_opening_balance(amount), amount)
        for amount in (-1, LARGEST_EXACT + 1, False, 0.0, "0"):
            self.assertRaises(InvalidAmount, rules.check_opening_balance, amount)

    def test_the_bounds_are_the_largest_exact_double(self):
        self.assertEqual((rules.MAX_AMOUNT, rules.MAX_BALANCE), (LARGEST_EXACT, LARGEST_EXACT))

    def test_the_refusal_names_the_bound(self):
        with self.assertRaises(InvalidAmount) as raised:
            rules.check_amount(0)
        self.assertEqual(str(raised.exception), f"amount must be an integer in 1..{LARGEST_EXACT}: 0")


class AccountTests(unittest.SynchronousTestCase):
    def test_an_account_is_a_non_empty_string(self):
        self.assertEqual(rules.check_account("a"), "a")
        for account in ("", None, 1, b"a"):
            self.assertRaises(InvalidAmount, rules.check_account, account)

    def test_a_single_operation_checks_its_account_and_amount(self):
        self.assertIsNone(rules.check_single("a", 1))
        self.assertRaises(InvalidAmount, rules.check_single, "", 1)
        self.assertRaises(InvalidAmount, rules.check_single, "a", 0)

    def test_a_transfer_checks_both_accounts_its_amount_and_that_they_differ(self):
        self.assertIsNone(rules.check_transfer("a", "b", 1))
        self.assertRaises(InvalidAmount, rules.check_transfer, "", "b", 1)
        self.assertRaises(InvalidAmount, rules.check_transfer, "a", "", 1)
        self.assertRaises(InvalidAmount, rules.check_transfer, "a", "b", 0)
        self.assertRaises(SelfTransfer, rules.check_transfer, "a", "a", 1)

    def test_a_self_transfer_is_found_by_value(self):
        """The same account id, whatever string object carries it."""
        built = "".join(["a", "b"])
        self.assertIsNot(built, "ab")
        self.assertRaises(SelfTransfer, rules.check_transfer, built, "ab", 1)


class IdempotencyTTLTests(unittest.SynchronousTestCase):
    def test_an_outcome_is_kept_a_day_by_default(self):
        self.assertEqual(rules.idempotency_ttl(None), 86400)

    def test_a_given_lifetime_is_rounded_up_to_a_whole_second(self):
        for given, kept in [(1, 1), (7, 7), (0.1, 1), (2.5, 3), (3.0, 3)]:
            self.assertEqual(rules.idempotency_ttl(given), kept, given)

    def test_a_lifetime_is_a_positive_number(self):
        for ttl in (0, -1, 0.0, -0.5, True, "5", float("nan")):
            self.assertRaises(ValueError, rules.idempotency_ttl, ttl)
