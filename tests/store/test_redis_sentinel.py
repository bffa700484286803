"""
The Redis store over a Sentinel-managed Redis: it finds the primary, follows
a failover by itself, never writes to a replica, and acknowledges a money,
stock or purchase write only once a replica holds it, so a failover loses
no acknowledged operation.

Each test starts a primary, a replica and three sentinels
(L{tests.support.redis_sentinel}); a failover takes some seconds.
"""

from __future__ import annotations

import os
import signal
import time

import hiredis
from twisted.internet import defer, protocol, reactor
from txredisapi import ResponseError
from twisted.trial import unittest

from marketplace.store import StoreUnavailable, make_store
from marketplace.store.address import parse_redis_url
from marketplace.market.validation import ItemDraft
from tests.support.redis_sentinel import ask, start_sentinel_deployment, wait_until
from tests.support.redis_server import RedisServer, start_redis

#: short, so that a request caught by a failover fails quickly
TIMEOUT = 1.0

#: acknowledged operations before the kill, and after the failover
BEFORE, AFTER = 30, 30

#: an item's price in cents
PRICE = 250

#: seconds a client keeps retrying one operation before the test gives up
PATIENCE = 45.0


class SentinelURLTests(unittest.TestCase):
    def test_sentinels_service_database_and_wait(self):
        address = parse_redis_url(
            "redis+sentinel://:pw@10.0.0.1:26379,h2,[::1]:7000/orders/3?prefix=p:&wait=2&wait_ms=250")
        self.assertEqual(address.sentinels, (("10.0.0.1", 26379), ("h2", 26379), ("::1", 7000)))
        self.assertEqual((address.service, address.db, address.password, address.prefix),
                         ("orders", 3, "pw", "p:"))
        self.assertEqual((address.wait_replicas, address.wait_ms), (2, 250))
        self.assertFalse(address.tls)

    def test_defaults_one_replica_within_half_a_second(self):
        address = parse_redis_url("rediss+sentinel://h:1/svc?ca=ca.pem")
        self.assertEqual((address.wait_replicas, address.wait_ms, address.db), (1, 500, 0))
        self.assertEqual((address.tls, address.ca), (True, "ca.pem"))
        self.assertEqual(str(address), "rediss+sentinel://h:1/svc/0")

    def test_plain_redis_waits_for_no_replica(self):
        self.assertEqual(parse_redis_url("redis://h:1/0").wait_replicas, 0)

    def test_bad_urls_say_what_is_wrong(self):
        for url, words in [
            ("redis+sentinel://h:1", "/SERVICE"),
            ("redis+sentinel://h:1/svc/x", "database"),
            ("redis+sentinel://h:1/svc/0/extra", "/SERVICE"),
            ("redis+sentinel://h:99999/svc", "bad port"),
            ("redis+sentinel://h:1,:2/svc", "without a host"),
            ("redis+sentinel://h:1/svc?wait=-1", "wait="),
            ("redis+sentinel://h:1/svc?wait_ms=0", "wait_ms="),
            ("redis+sentinel://h:1/svc?ca=x", "rediss"),
            ("redis://h:1/0?wait=1", "unknown"),
        ]:
            with self.assertRaises(ValueError) as raised:
                parse_redis_url(url)
            self.assertIn(words, str(raised.exception), url)


