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


class HistoryKeepParsingTests(unittest.SynchronousTestCase):
    """
    C{parse_history_keep} reads C{--history-keep}: C{all}, C{N} entries,
    C{Nd} days, or both, and refuses anything else with one message.
    """

    def refusal(self, text):
        with self.assertRaises(ValueError) as raised:
            rules.parse_history_keep(text)
        return raised.exception

    def test_all_keeps_everything(self):
        for text in ("all", " all ", "all\n"):
            self.assertIs(rules.parse_history_keep(text), rules.KEEP_EVERYTHING)
        self.assertIs(rules.KEEP_EVERYTHING.keeps_everything, True)
        self.assertEqual(rules.KEEP_EVERYTHING, rules.HistoryRetention(None, None))

    def test_entries_are_a_count_from_one(self):
        for text, entries in (("1", 1), ("2", 2), ("1000", 1000), (" 17 ", 17)):
            self.assertEqual(rules.parse_history_keep(text), rules.HistoryRetention(entries, None))
        for text in ("0", "-1", "1.5", "", "x", "1e3"):
            self.refusal(text)

    def test_days_are_more_than_zero_and_at_most_a_century(self):
        for text, seconds in (("1d", 86400), ("30d", 30 * 86400), ("0.5d", 43200),
                              ("36500d", 36500 * 86400), (" 2d ", 2 * 86400)):
            retention = rules.parse_history_keep(text)
            self.assertEqual(retention, rules.HistoryRetention(None, seconds))
            self.assertEqual(retention.seconds, seconds)
        for text in ("0d", "-1d", "36500.5d", "36501d", "d", "nand", "infd", "xd", "1dd"):
            self.refusal(text)

    def test_both_limits_are_comma_separated_in_either_order(self):
        both = rules.HistoryRetention(1000, 30 * 86400)
        for text in ("1000,30d", "30d,1000", " 1000 , 30d "):
            self.assertEqual(rules.parse_history_keep(text), both)
        for text in ("1000,", ",30d", "1000,0d", "0,30d", "all,30d", "1000;30d"):
            self.refusal(text)

    def test_the_refusal_says_what_is_accepted_and_quotes_the_input(self):
        for text in ("0", " 0 , 30d ", "36501d", "all,1"):
            error = self.refusal(text)
            self.assertEqual(
                str(error), f"expected 'all', N entries (N >= 1), Nd days, or 'N,Nd': {text!r}")
            self.assertIs(type(error), ValueError)
            self.assertIsNone(error.__cause__)
            self.assertIs(error.__suppress_context__, True)


