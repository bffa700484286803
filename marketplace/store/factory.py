"""
Building a store from the ``--store`` URL.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from marketplace.metrics import Counters, export
from marketplace.store.address import parse_redis_url
from marketplace.store.ledger_rules import KEEP_EVERYTHING, HistoryRetention
from marketplace.store.measured import measure

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


def store_label(url: str) -> str:
    """C{url} as logs and metrics show it: without its password."""
    return url if url == "memory" else str(parse_redis_url(url))


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

    Every call is measured (L{marketplace.store.measured}) into the store's
    C{metrics}, exported as the C{store} system under the store's URL (no
    password in it), and the store is logged: which one, and its timeout.
    """
    store = _backend(url, timeout, reactor, key_prefix, history_keep)
    store.metrics = export("store", store_label(url), Counters())
    connection = getattr(store, "connection", None)
    if connection is not None:
        connection.outage.counters = store.metrics
        connection.replica_shortfall.counters = store.metrics
    _log.info("store: {url} (calls time out after {timeout}s)", url=store_label(url),
              timeout=timeout)
    return measure(store, store.metrics)


_log = Logger()


def _backend(url: str, timeout: float, reactor, key_prefix: str, history_keep: HistoryRetention):
    if url == "memory":
        from marketplace.store.memory import MemoryStore
        return MemoryStore(clock=reactor, history_keep=history_keep)
    from marketplace.store.redis import RedisStore
    address = parse_redis_url(url)
    if address.prefix is None:
        address = attrs.evolve(address, prefix=key_prefix)
    return RedisStore(address, timeout, reactor, history_keep)
