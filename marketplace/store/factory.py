"""
Building a store from the ``--store`` URL.
"""

from __future__ import annotations

import attrs

from marketplace.store.address import parse_redis_url
from marketplace.store.ledger_rules import KEEP_EVERYTHING, HistoryRetention

#: Seconds a store call may take before it fails with ``StoreUnavailable``.
DEFAULT_STORE_TIMEOUT = 2.0


def check_store_url(url: str, timeout: float = DEFAULT_STORE_TIMEOUT) -> None:
    """
    @raise ValueError: if ``url`` names no backend this build knows, or
        waits longer for replicas than a store call may take (every write
        would then be dropped with its connection before ``WAIT`` answers).
    """
    if url == "memory":
        return
    address = parse_redis_url(url)
    if address.wait_ms >= timeout * 1000:
        raise ValueError(f"wait_ms={address.wait_ms} must be below the store timeout "
                         f"({timeout * 1000:g} ms): {url!r}")


def make_store(url: str = "memory", timeout: float = DEFAULT_STORE_TIMEOUT, reactor=None,
               key_prefix: str = "", history_keep: HistoryRetention = KEEP_EVERYTHING):
    """
    Build the store ``url`` names.  The result is an ``IService``: add it to
    the application before the listeners that use it.

    ``key_prefix`` is the system's own prefix for its keys in a shared
    backend (``tradechat:``), used unless the URL names one (``?prefix=``);
    the embedded store is private to its process and needs none.
    ``history_keep`` bounds each ledger account's history (everything is
    kept by default).

    ``reactor`` is the clock and network to use; the embedded store takes any
    ``IReactorTime`` so tests can drive session expiry with ``task.Clock``.
    """
    if url == "memory":
        from marketplace.store.memory import MemoryStore
        return MemoryStore(clock=reactor, history_keep=history_keep)
    from marketplace.store.redis import RedisStore
    address = parse_redis_url(url)
    if address.prefix is None:
        address = attrs.evolve(address, prefix=key_prefix)
    return RedisStore(address, timeout, reactor, history_keep)