class SentinelTestCase(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def setUp(self):
        self.deployment = yield start_sentinel_deployment(self)

    @defer.inlineCallbacks
    def fail_over(self):
        """
        Kill the primary; once the replica is promoted, restart the old
        primary as its replica: with one replica left, no write can be
        acknowledged until then (C{wait=1}).
        """
        old = yield self.deployment.kill_primary_and_fail_over()
        yield self.deployment.restart_as_replica(old)

    @defer.inlineCallbacks
    def across_a_failover(self, operation, clients: int = 4):
        """
        Run ``operation(client, i, unavailable)`` (firing with what it did,
        once acknowledged) in a loop on each of ``clients``; kill the
        primary once L{BEFORE} are acknowledged, and stop L{AFTER} more
        after the failover.  Returns what the acknowledged operations did.
        """
        done, unavailable, failed_over = [], [], defer.Deferred()

        @defer.inlineCallbacks
        def client(number):
            for i in range(10_000):  # bounded: the failover ends it long before
                if failed_over.called and len(done) >= BEFORE + AFTER:
                    return
                done.append((yield operation(number, i, unavailable)))
                if len(done) == BEFORE:
                    self.fail_over().chainDeferred(failed_over)

        yield defer.gatherResults([client(n) for n in range(clients)], consumeErrors=True)
        yield failed_over
        self.assertTrue(unavailable, "the kill failed no request: it did not test a failover")
        # Each refusal came within the store timeout (and a loaded host's slack).
        self.assertLess(max(unavailable), TIMEOUT + 0.5)
        return done

    def client(self, query: str = "", timeout: float = TIMEOUT):
        store = make_store(self.deployment.url(query=query), timeout=timeout, reactor=reactor,
                           key_prefix="tradechat:")
        store.startService()
        self.addCleanup(store.stopService)
        return store


@defer.inlineCallbacks
def until_acknowledged(operation, unavailable: list | None = None):
    """
    Run ``operation`` until the store acknowledges it, as a client with an
    idempotency key would, for L{PATIENCE} seconds at most (each attempt is
    bounded by the store timeout); ``unavailable`` collects how long each
    refused attempt took.
    """
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            return (yield operation())
        except StoreUnavailable:
            if unavailable is not None:
                unavailable.append(time.monotonic() - started)
    raise AssertionError(f"not acknowledged within {PATIENCE:g}s")


class LedgerFailoverTests(SentinelTestCase):
    @defer.inlineCallbacks
    def test_failover_under_load_loses_no_acknowledged_transfer(self):
        """
        Four clients transfer with idempotency keys, retrying what the store
        did not acknowledge; the primary is killed mid-load.  Afterwards
        the balances are exactly the acknowledged transfers and the audit
        balances.
        """
        store = self.client()
        yield until_acknowledged(lambda: store.ledger.open_account("a", 1_000_000))
        yield until_acknowledged(lambda: store.ledger.open_account("b", 0))

        @defer.inlineCallbacks
        def transfer(client, i, unavailable):
            amount, key = 1 + i % 5, f"c{client}-{i}"
            yield until_acknowledged(
                lambda: store.ledger.transfer("a", "b", amount, idempotency_key=key), unavailable)
            return amount

        acknowledged = yield self.across_a_failover(transfer)
        self.assertEqual((yield store.ledger.balance("b")), sum(acknowledged))
        self.assertEqual((yield store.ledger.balance("a")), 1_000_000 - sum(acknowledged))
        self.assertTrue((yield store.ledger.audit()).balanced)
        primary = yield self.deployment.current_primary()
        self.assertIs(primary, self.deployment.replica)

    @defer.inlineCallbacks
    def test_a_write_no_replica_holds_is_never_acknowledged(self):
        """
        With the replica frozen, a deposit is applied on the primary but
        answered "unavailable" once ``WAIT`` times out, never success: had
        it been acknowledged, the failover (to the replica that never got
        it) would lose it.  Retried with its key on the new primary (once
        it has a replica again) it is applied exactly once.
        """
        store = self.client(query="wait_ms=200")
        yield until_acknowledged(lambda: store.ledger.open_account("a", 10))
        replica = self.deployment.replica
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            yield self.assertFailure(store.ledger.deposit("a", 5, idempotency_key="d1"),
                                     StoreUnavailable)
            self.assertLess(time.monotonic() - started, TIMEOUT)
            # The primary did apply it: only the acknowledgement is missing.
            self.assertEqual((yield ask(self.deployment.primary.port,
                                        "HGET", "tradechat:ledger:account:a", "balance")), 15)
            yield self.deployment.primary.kill()
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        yield wait_until(self._replica_promoted, "the sentinels promoted the replica")
        yield self.deployment.restart_as_replica(self.deployment.primary)
        # The restarted server may still be syncing: until it is, a write's
        # WAIT may time out, which the retries below absorb as a client would.
        yield self.deployment.wait_until_ready()
        for _ in range(2):
            self.assertEqual((yield until_acknowledged(
                lambda: store.ledger.deposit("a", 5, idempotency_key="d1"))), 15)
        self.assertEqual((yield store.ledger.balance("a")), 15)

    @defer.inlineCallbacks
    def _replica_promoted(self):
        return (yield self.deployment.primary_port()) == self.deployment.replica.port

    @defer.inlineCallbacks
    def test_restarted_old_primary_takes_no_writes(self):
        """
        The old primary comes back as a replica: the store keeps writing to
        the new primary, and the old one refuses writes.
        """
        store = self.client()
        yield until_acknowledged(lambda: store.ledger.open_account("a", 0))
        old = yield self.deployment.kill_primary_and_fail_over()
        yield self.deployment.restart_as_replica(old)
        for i in range(20):
            yield until_acknowledged(lambda: store.ledger.deposit("a", 1, idempotency_key=f"d{i}"))
        new = self.deployment.replica
        self.assertEqual((yield ask(new.port, "HGET", "tradechat:ledger:account:a", "balance")), 20)
        refusal = yield self.assertFailure(ask(old.port, "SET", "tradechat:probe", "1"), ResponseError)
        self.assertIn("READONLY", str(refusal))

    @defer.inlineCallbacks
    def test_demoted_primary_is_left_for_the_new_one(self):
        """
        A failover the sentinels start themselves (``SENTINEL FAILOVER``)
        demotes the primary while the store is connected to it: the store
        drops that connection and follows, with no write lost.
        """
        store = self.client()
        yield until_acknowledged(lambda: store.ledger.open_account("a", 0))
        yield ask(self.deployment.sentinels[0].port, "SENTINEL", "FAILOVER", "primary")
        yield wait_until(self._replica_promoted, "the sentinels promoted the replica")
        for i in range(10):
            yield until_acknowledged(lambda: store.ledger.deposit("a", 1, idempotency_key=f"d{i}"))
        self.assertEqual((yield ask(self.deployment.replica.port,
                                    "HGET", "tradechat:ledger:account:a", "balance")), 10)

    @defer.inlineCallbacks
    def test_one_sentinel_down_changes_nothing(self):
        """
        With the first sentinel of the URL down, a new store still finds
        the primary, and the two others still fail over.
        """
        yield self.deployment.stop_sentinel(0)
        store = self.client()
        yield until_acknowledged(lambda: store.ledger.open_account("a", 0))
        yield until_acknowledged(lambda: store.ledger.deposit("a", 1, idempotency_key="before"))
        yield self.fail_over()
        yield until_acknowledged(lambda: store.ledger.deposit("a", 1, idempotency_key="after"))
        self.assertEqual((yield store.ledger.balance("a")), 2)


class PurchaseFailoverTests(SentinelTestCase):
    @defer.inlineCallbacks
    def test_failover_under_purchases_keeps_stock_and_money_exact(self):
        """
        Buyers purchase one item as the marketplace does (reserve by
        purchase id, charge with the purchase id as idempotency key,
        commit), retrying each step the store did not acknowledge; the
        primary is killed mid-load.  Afterwards the stock left and the
        money paid are exactly the acknowledged purchases', and the ledger's
        audit balances.
        """
        store = self.client()
        catalog, ledger = store.catalog, store.ledger
        item = yield until_acknowledged(lambda: catalog.create_item(
            1, ItemDraft("lamp", 1, ("light",), True, PRICE, 10_000)))
        yield until_acknowledged(lambda: ledger.open_account("buyer", 10_000_000))
        yield until_acknowledged(lambda: ledger.open_account("seller", 0))

        @defer.inlineCallbacks
        def purchase(buyer, i, unavailable):
            purchase_id, quantity = f"p{buyer}-{i}", 1 + i % 3
            steps = (
                lambda: catalog.reserve(purchase_id, [(item.item_id, quantity)], 60.0),
                lambda: ledger.transfer("buyer", "seller", quantity * PRICE, idempotency_key=purchase_id),
                lambda: catalog.commit(purchase_id, 1),
            )
            for step in steps:
                yield until_acknowledged(step, unavailable)
            return quantity

        bought = yield self.across_a_failover(purchase)
        self.assertEqual((yield catalog.item(item.item_id)).quantity, 10_000 - sum(bought))
        self.assertEqual((yield ledger.balance("seller")), sum(bought) * PRICE)
        self.assertTrue((yield ledger.audit()).balanced)


class _NamingSentinel(protocol.Protocol):
    """Answers every command with the address its factory names as the primary."""

    def connectionMade(self):
        self._reader = hiredis.Reader()

    def dataReceived(self, data):
        self._reader.feed(data)
        while self._reader.gets() is not False:
            port = str(self.factory.primary_port)
            self.transport.write(f"*2\r\n$9\r\n127.0.0.1\r\n${len(port)}\r\n{port}\r\n".encode())


class StaleSentinelTests(unittest.TestCase):
    """
    A sentinel whose view is stale (here: one that names whatever the test
    says) must not make the store read from a replica or keep writing to a
    demoted primary.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.first = yield start_redis(self)
        self.second = RedisServer(self.mktemp(), replica_of=self.first.port)
        self.addCleanup(self.second.stop)
        yield self.second.start()
        self.sentinel = protocol.Factory.forProtocol(_NamingSentinel)
        self.sentinel.primary_port = self.first.port
        port = reactor.listenTCP(0, self.sentinel, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.store = make_store(f"redis+sentinel://127.0.0.1:{port.getHost().port}/primary/0",
                                timeout=TIMEOUT, reactor=reactor, key_prefix="tradechat:")
        self.store.startService()
        self.addCleanup(self.store.stopService)
        yield until_acknowledged(lambda: self.store.ledger.open_account("a", 10))

    @defer.inlineCallbacks
    def test_a_replica_named_primary_is_not_used(self):
        """Not even for a read: the replica's data may be behind."""
        yield self.store.connection.stop()
        self.sentinel.primary_port = self.second.port
        self.store.connection.start()
        yield self.assertFailure(self.store.ledger.balance("a"), StoreUnavailable)

    @defer.inlineCallbacks
    def test_a_demoted_primary_is_left_for_the_new_one(self):
        """
        Demoted while the store is connected, the old primary answers writes
        with -READONLY: the store drops that connection, asks the sentinel
        again, and the retry reaches the new primary.
        """
        yield ask(self.second.port, "REPLICAOF", "NO", "ONE")
        yield ask(self.first.port, "REPLICAOF", "127.0.0.1", str(self.second.port))
        self.sentinel.primary_port = self.second.port
        yield self.assertFailure(self.store.ledger.deposit("a", 1, idempotency_key="d"), StoreUnavailable)
        self.assertEqual((yield until_acknowledged(
            lambda: self.store.ledger.deposit("a", 1, idempotency_key="d"))), 11)

    @defer.inlineCallbacks
    def test_a_primary_short_of_replicas_is_unavailable(self):
        """
        A primary whose ``min-replicas-to-write`` is not met refuses writes
        (``-NOREPLICAS``): unavailable for now, not a refused request.
        """
        yield ask(self.first.port, "CONFIG", "SET", "min-replicas-to-write", "2")
        yield self.assertFailure(self.store.ledger.deposit("a", 1, idempotency_key="d"), StoreUnavailable)