class HistoryRetentionTests(unittest.SynchronousTestCase):
    """
    The rules both backends trim by: which entries an operation may drop,
    the count limit's slack, the age limit, and the retention's text form.
    """

    def test_the_batch_bounds_match_the_lua_prelude(self):
        self.assertEqual((rules.TRIM_BATCH, rules.AGE_CHECKS), (64, 2))
        self.assertEqual(rules.TRIMMED, "trimmed:")

    def test_only_no_limit_at_all_keeps_everything(self):
        self.assertIs(rules.HistoryRetention().keeps_everything, True)
        self.assertIs(rules.HistoryRetention(entries=5).keeps_everything, False)
        self.assertIs(rules.HistoryRetention(seconds=60.0).keeps_everything, False)
        self.assertIs(rules.HistoryRetention(5, 60.0).keeps_everything, False)

    def test_the_slack_is_a_sixteenth_of_the_entries_rounded_down(self):
        for entries, slack in ((1, 0), (15, 0), (16, 1), (17, 1), (31, 1), (32, 2),
                               (40, 2), (48, 3), (1000, 62), (1008, 63)):
            slack_of = rules.HistoryRetention(entries=entries).slack
            self.assertEqual((entries, slack_of, type(slack_of)), (entries, slack, int))
        self.assertEqual(rules.HistoryRetention().slack, 0)
        self.assertEqual(rules.HistoryRetention(seconds=60.0).slack, 0)

    def test_without_limits_nothing_is_a_candidate(self):
        for count in (1, 2, 3, 100):
            self.assertEqual(rules.HistoryRetention().candidates(count), (0, 0))

    def test_the_count_limit_waits_for_its_slack_then_drops_down_to_n(self):
        """N + N/16 entries are held; the next one drops all the excess at once."""
        retention = rules.HistoryRetention(entries=48)  # slack 3
        for count in (1, 47, 48, 49, 51):
            self.assertEqual(retention.candidates(count), (0, 0))
        self.assertEqual(retention.candidates(52), (4, 4))
        self.assertEqual(retention.candidates(53), (5, 5))

    def test_the_limit_is_the_sum_of_n_and_its_slack(self):
        """17 + 1 is neither 17 | 1 nor 17 ^ 1: the 18th entry is still held."""
        retention = rules.HistoryRetention(entries=17)  # slack 1
        self.assertEqual(retention.candidates(18), (0, 0))
        self.assertEqual(retention.candidates(19), (2, 2))

    def test_without_slack_every_entry_past_n_goes(self):
        retention = rules.HistoryRetention(entries=3)
        self.assertEqual(retention.candidates(3), (0, 0))
        self.assertEqual(retention.candidates(4), (1, 1))
        self.assertEqual(retention.candidates(7), (4, 4))

    def test_one_operation_drops_at_most_a_batch(self):
        retention = rules.HistoryRetention(entries=1)
        self.assertEqual(retention.candidates(64), (63, 63))
        self.assertEqual(retention.candidates(65), (64, 64))
        self.assertEqual(retention.candidates(66), (65, 64))
        self.assertEqual(retention.candidates(200), (199, 64))

    def test_the_age_limit_looks_at_the_oldest_two_but_never_the_newest(self):
        retention = rules.HistoryRetention(seconds=60.0)
        self.assertEqual(retention.candidates(1), (0, 0))
        self.assertEqual(retention.candidates(2), (0, 1))
        self.assertEqual(retention.candidates(3), (0, 2))
        self.assertEqual(retention.candidates(100), (0, 2))

    def test_with_both_limits_the_larger_look_wins(self):
        retention = rules.HistoryRetention(4, 60.0)
        self.assertEqual(retention.candidates(4), (0, 2))
        self.assertEqual(retention.candidates(5), (1, 2))
        self.assertEqual(retention.candidates(9), (5, 5))
        self.assertEqual(retention.candidates(100), (96, 64))

    def test_an_entry_is_too_old_strictly_before_the_cut_off(self):
        retention = rules.HistoryRetention(seconds=10.0)
        self.assertIs(retention.too_old(89.0, 100.0), True)
        self.assertIs(retention.too_old(89.5, 100.0), True)
        self.assertIs(retention.too_old(90.0, 100.0), False)
        self.assertIs(retention.too_old(91.0, 100.0), False)
        self.assertIs(retention.too_old(100.0, 100.0), False)

    def test_without_an_age_limit_nothing_is_too_old(self):
        for retention in (rules.HistoryRetention(), rules.HistoryRetention(entries=5)):
            self.assertIs(retention.too_old(0.0, 1e9), False)

    def test_the_text_form_reads_back(self):
        for retention, text in (
                (rules.HistoryRetention(), "all"),
                (rules.HistoryRetention(entries=1000), "1000"),
                (rules.HistoryRetention(seconds=30 * 86400.0), "30d"),
                (rules.HistoryRetention(seconds=43200.0), "0.5d"),
                (rules.HistoryRetention(seconds=1.5 * 86400), "1.5d"),
                (rules.HistoryRetention(3, 2 * 86400.0), "3,2d")):
            self.assertEqual(str(retention), text)
            self.assertEqual(rules.parse_history_keep(text), retention)
