# -*- test-case-name: tests.store.test_redis -*-
"""
The ledger in Redis: each operation is one Lua script, so any number of
processes sharing the server can never lose or create money.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from marketplace.store import ledger_rules as rules
from marketplace.store.errors import (
    BalanceOverflow, InsufficientFunds, LedgerError, StoreError, UnknownAccount,
)
from marketplace.store.interfaces import ILedger
from marketplace.store.records import Transaction
from marketplace.store.redis.scripts import lua

_CARRY = ":carry"
_TOTAL_UNIT = 2**53
"""A running total is the field ``name`` plus ``name:carry`` units of this
(``TOTAL_UNIT`` in ``ledger_prelude.lua``), so it cannot overflow."""


def _parse_entry(account: str, entry: str) -> Transaction:
    txn_id, kind, counterparty, amount, balance_after, timestamp = entry.split("|")
    return Transaction(int(txn_id), account, kind, counterparty or None,
                       int(amount), int(balance_after), float(timestamp))


def _totals(flat) -> dict[str, int]:
    """Add each running total's two fields back up (exact: Python ints)."""
    totals: dict[str, int] = {}
    for field, value in zip(flat[::2], flat[1::2]):
        name, carry, _ = field.partition(_CARRY)
        unit = _TOTAL_UNIT if carry else 1
        totals[name] = totals.get(name, 0) + int(value) * unit
    return totals


def _outcome(reply):
    """Turn a money script's ``{status, value}`` into a result or an error."""
    status, value = reply
    if status == "ok":
        return int(value)
    if status == "insufficient":
        raise InsufficientFunds(int(value))
    if status == "unknown":
        raise UnknownAccount(f"no such account: {value!r}")
    if status == "overflow":
        raise BalanceOverflow(f"the operation would take account {value} above {rules.MAX_BALANCE}")
    raise StoreError(f"unexpected ledger script reply: {reply!r}")


@implementer(ILedger)
class RedisLedger:
    def __init__(self, connection, retention: rules.HistoryRetention = rules.KEEP_EVERYTHING):
        self._redis = connection
        prefix = connection.prefix + "ledger:"
        self._totals = prefix + "totals"
        self._txn_counter = prefix + "txn"
        self._accounts = prefix + "accounts"
        self._account = prefix + "account:"
        self._history = prefix + "entries:"
        #: Where earlier releases kept an account's history (a sorted set),
        #: moved to its list by the scripts on first use (ledger_prelude.lua).
        self._legacy_history = prefix + "history:"
        # The last three ARGV of every script that records (ledger_prelude.lua).
        self._record_args = [self._legacy_history, retention.entries or 0, retention.seconds or 0]
        self._idempotency = prefix + "once:"
        self._no_key = prefix + "once"

    def open_account(self, account, opening_balance=0):
        try:
            rules.check_account(account)
            rules.check_opening_balance(opening_balance)
        except LedgerError:
            return defer.fail()
        return self._redis.script(
            lua("ledger_open"),
            [self._totals, self._txn_counter, self._accounts, self._account + account, self._history + account],
            ["0", "0", account, opening_balance, *self._record_args], durable=True,
            parse=lambda created: created == 1)

    def balance(self, account):
        def parse(value):
            if value is None:
                raise UnknownAccount(f"no such account: {account!r}")
            return int(value)
        return self._redis.execute("HGET", self._account + account, "balance", parse=parse)

    def deposit(self, account, amount, idempotency_key=None, idempotency_ttl=None):
        return self._money("ledger_deposit", [account], [amount, account, rules.MAX_BALANCE],
                           idempotency_key, idempotency_ttl, lambda: rules.check_single(account, amount))

    def withdraw(self, account, amount, idempotency_key=None, idempotency_ttl=None):
        return self._money("ledger_withdraw", [account], [amount, account],
                           idempotency_key, idempotency_ttl, lambda: rules.check_single(account, amount))

    def transfer(self, source, target, amount, idempotency_key=None, idempotency_ttl=None):
        return self._money("ledger_transfer", [source, target],
                           [amount, source, target, rules.MAX_BALANCE],
                           idempotency_key, idempotency_ttl, lambda: rules.check_transfer(source, target, amount))

    def history(self, account, limit=50, before=None):
        upper = "" if before is None else int(before)

        def parse(entries):
            if entries is None:
                raise UnknownAccount(f"no such account: {account!r}")
            return [_parse_entry(account, entry) for entry in reversed(entries)]
        return self._redis.script(lua("ledger_history"), [self._account + account, self._history + account],
                                  [upper, int(limit), self._legacy_history + account], parse=parse)

    def audit(self):
        def build(reply):
            flat_totals, accounts = reply
            totals = _totals(flat_totals)
            snapshot = (
                (account, int(balance), [_parse_entry(account, e) for e in entries], int(base))
                for account, balance, entries, base in accounts)
            return rules.audit_report(snapshot, totals)
        return self._redis.script(lua("ledger_audit"), [self._totals, self._accounts],
                                  [self._account, self._history, self._legacy_history], parse=build)

    def _money(self, script, accounts, args, idempotency_key, idempotency_ttl, validate):
        """
        Run a money script after checking its arguments here: a refused
        argument never reaches Redis, and is refused again on any retry.
        """
        try:
            validate()
            ttl = rules.idempotency_ttl(idempotency_ttl)
        except (LedgerError, ValueError):
            return defer.fail()
        keys = [self._totals, self._txn_counter, self._idempotency + idempotency_key if idempotency_key else self._no_key]
        for account in accounts:
            keys += [self._account + account, self._history + account]
        once = ["1" if idempotency_key else "0", ttl]
        return self._redis.script(lua(script), keys, once + args + self._record_args,
                                  durable=True, parse=_outcome)
