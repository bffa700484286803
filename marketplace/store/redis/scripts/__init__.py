"""
The Lua scripts that make each Redis store operation one atomic step.

Ledger scripts are prefixed with ``ledger_prelude.lua`` and the catalogue
scripts that change stock with ``market_stock_prelude.lua`` (shared helpers),
so each script sent to Redis is self-contained.
"""

from functools import cache
from importlib.resources import files


#: Scripts that start with a prelude of shared helpers, and its name.
_PRELUDES = {
    "market_item_create": "market_stock_prelude",
    "market_item_update": "market_stock_prelude",
    "market_reserve": "market_stock_prelude",
    "market_settle": "market_stock_prelude",
}


def _prelude(name: str) -> str | None:
    if name.startswith("ledger_") and name != "ledger_prelude":
        return "ledger_prelude"
    return _PRELUDES.get(name)


@cache
def lua(name: str) -> str:
    source = files(__name__).joinpath(f"{name}.lua").read_text()
    prelude = _prelude(name)
    if prelude is not None:
        source = lua(prelude) + "\n" + source
    return source
