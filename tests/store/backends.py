"""
The two store backends as test fixtures, mixed into every contract suite
(the core one in ``tests/store`` and the marketplace's), so each suite runs
unchanged against both.

A fixture provides ``store`` (started), ``make_store()``,
``make_store_keeping(retention)``, ``corrupt_balance(store, account, change)``,
``make_clients(count)`` (separate connections, for Redis),
``let_time_pass(seconds)`` and ``short_ttl``.
"""

from __future__ import annotations

from twisted.internet import defer, reactor, task

from marketplace.store import make_store
from tests.support.redis_server import start_redis


class MemoryBackend:
    """The embedded store on a ``task.Clock``: expiry tests advance it."""

    short_ttl = 300.0

    def setUp(self):
        self.clock = task.Clock()
        self.store = make_store("memory", reactor=self.clock)
        self.store.startService()
        self.addCleanup(self.store.stopService)

    def make_store(self):
        return defer.succeed(self.store)

    def make_store_keeping(self, retention):
        store = make_store("memory", reactor=self.clock, history_keep=retention)
        store.startService()
        self.addCleanup(store.stopService)
        return defer.succeed(store)

    def corrupt_balance(self, store, account, change):
        store.ledger._balances[account] += change
        return defer.succeed(None)

    def make_clients(self, count):
        return defer.succeed([self.store] * count)

    def let_time_pass(self, seconds):
        self.clock.advance(seconds)
        return defer.succeed(None)


class RedisBackend:
    """
    A private redis-server per test; ``client()`` opens another connection.
    Expiry is Redis's own, on its own clock, so real time has to pass.
    """

    short_ttl = 1.0
    #: A store timeout short enough to keep outage tests quick.
    store_timeout = 1.0
    appendonly = False
    tls = False

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = yield start_redis(self, appendonly=self.appendonly, tls=self.tls)
        self.store = self.client()

    def client(self, timeout=None, **options):
        store = make_store(self.redis.url, timeout=timeout or self.store_timeout, reactor=reactor,
                           **options)
        store.startService()
        self.addCleanup(store.stopService)
        return store

    def make_store(self):
        return defer.succeed(self.client())

    def make_clients(self, count):
        return defer.succeed([self.client() for _ in range(count)])

    def make_store_keeping(self, retention):
        return defer.succeed(self.client(history_keep=retention))

    def corrupt_balance(self, store, account, change):
        return store.connection.execute("HINCRBY", "ledger:account:" + account, "balance", change)

    def let_time_pass(self, seconds):
        return task.deferLater(reactor, seconds, lambda: None)
