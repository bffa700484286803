"""
Building a store from the ``--store`` URL.
"""

from __future__ import annotations

from twisted.logger import Logger

from marketplace.metrics import Counters, export
from marketplace.store.address import parse_redis_url
from marketplace.store.measured import measure

#: Seconds a store call may take before it fails with ``StoreUnavailable``.
DEFAULT_STORE_TIMEOUT = 2.0


def check_store_url(url: str) -> None:
    """@raise ValueError: if ``url`` names no backend this build knows."""
    if url != "memory":
        parse_redis_url(url)


def store_label(url: str) -> str:
    """C{url} as logs and metrics show it: without its password."""
    return url if url == "memory" else str(parse_redis_url(url))


def make_store(url: str = "memory", timeout: float = DEFAULT_STORE_TIMEOUT, reactor=None):
    """
    Build the store ``url`` names.  The result is an ``IService``: add it to
    the application before the listeners that use it.

    ``reactor`` is the clock and network to use; the embedded store takes any
    ``IReactorTime`` so tests can drive session expiry with ``task.Clock``.

    Every call is measured (L{marketplace.store.measured}) into the store's
    C{metrics}, exported as the C{store} system under the store's URL (no
    password in it), and the store is logged: which one, and its timeout.
    """
    store = _backend(url, timeout, reactor)
    store.metrics = export("store", store_label(url), Counters())
    outage = getattr(getattr(store, "connection", None), "outage", None)
    if outage is not None:
        outage.counters = store.metrics
    _log.info("store: {url} (calls time out after {timeout}s)", url=store_label(url),
              timeout=timeout)
    return measure(store, store.metrics)


_log = Logger()


def _backend(url: str, timeout: float, reactor):
    if url == "memory":
        from marketplace.store.memory import MemoryStore
        return MemoryStore(clock=reactor)
    from marketplace.store.redis import RedisStore
    return RedisStore(parse_redis_url(url), timeout, reactor)
