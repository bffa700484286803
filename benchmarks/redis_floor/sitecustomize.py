"""
The C{redis-floor} configuration of benchmarks/tradechat.py: loaded as
C{sitecustomize} (through C{PYTHONPATH}) into that server's process only.

The Redis ledger's deposit, withdraw and transfer each still make their one
script call to Redis, with the same keys and arguments, but the script does
nothing.  What such a server costs is the floor of the Redis path: the round
trip, the second reactor turn a request takes, the command and its reply,
with no store work; what the real scripts cost comes on top.  Balances do
not change, so the load generator's conservation check fails there, as it
must.
"""

from marketplace.store.redis import ledger
from marketplace.store.redis.connection import Script

_MONEY_SCRIPTS = {"ledger_deposit", "ledger_withdraw", "ledger_transfer"}
_DO_NOTHING = Script("return {'ok', '0'}")
_real_lua = ledger.lua


def _floor_lua(name: str) -> Script:
    return _DO_NOTHING if name in _MONEY_SCRIPTS else _real_lua(name)


ledger.lua = _floor_lua
