"""
The Lua scripts that make each Redis store operation one atomic step.

Ledger scripts are prefixed with ``ledger_prelude.lua`` (shared helpers), so
each script sent to Redis is self-contained.
"""

from functools import cache
from importlib.resources import files

from marketplace.store.redis.connection import Script


@cache
def _source(name: str) -> str:
    source = files(__name__).joinpath(f"{name}.lua").read_text()
    if name.startswith("ledger_") and name != "ledger_prelude":
        source = _source("ledger_prelude") + "\n" + source
    return source


@cache
def lua(name: str) -> Script:
    """The script ``name``.lua, its digest computed once."""
    return Script(_source(name))
