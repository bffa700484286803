"""
The store: one interface per domain, an embedded and a Redis backend.

Pick a backend with a URL: ``memory`` (the default: in this process) or
``redis://host:port/db`` / ``rediss://host:port/db?ca=PEM`` (shared by every
process that points at it; ``?prefix=P`` overrides the system's key prefix).
"""

from marketplace.store.errors import (
    BalanceOverflow, DirectoryFull, InsufficientFunds, InvalidAmount, LedgerError, SelfTransfer,
    SessionNotFound, StoreError, StoreUnavailable, UnknownAccount,
)
from marketplace.store.factory import (
    DEFAULT_STORE_TIMEOUT, check_store_url, make_store, store_label,
)
from marketplace.store.interfaces import IDirectory, ILedger, ISessionStore, IStore
from marketplace.store.ledger_rules import MAX_AMOUNT, MAX_BALANCE
from marketplace.store.records import AuditReport, Session, Transaction

__all__ = [
    "AuditReport", "BalanceOverflow", "DEFAULT_STORE_TIMEOUT", "DirectoryFull", "IDirectory",
    "ILedger", "ISessionStore", "IStore",
    "InsufficientFunds", "InvalidAmount", "LedgerError", "MAX_AMOUNT", "MAX_BALANCE", "SelfTransfer",
    "Session", "SessionNotFound", "StoreError", "StoreUnavailable", "Transaction", "UnknownAccount",
    "check_store_url", "make_store", "store_label",
]
