"""
Immutable records handed out by the stores.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Session:
    """
    A login session; ``ttl`` is the sliding inactivity timeout in seconds,
    ``created_at`` when the store made it (each store gives both).
    """

    session_id: str
    user_id: str
    data: dict = attrs.field(converter=dict)
    ttl: float
    created_at: float


@attrs.frozen
class Transaction:
    """
    One entry of an account's history.

    ``amount`` is the signed change to this account's balance, so an account's
    history replays to its balance by summing amounts.
    """

    txn_id: int
    account: str
    kind: str
    counterparty: str | None
    amount: int
    balance_after: int
    timestamp: float


@attrs.frozen
class AuditReport:
    """
    The result of replaying the whole ledger.

    ``balanced`` holds when the sum of balances equals opening balances plus
    deposits minus withdrawals, every account's history replays to its
    balance, and the running totals agree with the histories.
    """

    accounts: int
    balance_total: int
    opening_total: int
    deposit_total: int
    withdrawal_total: int
    history_mismatches: tuple[str, ...] = ()
    total_mismatches: tuple[str, ...] = ()

    @property
    def expected_total(self) -> int:
        return self.opening_total + self.deposit_total - self.withdrawal_total

    @property
    def balanced(self) -> bool:
        return (
            self.balance_total == self.expected_total
            and not self.history_mismatches
            and not self.total_mismatches
        )
