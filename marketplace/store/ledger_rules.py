"""
Ledger rules shared by every backend: limits, argument checks, the audit.

Limits are 2**53 - 1 rather than the i64 maximum because Redis runs the
ledger's Lua scripts with double-precision numbers, which are exact only up to
2**53; keeping every balance below it makes both backends exact and identical,
and it is far above any balance the wire formats carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from marketplace.store.errors import InvalidAmount, SelfTransfer
from marketplace.store.records import AuditReport, Transaction

MAX_AMOUNT = 2**53 - 1
MAX_BALANCE = 2**53 - 1

#: How long an idempotency key is remembered unless the caller says: a day
#: covers a client that retries after reconnecting.  Callers whose keys live
#: only as long as something shorter (the trading chatroom's login session)
#: pass that lifetime instead, since every outcome is held until it expires.
IDEMPOTENCY_TTL = 24 * 3600

KINDS_BY_TOTAL = {"open": "opening", "deposit": "deposit", "withdraw": "withdrawal"}


def idempotency_ttl(ttl) -> int:
    """
    Seconds to keep an outcome: C{IDEMPOTENCY_TTL} for C{None}, else
    C{ttl} rounded up to a whole second (Redis expires whole seconds, and
    rounding up never forgets an outcome early).
    """
    if ttl is None:
        return IDEMPOTENCY_TTL
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"idempotency ttl must be a positive number of seconds: {ttl!r}")
    return math.ceil(ttl)


def check_amount(amount) -> int:
    """Refuse anything but an int in ``1..MAX_AMOUNT`` (bools included)."""
    # Types compare by identity, so `type(amount) != int` is the same test.
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:  # equivalent: IsNot_NotEq
        raise InvalidAmount(f"amount must be an integer in 1..{MAX_AMOUNT}: {amount!r}")
    return amount


def check_opening_balance(amount) -> int:
    if type(amount) is not int or not 0 <= amount <= MAX_BALANCE:  # equivalent: IsNot_NotEq
        raise InvalidAmount(f"opening balance must be an integer in 0..{MAX_BALANCE}: {amount!r}")
    return amount


def check_account(account) -> str:
    if not isinstance(account, str) or not account:
        raise InvalidAmount(f"account ids are non-empty strings: {account!r}")
    return account


def check_single(account, amount) -> None:
    check_account(account)
    check_amount(amount)


def check_transfer(source, target, amount) -> None:
    check_account(source)
    check_account(target)
    check_amount(amount)
    if source == target:
        raise SelfTransfer(f"cannot transfer from account {source} to itself")


def audit_report(
    accounts: Iterable[tuple[str, int, list[Transaction]]],
    totals: dict[str, int],
) -> AuditReport:
    """
    Build the audit from a snapshot of every account and the running totals.

    ``accounts`` yields ``(account, balance, history oldest first)``.  The
    history must chain from zero to the balance, entry by entry, and the
    per-kind sums across all histories must equal the running totals, so a
    lost or duplicated write anywhere shows up here.
    """
    count = 0
    balance_total = 0
    summed = {"opening": 0, "deposit": 0, "withdrawal": 0}
    history_mismatches = []
    for account, balance, history in accounts:
        count += 1
        balance_total += balance
        running = 0
        consistent = True
        for entry in history:
            running += entry.amount
            if running != entry.balance_after or running < 0:
                consistent = False
            total = KINDS_BY_TOTAL.get(entry.kind)
            if total is not None:
                summed[total] += abs(entry.amount)
        if not consistent or running != balance:
            history_mismatches.append(account)
    opening = totals.get("opening", 0)
    deposit = totals.get("deposit", 0)
    withdrawal = totals.get("withdrawal", 0)
    total_mismatches = tuple(
        name for name, value in (("opening", opening), ("deposit", deposit), ("withdrawal", withdrawal))
        if summed[name] != value
    )
    return AuditReport(
        accounts=count,
        balance_total=balance_total,
        opening_total=opening,
        deposit_total=deposit,
        withdrawal_total=withdrawal,
        history_mismatches=tuple(sorted(history_mismatches)),
        total_mismatches=total_mismatches,
    )
