"""
The Lua scripts that make each Redis store operation one atomic step.

Scripts of a family that shares helpers start with its prelude (ledger
scripts with ``ledger_prelude.lua``, reservation-lease scripts with
``market_lease_prelude.lua``), so each script sent to Redis is
self-contained.
"""

from functools import cache
from importlib.resources import files

from marketplace.store.redis.connection import Script

#: Script name prefix -> the prelude every such script starts with.
_PRELUDES = {"ledger_": "ledger_prelude", "market_lease_": "market_lease_prelude"}


@cache
def _source(name: str) -> str:
    source = files(__name__).joinpath(f"{name}.lua").read_text()
    for prefix, prelude in _PRELUDES.items():
        if name.startswith(prefix) and name != prelude:
            source = _source(prelude) + "\n" + source
    return source


@cache
def lua(name: str) -> Script:
    """The script ``name``.lua, its digest computed once."""
    return Script(_source(name))


def milliseconds(seconds: float) -> int:
    """A duration as scripts and PEXPIRE take it: whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))
