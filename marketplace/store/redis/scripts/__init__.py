"""
The Lua scripts that make each Redis store operation one atomic step.

Scripts of a family that shares helpers start with its prelude (ledger
scripts with ``ledger_prelude.lua``, reservation-lease scripts with
``market_lease_prelude.lua``), so each script sent to Redis is
self-contained.
"""

from functools import cache
from importlib.resources import files

#: Script name prefix -> the prelude every such script starts with.
_PRELUDES = {"ledger_": "ledger_prelude", "market_lease_": "market_lease_prelude"}


@cache
def lua(name: str) -> str:
    source = files(__name__).joinpath(f"{name}.lua").read_text()
    for prefix, prelude in _PRELUDES.items():
        if name.startswith(prefix) and name != prelude:
            source = lua(prelude) + "\n" + source
    return source


def milliseconds(seconds: float) -> int:
    """A duration as scripts and PEXPIRE take it: whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))
