"""
Tests for the audit's rules where they live: L{AuditReport.balanced} and
L{marketplace.store.ledger_rules.audit_report}.  Every backend builds its
audit with these, so a broken rule fails here, by an assertion, whatever the
backend.
"""

from twisted.trial import unittest

from marketplace.store.ledger_rules import audit_report
from marketplace.store.records import AuditReport, Transaction

BALANCED = dict(accounts=2, balance_total=165, opening_total=150, deposit_total=25,
                withdrawal_total=10)


def entry(txn_id, account, kind, amount, balance_after):
    return Transaction(txn_id, account, kind, None, amount, balance_after, 0.0)


#: a: opened with 100, +25 deposit, -60 transfer out; b: opened with 50, -10, +60.
HISTORIES = {
    "a": [entry(1, "a", "open", 100, 100), entry(3, "a", "deposit", 25, 125),
          entry(5, "a", "transfer_out", -60, 65)],
    "b": [entry(2, "b", "open", 50, 50), entry(4, "b", "withdraw", -10, 40),
          entry(6, "b", "transfer_in", 60, 100)],
}
TOTALS = {"opening": 150, "deposit": 25, "withdrawal": 10}


def snapshot(balances=None, histories=HISTORIES):
    balances = balances or {"a": 65, "b": 100}
    return [(account, balances[account], histories[account], 0) for account in histories]


class AuditReportTests(unittest.SynchronousTestCase):
    def test_balanced_when_every_term_agrees(self):
        self.assertTrue(AuditReport(**BALANCED).balanced)

    def test_unbalanced_when_the_balances_do_not_add_up(self):
        for term, wrong in [("balance_total", 164), ("opening_total", 151),
                            ("deposit_total", 26), ("withdrawal_total", 9)]:
            report = AuditReport(**dict(BALANCED, **{term: wrong}))
            self.assertFalse(report.balanced, term)

    def test_expected_total_is_openings_plus_deposits_minus_withdrawals(self):
        for opening, deposit, withdrawal in [(100, 0, 1), (0, 7, 2), (150, 25, 10)]:
            report = AuditReport(1, 0, opening, deposit, withdrawal)
            self.assertEqual(report.expected_total, opening + deposit - withdrawal)

    def test_large_totals_are_compared_by_value(self):
        """Totals past any cached small int still balance when they are equal."""
        total = int("1" + "0" * 20)
        report = AuditReport(1, total, int("9" * 20), 2, 1)
        self.assertTrue(report.balanced, report)

    def test_unbalanced_on_any_mismatch(self):
        self.assertFalse(AuditReport(**BALANCED, history_mismatches=("a",)).balanced)
        self.assertFalse(AuditReport(**BALANCED, total_mismatches=("deposit",)).balanced)


class AuditRulesTests(unittest.SynchronousTestCase):
    def test_a_consistent_ledger_balances(self):
        report = audit_report(snapshot(), TOTALS)
        self.assertTrue(report.balanced, report)
        self.assertEqual((report.accounts, report.balance_total, report.opening_total,
                          report.deposit_total, report.withdrawal_total), (2, 165, 150, 25, 10))

    def test_a_balance_its_history_does_not_reach_is_found(self):
        for balance in (66, 64):
            report = audit_report(snapshot({"a": balance, "b": 100}), TOTALS)
            self.assertEqual(report.history_mismatches, ("a",), balance)
            self.assertFalse(report.balanced)

    def test_a_broken_chain_is_found_even_when_it_ends_right(self):
        for claimed in (41, 39):
            histories = dict(HISTORIES, b=[entry(2, "b", "open", 50, 50),
                                           entry(4, "b", "withdraw", -10, claimed),
                                           entry(6, "b", "transfer_in", 60, 100)])
            report = audit_report(snapshot(histories=histories), TOTALS)
            self.assertEqual(report.history_mismatches, ("b",), claimed)

    def test_a_history_that_goes_negative_is_found(self):
        """Even by a single unit."""
        for overdrawn in (10, 1):
            histories = dict(HISTORIES, b=[entry(2, "b", "open", 50, 50),
                                           entry(4, "b", "withdraw", -50 - overdrawn, -overdrawn),
                                           entry(6, "b", "deposit", 100 + overdrawn, 100)])
            report = audit_report(snapshot(histories=histories),
                                  {"opening": 150, "deposit": 125 + overdrawn,
                                   "withdrawal": 50 + overdrawn})
            self.assertEqual(report.history_mismatches, ("b",), overdrawn)

    def test_running_totals_that_disagree_with_the_histories_are_found(self):
        for kind in ("opening", "deposit", "withdrawal"):
            for change in (1, -1):
                totals = dict(TOTALS, **{kind: TOTALS[kind] + change})
                report = audit_report(snapshot(), totals)
                self.assertEqual(report.total_mismatches, (kind,))
                self.assertFalse(report.balanced)

    def test_an_empty_ledger_balances_at_zero(self):
        """A ledger nothing happened to yet has no running totals at all."""
        report = audit_report([], {})
        self.assertEqual((report.accounts, report.balance_total, report.opening_total,
                          report.deposit_total, report.withdrawal_total), (0, 0, 0, 0, 0))
        self.assertTrue(report.balanced, report)

    def test_a_checkpoint_stands_for_the_dropped_entries(self):
        """Retention dropped a's first two entries: its base and the trimmed totals replace them."""
        kept = [(account, balance, history, 0) for account, balance, history, _ in snapshot()]
        kept[0] = ("a", 65, HISTORIES["a"][2:], 125)
        totals = dict(TOTALS, **{"trimmed:opening": 100, "trimmed:deposit": 25})
        self.assertTrue(audit_report(kept, totals).balanced)
        self.assertFalse(audit_report(kept, TOTALS).balanced)
        kept[0] = ("a", 65, HISTORIES["a"][2:], 124)
        self.assertEqual(audit_report(kept, totals).history_mismatches, ("a",))

    def test_money_created_by_a_transfer_is_found(self):
        """A transfer in without its transfer out makes money from nothing."""
        histories = dict(HISTORIES, a=HISTORIES["a"][:2])
        report = audit_report(snapshot({"a": 125, "b": 100}, histories), TOTALS)
        self.assertTrue(report.history_mismatches == () and not report.balanced, report)
