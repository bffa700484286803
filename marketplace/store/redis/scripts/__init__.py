"""
The Lua scripts that make each Redis store operation one atomic step.

Scripts that share helpers start with a prelude: ledger scripts with
``ledger_prelude.lua``, reservation-lease scripts with
``market_lease_prelude.lua``, and the catalogue scripts that change whether
an item is in stock with ``market_stock_prelude.lua`` (the lease prelude
starts with it too, as leases put stock back).  So each script sent to Redis
is self-contained.
"""

from functools import cache
from importlib.resources import files

from marketplace.store.redis.connection import Script

#: Script name prefix -> the prelude every such script starts with.
_FAMILY_PRELUDES = {"ledger_": "ledger_prelude", "market_lease_": "market_lease_prelude"}

#: Other scripts and preludes that start with a prelude, and its name.
_PRELUDES = {
    "market_item_create": "market_stock_prelude",
    "market_item_update": "market_stock_prelude",
    "market_lease_prelude": "market_stock_prelude",
}


def _prelude(name: str) -> str | None:
    if name in _PRELUDES:
        return _PRELUDES[name]
    for prefix, prelude in _FAMILY_PRELUDES.items():
        if name.startswith(prefix) and name != prelude:
            return prelude
    return None


@cache
def _source(name: str) -> str:
    source = files(__name__).joinpath(f"{name}.lua").read_text()
    prelude = _prelude(name)
    if prelude is not None:
        source = _source(prelude) + "\n" + source
    return source


@cache
def lua(name: str) -> Script:
    """The script ``name``.lua, its digest computed once."""
    return Script(_source(name))


def milliseconds(seconds: float) -> int:
    """A duration as scripts and PEXPIRE take it: whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))
