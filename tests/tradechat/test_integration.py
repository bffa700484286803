"""
The plugin's service over real loopback connections: 200 concurrent clients
moving money on each store with an exact audit afterwards, pushes to a silent
member, and password login over TLS.
"""

from __future__ import annotations

import random

from twisted.internet import defer, reactor
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from marketplace.tradechat import auth
from protocols import tradechat_bodies as bodies
from protocols.nsframe import Status
from protocols.tradechat import ResponseError
from tests.support.redis_server import start_redis
from tests.support.tls import make_tls_files
from tests.tradechat.helpers import connect_client, start_server

CONNECTIONS = 200
RUN_SECONDS = 2.0
MAX_OPERATIONS_PER_CLIENT = 150
OPENING = 100_000


class _Run:
    """Totals of what the server acknowledged, to check against the ledger."""

    def __init__(self):
        self.deposited = 0
        self.withdrawn = 0
        self.ok = 0
        self.refused = 0


class ConcurrentMoneyMixin:
    """Mixed into one test case per store (store_arguments supplies --store)."""

    def store_arguments(self):
        return defer.succeed([])

    @defer.inlineCallbacks
    def test_concurrent_random_money_operations_balance_exactly(self):
        arguments = yield self.store_arguments()
        root, port = yield start_server(self, "--compat", *arguments)
        description = f"tcp:127.0.0.1:{port}"
        clients = yield defer.gatherResults(
            [connect_client(self, description) for _ in range(CONNECTIONS)], consumeErrors=True)
        logins = yield defer.gatherResults(
            [c.login(f"worker{n}") for n, c in enumerate(clients)], consumeErrors=True)
        run = _Run()
        deadline = reactor.seconds() + RUN_SECONDS
        yield defer.gatherResults(
            [self._work(client, reply.user_id, run, deadline, random.Random(n))
             for n, (client, reply) in enumerate(zip(clients, logins))], consumeErrors=True)
        self.assertGreater(run.ok, CONNECTIONS)
        self.assertGreater(run.refused, 0)

        ledger = root.getServiceNamed("store").ledger
        report = yield ledger.audit()
        self.assertTrue(report.balanced, report)
        self.assertEqual(report.opening_total, 1024 * OPENING)
        self.assertEqual((report.deposit_total, report.withdrawal_total),
                         (run.deposited, run.withdrawn))
        balances = yield defer.gatherResults([ledger.balance(str(n)) for n in range(1024)])
        self.assertEqual(sum(balances), 1024 * OPENING + run.deposited - run.withdrawn)
        self.assertGreaterEqual(min(balances), 0)

    @defer.inlineCallbacks
    def _work(self, client, user_id, run, deadline, rng):
        for _ in range(MAX_OPERATIONS_PER_CLIENT):
            if reactor.seconds() >= deadline:
                return
            choice = rng.random()
            amount = rng.randint(1, 40_000)
            try:
                if choice < 0.4:
                    target = rng.choice([n for n in range(1024) if n != user_id][:64])
                    yield client.transfer(target, amount)
                elif choice < 0.7:
                    yield client.withdraw(amount)
                    run.withdrawn += amount
                else:
                    yield client.deposit(amount)
                    run.deposited += amount
                run.ok += 1
            except ResponseError as error:
                self.assertEqual(error.status, Status.INSUFFICIENT_FUNDS)
                run.refused += 1


class MemoryStoreConcurrencyTests(ConcurrentMoneyMixin, unittest.TestCase):
    timeout = 60


class RedisStoreConcurrencyTests(ConcurrentMoneyMixin, unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def store_arguments(self):
        redis = yield start_redis(self)
        return ["--store", redis.url]


class LiveTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_silent_member_gets_pushes_in_order_over_tcp(self):
        _, port = yield start_server(self)
        received = []
        arrived = defer.Deferred()

        def on_push(push):
            received.append(push)
            if len(received) == 10:
                arrived.callback(None)

        silent = yield connect_client(self, f"tcp:127.0.0.1:{port}", on_push=on_push)
        talker = yield connect_client(self, f"tcp:127.0.0.1:{port}")
        yield silent.login("silent")
        yield silent.join(3)
        sender = yield talker.login("talker")
        for n in range(10):
            talker.say(3, b"message %d" % n)
        yield arrived.addTimeout(10, reactor)
        self.assertEqual([(p.room, p.from_user_id, p.message) for p in received],
                         [(3, sender.user_id, b"message %d" % n) for n in range(10)])

    @defer.inlineCallbacks
    def test_password_login_over_tls(self):
        tls = make_tls_files(self.mktemp())
        credentials = FilePath(self.mktemp())
        credentials.setContent(auth.format_credential(auth.hash_password(
            "alice", "s3cret", time_cost=1, memory_cost_kib=8, parallelism=1)).encode())
        listen = f"ssl:0:interface=127.0.0.1:privateKey={tls.key}:certKey={tls.cert}"
        _, port = yield start_server(self, "--listen", listen, "--credentials", credentials.path,
                                     "--require-password")
        description = f"tls:127.0.0.1:{port}:trustRoots={tls.ca_dir}"
        client = yield connect_client(self, description)
        reply = yield client.login("alice", "s3cret")
        balance = yield client.deposit(25)
        self.assertEqual(balance, reply.balance + 25)
        anonymous = yield connect_client(self, description)
        error = yield self.assertFailure(anonymous.login("bob"), ResponseError)
        self.assertEqual(error.status, Status.UNAUTHORIZED)
        history = yield client.history(5)
        self.assertEqual([entry.kind for entry in history], ["deposit", "open"])
        self.assertIsInstance(history[0], bodies.HistoryEntry)
