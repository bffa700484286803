"""
The ledger held in this process.

Each operation runs to completion inside one reactor turn, which makes it
atomic in a single process without locks.
"""

from __future__ import annotations

import bisect
from collections import deque

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store import ledger_rules as rules
from marketplace.store.errors import BalanceOverflow, InsufficientFunds, LedgerError, UnknownAccount
from marketplace.store.interfaces import ILedger
from marketplace.store.records import Transaction


@implementer(ILedger)
class MemoryLedger:
    def __init__(self, clock, retention: rules.HistoryRetention = rules.KEEP_EVERYTHING):
        self._clock = clock
        self._retention = retention
        self._balances: dict[str, int] = {}
        self._histories: dict[str, list[Transaction]] = {}
        # The balance before each account's oldest kept entry, for accounts
        # whose history retention has cut.
        self._bases: dict[str, int] = {}
        self._totals = {"opening": 0, "deposit": 0, "withdrawal": 0}
        self._last_txn_id = 0
        # key -> (expires at, outcome), and per lifetime the keys in the
        # order they expire, so that expired outcomes are found and freed
        # without scanning the rest.
        self._outcomes: dict[str, tuple[float, object]] = {}
        self._expiry: dict[int, deque[tuple[float, str]]] = {}

    def open_account(self, account, opening_balance=0):
        try:
            rules.check_account(account)
            rules.check_opening_balance(opening_balance)
        except LedgerError:
            return defer.fail()
        if account in self._balances:
            return defer.succeed(False)
        self._balances[account] = 0
        self._histories[account] = []
        self._totals["opening"] += opening_balance
        self._record(account, "open", None, opening_balance)
        return defer.succeed(True)

    def balance(self, account):
        if account not in self._balances:
            return defer.fail(UnknownAccount(f"no such account: {account!r}"))
        return defer.succeed(self._balances[account])

    def deposit(self, account, amount, idempotency_key=None, idempotency_ttl=None):
        return self._once(idempotency_key, idempotency_ttl, self._deposit, account, amount)

    def withdraw(self, account, amount, idempotency_key=None, idempotency_ttl=None):
        return self._once(idempotency_key, idempotency_ttl, self._withdraw, account, amount)

    def transfer(self, source, target, amount, idempotency_key=None, idempotency_ttl=None):
        return self._once(idempotency_key, idempotency_ttl, self._transfer, source, target, amount)

    def history(self, account, limit=50, before=None):
        if account not in self._histories:
            return defer.fail(UnknownAccount(f"no such account: {account!r}"))
        entries = self._histories[account]
        end = len(entries) if before is None else bisect.bisect_left(
            entries, before, key=lambda entry: entry.txn_id)
        return defer.succeed(entries[max(0, end - limit):end][::-1])

    def audit(self):
        snapshot = ((a, self._balances[a], self._histories[a], self._bases.get(a, 0))
                    for a in self._balances)
        return defer.succeed(rules.audit_report(snapshot, self._totals))

    def _deposit(self, account, amount):
        rules.check_amount(amount)
        balance = self._existing(account)
        if balance + amount > rules.MAX_BALANCE:
            raise BalanceOverflow(f"deposit would take account {account} above {rules.MAX_BALANCE}")
        self._totals["deposit"] += amount
        return self._record(account, "deposit", None, amount)

    def _withdraw(self, account, amount):
        rules.check_amount(amount)
        balance = self._existing(account)
        if amount > balance:
            raise InsufficientFunds(balance)
        self._totals["withdrawal"] += amount
        return self._record(account, "withdraw", None, -amount)

    def _transfer(self, source, target, amount):
        rules.check_transfer(source, target, amount)
        balance = self._existing(source)
        target_balance = self._existing(target)
        if amount > balance:
            raise InsufficientFunds(balance)
        if target_balance + amount > rules.MAX_BALANCE:
            raise BalanceOverflow(f"transfer would take account {target} above {rules.MAX_BALANCE}")
        new_balance = self._record(source, "transfer_out", target, -amount)
        self._record(target, "transfer_in", source, amount)
        return new_balance

    def _existing(self, account) -> int:
        rules.check_account(account)
        try:
            return self._balances[account]
        except KeyError:
            raise UnknownAccount(f"no such account: {account!r}") from None

    def _record(self, account, kind, counterparty, amount) -> int:
        self._last_txn_id += 1
        balance = self._balances[account] + amount
        self._balances[account] = balance
        history = self._histories[account]
        now = self._clock.seconds()
        history.append(Transaction(
            self._last_txn_id, account, kind, counterparty, amount, balance, now))
        if not self._retention.keeps_everything:
            self._trim(account, history, now)
        return balance

    def _trim(self, account, history, now) -> None:
        """Drop what retention lets go, into the account's checkpoint."""
        over, looked_at = self._retention.candidates(len(history))
        dropped = 0
        # dropped counts up by one from 0 to at most looked_at (never
        # negative), so `!=` or `is not` (small ints) would stop it alike.
        while dropped < looked_at and (  # equivalent: Lt_NotEq, Lt_IsNot
                dropped < over or self._retention.too_old(history[dropped].timestamp, now)):
            entry = history[dropped]
            total = rules.KINDS_BY_TOTAL.get(entry.kind)
            if total is not None:
                key = rules.TRIMMED + total
                self._totals[key] = self._totals.get(key, 0) + abs(entry.amount)
            self._bases[account] = entry.balance_after
            dropped += 1
        if dropped:
            del history[:dropped]

    def prune(self) -> int:
        """Free every expired outcome; returns how many were freed."""
        now = self._clock.seconds()
        return sum(self._expire(queue, now) for queue in self._expiry.values())

    def _expire(self, queue, now) -> int:
        freed = 0
        outcomes = self._outcomes
        while queue and queue[0][0] <= now:
            expires_at, key = queue.popleft()
            kept = outcomes.get(key)
            # A key is stored again only once its outcome expired, so its
            # newest outcome never expires before an older entry here: `<=`
            # is the same test.
            if kept is not None and kept[0] == expires_at:  # equivalent: Eq_LtE
                del outcomes[key]
                freed += 1
        return freed

    def _once(self, key, ttl, operation, *args):
        """Run ``operation`` unless ``key`` already has a live outcome; replay it."""
        try:
            ttl = rules.idempotency_ttl(ttl)
        except ValueError:
            return defer.fail()
        now = self._clock.seconds()
        queue = self._expiry.get(ttl)
        if queue is None:
            queue = self._expiry[ttl] = deque()
        self._expire(queue, now)
        kept = self._outcomes.get(key) if key is not None else None
        if kept is not None and kept[0] > now:
            outcome = kept[1]
        else:
            try:
                outcome = operation(*args)
            except LedgerError as error:
                outcome = error
            if key is not None:
                self._outcomes[key] = (now + ttl, outcome)
                queue.append((now + ttl, key))
        if isinstance(outcome, LedgerError):
            return defer.fail(outcome)
        return defer.succeed(outcome)
