"""
Compatibility profile: behave like the existing server towards its stress
client, which logs in as arbitrary names and transfers to uniformly random
user ids 0..1023.  The profile opens accounts 0..1023 with the existing
server's opening balance and maps names into that id range, so every transfer
target exists and the only refusals are real insufficient funds.
"""

from __future__ import annotations

from twisted.internet import defer

#: The profile's accounts, and so its user id space: names map into 0..1023.
COMPAT_ACCOUNTS = 1024
COMPAT_OPENING_BALANCE = 100_000


def account_of(user_id: int) -> str:
    """The ledger account of a user id (one scheme for every profile)."""
    return str(user_id)


@defer.inlineCallbacks
def provision_accounts(ledger, opening_balance: int = COMPAT_OPENING_BALANCE):
    """
    Open accounts 0..1023.  Accounts that already exist (a restart on a
    persistent store) keep their balance: C{open_account} leaves them alone.
    """
    created = 0
    for user_id in range(COMPAT_ACCOUNTS):
        if (yield ledger.open_account(account_of(user_id), opening_balance)):
            created += 1
    return created
