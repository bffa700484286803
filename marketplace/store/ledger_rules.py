# -*- test-case-name: tests.store.test_ledger_rules,tests.store.test_audit,tests.store.test_memory,tests.store.test_redis -*-
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

import attrs

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

#: A running total's counterpart for the history entries retention dropped:
#: ``trimmed:deposit`` sums the deposits no history holds any more.
TRIMMED = "trimmed:"


@attrs.frozen
class HistoryRetention:
    """
    How much of each account's history a ledger keeps: the newest
    ``entries`` entries and/or those of the last ``seconds`` (None: no limit
    of that kind).  Dropping an entry moves it into a checkpoint -- the
    account's balance before its oldest kept entry, and per-kind totals of
    every dropped entry -- so the audit stays exact: the kept entries chain
    from the checkpoint to the balance, and kept plus dropped amounts equal
    the running totals.
    """

    entries: int | None = None
    seconds: float | None = None

    @property
    def keeps_everything(self) -> bool:
        return self.entries is None and self.seconds is None

    def candidates(self, count: int) -> tuple[int, int]:
        """
        For a history of ``count`` entries (the newest just added): how many
        of the oldest go for the count limit, and how many of the oldest to
        look at in all (the age limit looks at C{AGE_CHECKS}).  The count
        limit waits for C{slack} extra entries and then drops them in one
        step, so that most operations only count the history.
        """
        over = 0
        if self.entries is not None and count > self.entries + self.slack:
            over = count - self.entries
        looked_at = over if self.seconds is None else max(over, AGE_CHECKS)
        return over, min(looked_at, TRIM_BATCH, count - 1)

    @property
    def slack(self) -> int:
        """Entries beyond C{entries} an account may hold between two trims."""
        return 0 if self.entries is None else self.entries // 16

    def too_old(self, timestamp: float, now: float) -> bool:
        return self.seconds is not None and timestamp < now - self.seconds

    def __str__(self):
        """As C{parse_history_keep} reads it (``1000``, ``30d``, ``1000,30d``, ``all``)."""
        parts = [] if self.entries is None else [str(self.entries)]
        if self.seconds is not None:
            parts.append(f"{self.seconds / 86400:g}d")
        return ",".join(parts) or "all"


KEEP_EVERYTHING = HistoryRetention()

#: Entries one operation drops at most (C{TRIM_BATCH} in ledger_prelude.lua):
#: a retention shortened across a restart takes effect over the next
#: operations on an account, never in one long step.
TRIM_BATCH = 64
#: Oldest entries an operation checks against the age limit (C{AGE_CHECKS}
#: in ledger_prelude.lua): at least one entry a new one.
AGE_CHECKS = 2


def parse_history_keep(text: str) -> HistoryRetention:
    """
    ``all``, ``N`` (entries), ``Nd`` (days) or both, comma-separated
    (``1000,30d``: an entry goes once it is beyond either limit).

    @raise ValueError: with a message fit for a command-line user.
    """
    if text.strip() == "all":
        return KEEP_EVERYTHING
    entries = seconds = None
    for part in text.split(","):
        part = part.strip()
        try:
            if part.endswith("d"):
                days = float(part[:-1])
                if not 0 < days <= 36500:
                    raise ValueError
                seconds = days * 86400
            else:
                entries = int(part)
                if entries < 1:
                    raise ValueError
        except ValueError:
            raise ValueError(f"expected 'all', N entries (N >= 1), Nd days, or 'N,Nd': {text!r}") from None
    return HistoryRetention(entries, seconds)


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
    accounts: Iterable[tuple[str, int, list[Transaction], int]],
    totals: dict[str, int],
) -> AuditReport:
    """
    Build the audit from a snapshot of every account and the running totals.

    ``accounts`` yields ``(account, balance, history oldest first, base)``,
    ``base`` being the balance before the oldest entry kept (0 when none was
    dropped).  The history must chain from the base to the balance, entry by
    entry, and the per-kind sums across all histories plus those of the
    dropped entries (C{TRIMMED} totals) must equal the running totals, so a
    lost or duplicated write anywhere shows up here.
    """
    count = 0
    balance_total = 0
    summed = {name: totals.get(TRIMMED + name, 0) for name in ("opening", "deposit", "withdrawal")}
    history_mismatches = []
    for account, balance, history, base in accounts:
        count += 1
        balance_total += balance
        running = base
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
