"""
The plugin's service over real loopback connections: 200 concurrent clients
moving money on each store with an exact audit afterwards, servers sharing
one Redis agreeing on every name's user id, pushes to a silent member,
password login over TLS, and output written straight to sockets.
"""

from __future__ import annotations

import random
import socket

from twisted.internet import defer, reactor
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from marketplace.store.directory_rules import home_slot
from marketplace.tradechat import auth
from protocols import tradechat_bodies as bodies
from protocols.nsframe import FrameDecoder, Opcode, Status, encode_frame
from protocols.tradechat import CLOSE_GRACE, ResponseError
from tests.support.redis_server import start_redis
from tests.support.tls import make_tls_files
from tests.tradechat.helpers import connect_client, start_server

CONNECTIONS = 200
RUN_SECONDS = 2.0
MAX_OPERATIONS_PER_CLIENT = 150
OPENING = 100_000
CHATS_TO_FILL_BUFFERS = 40_000
CHATS_IN_FLIGHT = 200


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
    def serve(self):
        """Start the --compat service under test; fire with (its ledger, its port)."""
        arguments = yield self.store_arguments()
        root, port = yield start_server(self, "--compat", *arguments)
        return root.getServiceNamed("store").ledger, port

    @defer.inlineCallbacks
    def test_concurrent_random_money_operations_balance_exactly(self):
        ledger, port = yield self.serve()
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


class SharedRedisDirectoryTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_servers_on_one_redis_agree_on_ids(self):
        """
        Two --compat servers on one Redis (two workers, or one restarted):
        names whose home slots collide keep their ids whatever order they log
        in to the second one, and so keep their balances.
        """
        redis = yield start_redis(self)
        by_home = {}
        names = None
        n = 0
        while names is None:
            name = f"trader{n}"
            clash = by_home.setdefault(home_slot(name, 1024), [])
            clash.append(name)
            if len(clash) == 3:
                names = clash
            n += 1
        _, first_port = yield start_server(self, "--compat", "--store", redis.url)
        first_ids = []
        for amount, name in enumerate(names, 1):
            client = yield connect_client(self, f"tcp:127.0.0.1:{first_port}")
            first_ids.append((yield client.login(name)).user_id)
            yield client.deposit(amount)
        self.assertEqual(len(set(first_ids)), 3)
        _, second_port = yield start_server(self, "--compat", "--store", redis.url)
        for name in reversed(names):
            client = yield connect_client(self, f"tcp:127.0.0.1:{second_port}")
            reply = yield client.login(name)
            index = names.index(name)
            self.assertEqual((reply.user_id, reply.balance), (first_ids[index], OPENING + index + 1))


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
        yield talker.join(3)
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
        decoy_secret = FilePath(self.mktemp())
        decoy_secret.setContent(b"a decoy secret of 16 bytes or more")
        decoy_secret.chmod(0o600)
        _, port = yield start_server(self, "--listen", listen, "--credentials", credentials.path,
                                     "--decoy-secret", decoy_secret.path, "--require-password")
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


class RawPeer(Protocol):
    """Collects what the server sends and notices the close."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)


class WriteAtOnceTests(unittest.TestCase):
    """
    Output written straight to the socket (plain TCP): replies queued just
    before a close still go out, the close is not held up by the writer's
    producer registration, and a member that stops reading is dropped.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_checksum_failure_is_answered_then_the_connection_closes_at_once(self):
        _, port = yield start_server(self)
        peer = RawPeer()
        yield connectProtocol(clientFromString(reactor, f"tcp:127.0.0.1:{port}"), peer)
        frame = bytearray(encode_frame(Opcode.DEPOSIT, 7, 0, bytes(8)))
        frame[-1] ^= 0xFF
        peer.transport.write(bytes(frame))
        # Well before the grace after which a closing connection is aborted.
        yield peer.lost.addTimeout(CLOSE_GRACE / 2, reactor)
        decoder = FrameDecoder()
        decoder.receive(bytes(peer.received))
        [response] = decoder.frames()
        self.assertEqual((response.opcode, response.req_id, response.status),
                         (Opcode.DEPOSIT, 7, Status.CHECKSUM_FAIL))

    @defer.inlineCallbacks
    def test_members_that_stop_reading_are_dropped_once_their_sum_is_too_much(self):
        """Each stays under --max-output-buffer; together they pass --max-total-output."""
        root, port = yield start_server(self, "--max-total-output", "262144")
        description = f"tcp:127.0.0.1:{port}"
        readers = []
        for n in range(4):
            reader = yield connect_client(self, description)
            yield reader.login(f"reader{n}")
            yield reader.join(0)
            reader.protocol.transport.getHandle().setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.protocol.transport.pauseProducing()
            readers.append(reader)
        talker = yield connect_client(self, description)
        yield talker.login("talker")
        yield talker.join(0)
        counts = root.factory.counters.counts
        budget = root.factory.output_budget
        message = b"x" * 1000
        for _ in range(CHATS_TO_FILL_BUFFERS // CHATS_IN_FLIGHT):
            if counts["output_budget_disconnect"]:
                break
            yield defer.gatherResults([talker.say(0, message) for _ in range(CHATS_IN_FLIGHT)])
            self.assertLessEqual(budget.total, budget.limit)
        self.assertGreaterEqual(counts["output_budget_disconnect"], 1)
        self.assertEqual(counts["slow_reader_disconnect"], 0)
        balance = yield talker.balance()
        self.assertEqual(balance, 0)
        self.assertEqual(len(root.factory.connections), 5 - counts["output_budget_disconnect"])

    @defer.inlineCallbacks
    def test_member_that_stops_reading_is_dropped(self):
        root, port = yield start_server(self, "--max-output-buffer", "65536")
        description = f"tcp:127.0.0.1:{port}"
        reader = yield connect_client(self, description)
        talker = yield connect_client(self, description)
        yield reader.login("reader")
        yield reader.join(0)
        yield talker.login("talker")
        yield talker.join(0)
        reader.protocol.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.protocol.transport.pauseProducing()
        counts = root.factory.counters.counts
        message = b"x" * 1000
        # Far more than loopback's socket buffers hold; stops once dropped.
        for _ in range(CHATS_TO_FILL_BUFFERS // CHATS_IN_FLIGHT):
            if counts["slow_reader_disconnect"]:
                break
            yield defer.gatherResults([talker.say(0, message) for _ in range(CHATS_IN_FLIGHT)])
        self.assertEqual(counts["slow_reader_disconnect"], 1)
        reader.protocol.transport.resumeProducing()
        yield reader.protocol.when_lost().addTimeout(10, reactor)
        balance = yield talker.balance()
        self.assertEqual(balance, 0)
