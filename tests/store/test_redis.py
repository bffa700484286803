"""
The contract suite against a real, private redis-server, plus what only a
networked backend can get wrong: outages, hangs, lost script caches, TLS.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import attrs
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from marketplace.store import StoreError, StoreUnavailable, UnknownAccount, make_store
from marketplace.store.redis import directory as redis_directory
from tests.store.backends import RedisBackend
from tests.store.contract import StoreContract

#: The store timeout of every store these tests open.
TIMEOUT = RedisBackend.store_timeout


class RedisTestCase(RedisBackend, unittest.TestCase):
    pass


class RedisStoreContractTests(StoreContract, RedisTestCase):
    pass


class RedisConnectionTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_commands_are_not_held_back_by_nagle(self):
        """
        With Nagle's algorithm a command written while an earlier one is
        unanswered waits for that reply's ACK, so concurrent requests take
        turns; the store's connection turns it off.
        """
        store = self.client()
        yield store.ledger.open_account("a", 1)
        (connection,) = store.connection._factory.pool
        handle = connection.transport.getHandle()
        self.assertTrue(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    @defer.inlineCallbacks
    def test_a_turns_commands_are_pipelined_and_answered_in_order(self):
        store = self.client()
        yield store.ledger.open_account("a", 0)
        deposits = [store.ledger.deposit("a", 1) for _ in range(200)]
        balances = yield defer.gatherResults(deposits)
        self.assertEqual(balances, list(range(1, 201)))

    @defer.inlineCallbacks
    def test_output_the_kernel_does_not_take_at_once_keeps_its_order(self):
        """
        Commands go straight to the socket; what it does not take goes to
        the transport, and later commands follow it there until it is
        written out, so the byte stream keeps the commands' order.
        """
        store = self.client()
        yield store.ledger.open_account("a", 1)
        (connection,) = store.connection._factory.pool
        big = store.connection.execute("SET", "big", "x" * (16 * 1024 * 1024))
        yield task.deferLater(reactor, 0, lambda: None)
        self.assertTrue(connection._held)
        after = store.ledger.deposit("a", 1)
        self.assertEqual((yield big), "OK")
        self.assertEqual((yield after), 2)
        self.assertFalse(connection._held)
        self.assertEqual((yield store.ledger.deposit("a", 1)), 3)

    @defer.inlineCallbacks
    def test_a_retry_made_as_the_connection_drops_is_answered(self):
        """
        A caller that retries from its errback when the connection drops
        gets a new connection, not the dead one (where it would wait
        forever: the dead connection's timer is gone).
        """
        store = self.client()
        yield store.ledger.open_account("a", 1)
        retried = []

        def retry(failure):
            failure.trap(StoreUnavailable)
            retried.append(store.ledger.balance("a"))
        first = store.ledger.balance("a").addErrback(retry)
        (connection,) = store.connection._factory.pool
        connection.transport.abortConnection()
        yield first
        self.assertEqual((yield retried[0]), 1)

    test_a_retry_made_as_the_connection_drops_is_answered.timeout = 10

    @defer.inlineCallbacks
    def test_a_value_that_is_not_utf8_does_not_fail_the_connection(self):
        store = self.client()
        yield store.ledger.open_account("a", 5)
        yield store.connection.execute("SET", "foreign", b"\xff\xfe")
        value = yield store.connection.execute("GET", "foreign")
        self.assertEqual(value.encode("utf-8", "surrogateescape"), b"\xff\xfe")
        self.assertEqual((yield store.ledger.balance("a")), 5)

    @defer.inlineCallbacks
    def test_redis_error_replies_fail_only_their_command(self):
        store = self.client()
        yield store.ledger.open_account("a", 5)
        refused = store.connection.execute("HINCRBY", "not-a-number-key", "f", "x")
        balance = store.ledger.balance("a")
        yield self.assertFailure(refused, StoreError)
        self.assertEqual((yield balance), 5)


class RedisDirectoryLeaseTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_ended_leases_leave_redis_a_bounded_batch_per_claim(self):
        self.patch(redis_directory, "ENDED_LEASES_PER_CLAIM", 3)
        store = self.store
        for n in range(5):
            yield store.directory.user_id_for(f"gone{n}", 1024, lease=0.5)
        yield task.deferLater(reactor, 0.8, lambda: None)
        keys = store.directory._keys(1024)

        @defer.inlineCallbacks
        def sizes():
            sizes = []
            for command, key in zip(("hlen", "hlen", "zcard"), keys):
                sizes.append((yield store.connection.command(command, key)))
            return sizes

        yield store.directory.user_id_for("kept", 1024)
        self.assertEqual((yield sizes()), [3, 3, 2])
        yield store.directory.user_id_for("kept", 1024)
        self.assertEqual((yield sizes()), [1, 1, 0])


class RedisSessionIndexTests(RedisTestCase):
    """Each user's set of session ids expires with its sessions and sheds dead ids."""

    def pttl(self, key):
        return self.store.connection.command("execute_command", "PTTL", key)

    @defer.inlineCallbacks
    def test_the_user_set_expires_with_its_longest_session(self):
        yield self.store.sessions.create("buyer:1", ttl=100)
        self.assertTrue(0 < (yield self.pttl("session:user:buyer:1")) <= 100_000)
        long = yield self.store.sessions.create("buyer:1", ttl=3600)
        self.assertGreater((yield self.pttl("session:user:buyer:1")), 100_000)
        yield self.store.sessions.create("buyer:1", ttl=100)
        self.assertGreater((yield self.pttl("session:user:buyer:1")), 100_000)
        yield self.store.connection.command("execute_command", "PEXPIRE",
                                            "session:user:buyer:1", 1000)
        yield self.store.sessions.touch(long.session_id)
        self.assertGreater((yield self.pttl("session:user:buyer:1")), 100_000)

    @defer.inlineCallbacks
    def test_ids_of_sessions_gone_leave_the_set(self):
        for _ in range(4):
            yield self.store.sessions.create("buyer:2")
        yield self.store.connection.command("execute_command", "DEL", *[
            f"session:{s.session_id}" for s in (yield self.store.sessions.sessions_of("buyer:2"))])
        yield self.store.sessions.create("buyer:2")
        members = yield self.store.connection.command("execute_command", "SCARD",
                                                      "session:user:buyer:2")
        self.assertEqual(members, 1)


class RedisTLSStoreTests(RedisTestCase):
    tls = True

    @defer.inlineCallbacks
    def test_rediss_url_works(self):
        store = self.client()
        yield store.ledger.open_account("a", 7)
        self.assertEqual((yield store.ledger.deposit("a", 3)), 10)

    @defer.inlineCallbacks
    def test_wrong_hostname_is_refused(self):
        url = self.redis.url.replace("hostname=localhost", "hostname=impostor.example")
        store = make_store(url, timeout=TIMEOUT, reactor=reactor)
        store.startService()
        self.addCleanup(store.stopService)
        yield self.assertFailure(store.ledger.balance("a"), StoreUnavailable)


def _retry_until_available(operation, attempts=30):
    """
    Run ``operation`` until the store answers; each attempt is bounded by the
    store timeout, so the whole wait is too.
    """
    @defer.inlineCallbacks
    def attempt():
        for _ in range(attempts):
            try:
                result = yield operation()
            except StoreUnavailable:
                continue
            return result
        raise AssertionError("the store did not recover")
    return attempt()


class RedisOutageTests(RedisTestCase):
    appendonly = True

    @defer.inlineCallbacks
    def assertUnavailableWithinTimeout(self, operation):
        started = time.monotonic()
        yield self.assertFailure(operation(), StoreUnavailable)
        self.assertLess(time.monotonic() - started, TIMEOUT + 1.0)

    @defer.inlineCallbacks
    def test_kill_and_restart_keeps_acknowledged_operations(self):
        store = self.client()
        yield store.ledger.open_account("a", 1000)
        yield store.ledger.open_account("b", 0)
        acknowledged = 0
        for i in range(25):
            yield store.ledger.transfer("a", "b", 3, idempotency_key=f"t{i}")
            acknowledged += 3
        session = yield store.sessions.create("alice")

        yield self.redis.kill()
        yield self.assertUnavailableWithinTimeout(lambda: store.ledger.transfer("a", "b", 3))
        yield self.assertUnavailableWithinTimeout(lambda: store.sessions.touch(session.session_id))

        yield self.redis.restart()
        balance = yield _retry_until_available(lambda: store.ledger.balance("b"))
        self.assertEqual(balance, acknowledged)
        self.assertEqual((yield store.ledger.balance("a")), 1000 - acknowledged)
        self.assertEqual((yield store.sessions.touch(session.session_id)).user_id, "alice")
        self.assertTrue((yield store.ledger.audit()).balanced)
        # A retry of an acknowledged operation is still recognised.
        self.assertEqual((yield store.ledger.transfer("a", "b", 3, idempotency_key="t0")), 1000 - 3)
        self.assertEqual((yield store.ledger.balance("b")), acknowledged)

    @defer.inlineCallbacks
    def test_operations_in_flight_during_a_kill_apply_exactly_once(self):
        """
        Transfers in flight when Redis dies are in doubt for the caller;
        retried with their idempotency keys after the restart, each one is
        applied exactly once.
        """
        store = self.client()
        yield store.ledger.open_account("a", 100_000)
        yield store.ledger.open_account("b", 0)
        amounts = {f"op{i}": 1 + i % 7 for i in range(60)}
        in_flight = {key: store.ledger.transfer("a", "b", amount, idempotency_key=key)
                     for key, amount in amounts.items()}
        # Kill Redis as soon as the 20th reply arrives: the later transfers
        # were sent, most were applied, but their replies are lost.
        killed = []
        in_flight["op19"].addBoth(lambda result: killed.append(self.redis.kill()) or result)
        outcomes = yield defer.DeferredList(list(in_flight.values()), consumeErrors=True)
        yield killed[0]
        in_doubt = []
        for key, (ok, result) in zip(in_flight, outcomes):
            if not ok:
                result.trap(StoreUnavailable)
                in_doubt.append(key)

        self.assertLess(len(in_doubt), len(amounts))
        yield self.redis.restart()
        for key in in_doubt:
            yield _retry_until_available(
                lambda key=key: store.ledger.transfer("a", "b", amounts[key], idempotency_key=key))
        self.assertEqual((yield store.ledger.balance("b")), sum(amounts.values()))
        self.assertEqual((yield store.ledger.balance("a")), 100_000 - sum(amounts.values()))
        self.assertTrue((yield store.ledger.audit()).balanced)

    @defer.inlineCallbacks
    def test_directory_survives_a_redis_restart(self):
        """
        Claimed ids are in Redis's own persistence: while it is down a claim
        fails within the store timeout, and after its restart every name,
        asked for by a new store in any order, has the id it was given.
        """
        store = self.client()
        names = [f"u{n}" for n in range(24)]
        given = {}
        for name in names:
            given[name] = yield store.directory.user_id_for(name, 32)
        self.assertEqual(len(set(given.values())), len(names))
        yield self.redis.kill()
        yield self.assertUnavailableWithinTimeout(lambda: store.directory.user_id_for("u0", 32))
        yield self.redis.restart()
        restarted = self.client()
        for name in reversed(names):
            user_id = yield _retry_until_available(
                lambda name=name: restarted.directory.user_id_for(name, 32))
            self.assertEqual(user_id, given[name])

    @defer.inlineCallbacks
    def test_hung_redis_times_out_then_recovers(self):
        store = self.client()
        yield store.ledger.open_account("a", 10)
        os.kill(self.redis.pid, signal.SIGSTOP)
        try:
            yield self.assertUnavailableWithinTimeout(lambda: store.ledger.deposit("a", 1))
        finally:
            os.kill(self.redis.pid, signal.SIGCONT)
        balance = yield _retry_until_available(lambda: store.ledger.balance("a"))
        # The deposit's fate was unknown to the caller (it may have been
        # applied once Redis woke up); the balance is one of the two.
        self.assertIn(balance, (10, 11))
        self.assertTrue((yield store.ledger.audit()).balanced)

    @defer.inlineCallbacks
    def test_store_started_before_redis_recovers(self):
        yield self.redis.kill()
        store = self.client()
        yield self.assertUnavailableWithinTimeout(lambda: store.ledger.balance("a"))
        yield self.redis.restart()
        # A first attempt may have been applied with its reply lost, so the
        # retry may be told the account exists: either way it must be there.
        yield _retry_until_available(lambda: store.ledger.open_account("fresh", 1))
        self.assertEqual((yield store.ledger.balance("fresh")), 1)

    @defer.inlineCallbacks
    def test_flushed_script_cache_falls_back_to_eval(self):
        store = self.client()
        yield store.ledger.open_account("a", 10)
        self.assertEqual((yield store.ledger.deposit("a", 1)), 11)
        yield store.connection.command("script_flush")
        self.assertEqual((yield store.ledger.deposit("a", 1)), 12)
        self.assertEqual((yield store.ledger.withdraw("a", 2)), 10)

    @defer.inlineCallbacks
    def test_a_write_sent_again_after_a_flushed_script_cache_waits_for_replicas_again(self):
        """
        A durable script that Redis no longer knows is sent again in full,
        followed by a ``WAIT`` of its own: the ``WAIT`` sent behind the
        refused first attempt counted nothing of it.  With a replica asked
        for and none there, the outcome is unavailable (not Redis's
        ``NOSCRIPT``), and the write was made.
        """
        store = self.client()
        yield store.ledger.open_account("a", 10)
        yield store.ledger.deposit("a", 1)
        yield store.connection.command("script_flush")
        plain = store.connection.address
        store.connection.address = attrs.evolve(plain, wait_replicas=1, wait_ms=10)
        with self.assertRaises(StoreUnavailable):
            yield store.ledger.deposit("a", 5, idempotency_key="k")
        store.connection.address = plain
        self.assertEqual((yield store.ledger.balance("a")), 16)
        self.assertEqual((yield store.ledger.deposit("a", 5, idempotency_key="k")), 16)

    @defer.inlineCallbacks
    def test_the_durable_writes_of_a_turn_share_one_wait(self):
        """
        Durable writes made in one reactor turn are followed by one
        ``WAIT``, which Redis counts once; with a replica asked for and none
        there, each is unavailable, and each was made.
        """
        store = self.client()
        accounts = ["a", "b", "c"]
        for account in accounts:
            yield store.ledger.open_account(account, 10)
        yield store.connection.execute("CONFIG", "RESETSTAT")
        plain = store.connection.address
        store.connection.address = attrs.evolve(plain, wait_replicas=1, wait_ms=10)
        writes = [store.ledger.deposit(account, 1, idempotency_key=account) for account in accounts]
        store.connection.address = plain
        for succeeded, failure in (yield defer.DeferredList(writes, consumeErrors=True)):
            self.assertFalse(succeeded)
            failure.trap(StoreUnavailable)
        stats = yield store.connection.execute("INFO", "commandstats")
        self.assertIn("cmdstat_wait:calls=1,", stats)
        for account in accounts:
            self.assertEqual((yield store.ledger.balance(account)), 11)


class LegacyHistoryTests(RedisTestCase):
    """
    Earlier releases kept an account's history as a sorted set by
    transaction id (C{ledger:history:<account>}); the scripts move it in
    front of the account's list the first time they meet the account.
    """

    @defer.inlineCallbacks
    def as_earlier_release(self, store, account):
        """Put C{account}'s history back the way earlier releases kept it."""
        execute = store.connection.execute
        entries = yield execute("LRANGE", "ledger:entries:" + account, 0, -1)
        for entry in entries:
            yield execute("ZADD", "ledger:history:" + account, entry.split("|", 1)[0], entry)
        yield execute("DEL", "ledger:entries:" + account)

    @defer.inlineCallbacks
    def assert_moved(self, store, account):
        execute = store.connection.execute
        self.assertEqual((yield execute("EXISTS", "ledger:history:" + account)), 0)
        self.assertEqual((yield execute("TYPE", "ledger:entries:" + account)), "list")

    @defer.inlineCallbacks
    def test_reading_a_history_moves_it(self):
        store = self.store
        yield store.ledger.open_account("a", 100)
        for amount in range(1, 6):
            yield store.ledger.deposit("a", amount)
        before = yield store.ledger.history("a")
        page = yield store.ledger.history("a", limit=2, before=before[1].txn_id)
        yield self.as_earlier_release(store, "a")
        self.assertEqual((yield store.ledger.history("a")), before)
        yield self.assert_moved(store, "a")
        self.assertEqual((yield store.ledger.history("a", limit=2, before=before[1].txn_id)), page)

    @defer.inlineCallbacks
    def test_a_long_history_moves_whole_and_in_order(self):
        execute = self.store.connection.execute
        count = 2500  # more than one batch of the move
        yield execute("HSET", "ledger:account:a", "balance", count)
        scored = []
        for txn in range(1, count + 1):
            scored += [txn, f"{txn}|deposit||1|{txn}|1765000000.000000"]
        yield execute("ZADD", "ledger:history:a", *scored)
        history = yield self.store.ledger.history("a", limit=count + 1)
        self.assertEqual([entry.txn_id for entry in history], list(range(count, 0, -1)))

    @defer.inlineCallbacks
    def test_a_money_operation_puts_the_older_entries_first(self):
        store = self.store
        yield store.ledger.open_account("a", 100)
        yield store.ledger.open_account("b", 5)
        yield store.ledger.withdraw("a", 1)
        older = {}
        for account in "ab":
            older[account] = yield store.ledger.history(account)
            yield self.as_earlier_release(store, account)
        yield store.ledger.transfer("a", "b", 10)
        for account, kind, balance in (("a", "transfer_out", 89), ("b", "transfer_in", 15)):
            newest, *rest = yield store.ledger.history(account)
            self.assertEqual((newest.kind, newest.balance_after), (kind, balance))
            self.assertEqual(rest, older[account])
            yield self.assert_moved(store, account)
        self.assertTrue((yield store.ledger.audit()).balanced)

    @defer.inlineCallbacks
    def test_an_audit_moves_every_history_and_stays_exact(self):
        store = self.store
        for account in "abc":
            yield store.ledger.open_account(account, 50)
            yield store.ledger.deposit(account, 7)
            yield self.as_earlier_release(store, account)
        report = yield store.ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual((report.accounts, report.balance_total), (3, 171))
        for account in "abc":
            yield self.assert_moved(store, account)

    @defer.inlineCallbacks
    def test_retention_cuts_a_moved_history_with_the_audit_exact(self):
        from marketplace.store.ledger_rules import parse_history_keep
        store = self.client(history_keep=parse_history_keep("16"))
        yield store.ledger.open_account("a", 1000)
        for _ in range(16):
            yield store.ledger.withdraw("a", 1)
        yield self.as_earlier_release(store, "a")
        for _ in range(8):
            yield store.ledger.deposit("a", 2)
        history = yield store.ledger.history("a", limit=100)
        self.assertIn(len(history), (16, 17))  # of 25: N, and N/16 more between cuts
        self.assertEqual((history[0].kind, history[0].balance_after), ("deposit", 1000))
        self.assertEqual([entry.txn_id for entry in history],
                         sorted((entry.txn_id for entry in history), reverse=True))
        report = yield store.ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual(report.balance_total, 1000 - 16 + 16)


class KeyPrefixTests(RedisTestCase):
    """
    Each system keeps its keys under its own prefix, so systems sharing one
    Redis never count or touch each other's money, sessions or names.
    """

    def system_store(self, key_prefix, url=None):
        store = make_store(url or self.redis.url, timeout=TIMEOUT, reactor=reactor,
                           key_prefix=key_prefix)
        store.startService()
        self.addCleanup(store.stopService)
        return store

    @defer.inlineCallbacks
    def keys(self):
        found, cursor = [], "0"
        while True:
            cursor, batch = yield self.store.connection.execute("SCAN", cursor, "COUNT", 1000)
            found += batch
            if cursor == "0":
                return sorted(found)

    @defer.inlineCallbacks
    def test_two_systems_on_one_redis_are_audited_apart(self):
        from marketplace.market.tap import KEY_PREFIX as MARKET
        from marketplace.tradechat.tap import KEY_PREFIX as TRADECHAT
        tradechat, market = self.system_store(TRADECHAT), self.system_store(MARKET)
        yield tradechat.ledger.open_account("7", 100)
        yield tradechat.ledger.deposit("7", 5)
        yield market.ledger.open_account("7", 1000)
        yield market.ledger.withdraw("7", 30, idempotency_key="purchase:1")
        yield tradechat.sessions.create("7")
        yield tradechat.directory.user_id_for("alice", 1024)

        chat_audit = yield tradechat.ledger.audit()
        market_audit = yield market.ledger.audit()
        self.assertEqual((chat_audit.accounts, chat_audit.balance_total), (1, 105))
        self.assertEqual((market_audit.accounts, market_audit.balance_total), (1, 970))
        self.assertTrue(chat_audit.balanced and market_audit.balanced)
        self.assertEqual((yield tradechat.ledger.balance("7")), 105)
        self.assertEqual((yield market.ledger.balance("7")), 970)
        keys = yield self.keys()
        self.assertTrue(keys)
        self.assertEqual([k for k in keys if not k.startswith((TRADECHAT, MARKET))], [])
        self.assertIn(TRADECHAT + "ledger:totals", keys)
        self.assertIn(MARKET + "ledger:totals", keys)

    @defer.inlineCallbacks
    def test_the_url_prefix_overrides_the_systems(self):
        url = self.redis.url + "?prefix=eu1:"
        eu1 = self.system_store("tradechat:", url)
        yield eu1.ledger.open_account("a", 3)
        other = self.system_store("tradechat:")
        yield self.assertFailure(other.ledger.balance("a"), UnknownAccount)
        self.assertEqual((yield self.keys()), sorted(
            ["eu1:ledger:totals", "eu1:ledger:txn", "eu1:ledger:accounts",
             "eu1:ledger:account:a", "eu1:ledger:entries:a"]))
