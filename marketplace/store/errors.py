"""
The store layer's errors.

Callers catch :class:`StoreUnavailable` to answer "try again later" and the
:class:`LedgerError` family to answer a business refusal; each protocol maps
these to its own wire statuses in one table.
"""


class StoreError(Exception):
    """Base of every error a store raises."""


class StoreUnavailable(StoreError):
    """
    The backend did not answer within the store timeout, or is unreachable.

    Nothing can be concluded about whether the operation took effect, which is
    why money operations take an idempotency key: a retry with the same key is
    safe.
    """


class SessionNotFound(StoreError):
    """The session id is unknown, or the session expired."""


class DirectoryFull(StoreError):
    """Every user id of the id space is taken: a new name cannot get one."""


class LedgerError(StoreError):
    """A ledger operation was refused; the ledger is unchanged."""


class UnknownAccount(LedgerError):
    """The account was never opened."""


class InvalidAmount(LedgerError):
    """The amount is not an integer in ``1..MAX_AMOUNT``."""


class SelfTransfer(LedgerError):
    """Source and target of a transfer are the same account."""


class BalanceOverflow(LedgerError):
    """The operation would push a balance above ``MAX_BALANCE``."""


class InsufficientFunds(LedgerError):
    """The debit is larger than the balance, which is reported."""

    def __init__(self, balance: int):
        super().__init__(f"insufficient funds: balance is {balance}")
        self.balance = balance
