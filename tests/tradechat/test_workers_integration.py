"""
C{twistd tradechat --workers 2} as real processes on a private Redis: money
under load over two workers, a worker killed with SIGKILL, Redis killed and
restarted, a graceful shutdown, a master killed with SIGKILL, and chat
between members on different workers.

Every wait is on an event (a log line, a reply, a process's exit) with a
timeout; every load loop is bounded in time and count.
"""

from __future__ import annotations

import os
import random
import signal
import time

from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.trial import unittest

from marketplace.store import make_store
from marketplace.tradechat.tap import KEY_PREFIX
from protocols.nsframe import Status
from protocols.tradechat import ResponseError
from tests.support.redis_server import start_redis
from tests.support.services import start_service
from tests.tradechat.helpers import connect_client
from tests.support.tls import make_tls_files
from tests.support.twistd import PROJECT, spawn_twistd
from tests.tradechat.masters import (
    LISTENING, START_TIMEOUT, MasterProcess, process_gone, start_master,
)
from tests.tradechat.test_integration import ConcurrentMoneyMixin

OPENING = 1_000
TRADERS = 24
MAX_OPERATIONS = 20_000
LOAD_SECONDS = 15.0
"""The longest any load loop may run, whatever happens."""
RECONNECT_ATTEMPTS = 200
RECONNECT_BACKOFF = 0.05
"""A client's pause between two connection attempts (a replacement worker
takes about a second to start; a full one refuses at once)."""
EXIT_BOUND = 12.0
"""Seconds a stopped master and its workers may take to be gone (10 s stop timeout + slack)."""


class WorkerMoneyTests(ConcurrentMoneyMixin, unittest.TestCase):
    """200 connections of random money operations over two workers: the audit balances."""

    timeout = 90

    @defer.inlineCallbacks
    def serve(self):
        redis = yield start_redis(self)
        master = yield start_master(self, redis.url, "--compat")
        store = start_service(self, make_store(redis.url, 2.0, reactor, KEY_PREFIX))
        return store.ledger, master.port


class Trader:
    """
    One client doing money operations in a loop and remembering what the
    server acknowledged; after losing its connection it reconnects, logs in
    again and carries on.
    """

    def __init__(self, testcase, name: str, port: int, seed: int) -> None:
        self.testcase = testcase
        self.name = name
        self.port = port
        self.rng = random.Random(seed)
        self.client = None
        self.user_id = None
        self.acknowledged = 0  # the sum of acknowledged balance changes
        self.uncertain: list[int] = []  # changes whose reply a lost connection took
        self.statuses: list[int] = []  # every refusal's status
        self.losses = 0
        self.operations = 0
        self.stopped = False
        self.reconnect = True
        self._progress: list = []
        self._busy_waiters: list = []

    @defer.inlineCallbacks
    def connect(self):
        for _ in range(RECONNECT_ATTEMPTS):
            try:
                self.client = yield connect_client(self.testcase, f"tcp:127.0.0.1:{self.port}")
                reply = yield self.client.login(self.name)
            except (ConnectionLost, ConnectionRefusedError, ResponseError):
                # The worker that took it died meanwhile, or it was full
                # (SERVER_BUSY): back off as a client would, then retry.
                yield task.deferLater(reactor, RECONNECT_BACKOFF, lambda: None)
                continue
            self.user_id = reply.user_id
            return
        self.testcase.fail(f"{self.name} could not reconnect")

    def done_more(self, count: int) -> defer.Deferred:
        """Fire once this trader has had C{count} more operations acknowledged."""
        waiter = defer.Deferred()
        self._progress.append((self.operations + count, waiter))
        return waiter.addTimeout(LOAD_SECONDS, reactor)

    def refused_busy(self) -> defer.Deferred:
        """Fire at this trader's next SERVER_BUSY refusal."""
        waiter = defer.Deferred()
        self._busy_waiters.append(waiter)
        return waiter.addTimeout(LOAD_SECONDS, reactor)

    def _progressed(self) -> None:
        waiting, self._progress = self._progress, []
        for target, waiter in waiting:
            if self.operations >= target:
                waiter.callback(None)
            else:
                self._progress.append((target, waiter))

    @defer.inlineCallbacks
    def run(self, retry_busy: bool = False):
        """
        Deposit and withdraw until stopped.  With C{retry_busy}, a request
        refused SERVER_BUSY is sent again with the same req_id (exactly
        once by the ledger's idempotency key) until it is answered.
        """
        try:
            yield self._run(retry_busy)
        finally:
            waiting, self._progress = self._progress, []
            for _, waiter in waiting:
                waiter.errback(AssertionError(
                    f"{self.name} stopped after {self.operations} operations"))

    @defer.inlineCallbacks
    def _run(self, retry_busy: bool):
        deadline = time.monotonic() + LOAD_SECONDS
        req_id = 1_000_000
        while not self.stopped and self.operations < MAX_OPERATIONS:
            self.testcase.assertLess(time.monotonic(), deadline, f"{self.name} ran too long")
            req_id += 1
            amount = self.rng.randint(1, 50)
            withdraw = self.rng.random() < 0.3
            change = -amount if withdraw else amount
            while True:
                if self.client.protocol.closed:  # lost between two requests
                    self.losses += 1
                    if self.stopped or not self.reconnect:
                        return
                    yield self.connect()
                try:
                    if withdraw:
                        yield self.client.withdraw(amount, req_id)
                    else:
                        yield self.client.deposit(amount, req_id)
                except ResponseError as error:
                    self.statuses.append(error.status)
                    if error.status == Status.SERVER_BUSY:
                        waiting, self._busy_waiters = self._busy_waiters, []
                        for waiter in waiting:
                            waiter.callback(None)
                    if error.status == Status.SERVER_BUSY and retry_busy and not self.stopped:
                        continue
                    break
                except ConnectionLost:
                    self.losses += 1
                    self.uncertain.append(change)
                    if self.stopped or not self.reconnect:
                        return
                    yield self.connect()
                    break
                else:
                    self.acknowledged += change
                    self.operations += 1
                    self._progressed()
                    break


@defer.inlineCallbacks
def traders_at_work(testcase, port: int, count: int = TRADERS, retry_busy: bool = False):
    """
    C{count} traders logged in one after the other (so both workers get
    some) and then all at work; fire with them and the Deferred of their
    loops.
    """
    traders = [Trader(testcase, f"trader{n}", port, n) for n in range(count)]
    testcase.addCleanup(_abandon, traders)
    for trader in traders:
        yield trader.connect()
    loops = defer.gatherResults([t.run(retry_busy) for t in traders], consumeErrors=True)
    yield defer.gatherResults([t.done_more(3) for t in traders], consumeErrors=True)
    return traders, loops


def _abandon(traders) -> None:
    """After a failed test: stop every loop and give up every wait."""
    for trader in traders:
        trader.stopped = True
        for waiter in [w for _, w in trader._progress] + trader._busy_waiters:
            waiter.cancel()


@defer.inlineCallbacks
def stop_traders(traders, loops):
    for trader in traders:
        trader.stopped = True
    yield loops


class WorkerFailureTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def start(self, *arguments, appendonly: bool = False):
        self.redis = yield start_redis(self, appendonly=appendonly)
        self.master = yield start_master(
            self, self.redis.url, "--opening-balance", str(OPENING), *arguments)
        self.store = start_service(self, make_store(self.redis.url, 2.0, reactor, KEY_PREFIX))

    @defer.inlineCallbacks
    def assert_ledger_balances(self, traders, uncertain_allowed: bool):
        report = yield self.store.ledger.audit()
        self.assertTrue(report.balanced, report)
        for trader in traders:
            balance = yield self.store.ledger.balance(str(trader.user_id))
            expected = OPENING + trader.acknowledged
            if uncertain_allowed:
                # A reply lost with a dead worker: applied or not, never twice.
                possible = {expected + sum(trader.uncertain[:n])
                            for n in range(len(trader.uncertain) + 1)}
                self.assertIn(balance, possible, trader.name)
            else:
                self.assertEqual(balance, expected, trader.name)
            self.assertGreaterEqual(balance, 0)

    @defer.inlineCallbacks
    def test_a_killed_worker_is_replaced_within_a_second_and_its_clients_carry_on(self):
        # Half the traders fit in a worker: the others are refused SERVER_BUSY
        # there and retry until the other worker takes them, so each worker
        # has half (and a worker's replacement takes back its reconnecting clients).
        yield self.start("--max-connections", str(TRADERS // 2))
        traders, loops = yield traders_at_work(self, self.master.port)
        victim = self.master.worker_pids[1]
        offset = len(self.master.output)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        yield self.master.wait_for(rb"worker 1 started", after=offset)
        self.assertLess(time.monotonic() - killed_at, 1.0)
        self.assertIn(b"worker 1 (pid %d) died" % victim, self.master.output[offset:])
        yield self.master.wait_for(rb"worker 1 ready", after=offset)
        yield process_gone(victim, 5.0)
        # Everyone, reconnected or not, gets more work done.
        yield defer.gatherResults([t.done_more(3) for t in traders], consumeErrors=True)
        yield stop_traders(traders, loops)

        lost = [t for t in traders if t.losses]
        kept = [t for t in traders if not t.losses]
        self.assertEqual((len(lost), len(kept)), (TRADERS // 2, TRADERS // 2))
        for trader in kept:
            self.assertEqual(
                [s for s in trader.statuses if s != Status.INSUFFICIENT_FUNDS], [], trader.name)
        yield self.assert_ledger_balances(traders, uncertain_allowed=True)

    @defer.inlineCallbacks
    def test_redis_killed_and_restarted_under_load_loses_nothing_acknowledged(self):
        yield self.start("--store-timeout", "0.5", appendonly=True)
        traders, loops = yield traders_at_work(self, self.master.port, retry_busy=True)
        refusals = [t.refused_busy() for t in traders]
        yield self.redis.kill()
        yield defer.DeferredList(refusals, fireOnOneCallback=True, consumeErrors=True)
        for refusal in refusals:
            refusal.cancel()
        yield self.redis.restart()
        yield defer.gatherResults([t.done_more(3) for t in traders], consumeErrors=True)
        yield stop_traders(traders, loops)

        statuses = {s for t in traders for s in t.statuses}
        self.assertIn(Status.SERVER_BUSY, statuses)
        self.assertLessEqual(statuses, {Status.SERVER_BUSY, Status.INSUFFICIENT_FUNDS})
        self.assertEqual([t.name for t in traders if t.losses], [])
        yield self.assert_ledger_balances(traders, uncertain_allowed=False)

    @defer.inlineCallbacks
    def test_graceful_shutdown_under_load_answers_what_it_read_and_leaves_no_process(self):
        yield self.start()
        traders, loops = yield traders_at_work(self, self.master.port)
        pids = self.master.all_worker_pids
        for trader in traders:
            trader.reconnect = False  # they go on sending until their connection closes
        stopping_at = time.monotonic()
        self.master.signal(signal.SIGTERM)
        exit_code = yield self.master.ended.addTimeout(EXIT_BOUND, reactor)
        # twistd ends itself with the signal that stopped it, once it has stopped.
        self.assertIn(exit_code, (0, None))
        self.assertIn(b"workers stopped", self.master.output)
        self.assertNotIn(b"killing them", self.master.output)
        yield defer.gatherResults([process_gone(pid, 1.0) for pid in pids])
        self.assertLess(time.monotonic() - stopping_at, EXIT_BOUND)
        yield stop_traders(traders, loops)

        self.assertEqual([t.name for t in traders if not t.losses], [])
        self.assertEqual({s for t in traders for s in t.statuses} - {Status.INSUFFICIENT_FUNDS},
                         set())
        # A request the server read was answered before the close; the
        # others were never read: no operation is half done.
        yield self.assert_ledger_balances(traders, uncertain_allowed=False)

    @defer.inlineCallbacks
    def test_a_master_killed_with_sigkill_leaves_no_worker_serving(self):
        yield self.start()
        client = yield connect_client(self, f"tcp:127.0.0.1:{self.master.port}")
        yield client.login("survivor")
        pids = self.master.all_worker_pids
        self.master.signal(signal.SIGKILL)
        yield defer.gatherResults([process_gone(pid, EXIT_BOUND) for pid in pids])
        yield client.protocol.when_lost().addTimeout(1.0, reactor)
        yield self.assertFailure(
            connect_client(self, f"tcp:127.0.0.1:{self.master.port}"), ConnectionRefusedError)


class PushLog:
    """The pushes one client receives, with a wait for their number."""

    def __init__(self, expected: int) -> None:
        self.pushes: list = []
        self.complete = defer.Deferred()
        self._expected = expected

    def append(self, push) -> None:
        self.pushes.append(push)
        if len(self.pushes) >= self._expected and not self.complete.called:
            self.complete.callback(None)


class CrossWorkerChatTests(unittest.TestCase):
    timeout = 90

    MEMBERS = 6
    MESSAGES = 15
    #: seconds the members may take to find room on both workers
    FILL_TIMEOUT = 30.0

    @defer.inlineCallbacks
    def test_members_on_both_workers_receive_every_message_once_in_order(self):
        redis = yield start_redis(self)
        # Three connections per worker: the seventh to either is refused
        # SERVER_BUSY, so six members are three on each worker.
        master = yield start_master(self, redis.url, "--max-connections", "3")
        total = self.MEMBERS * self.MESSAGES
        members = []
        busy = 0
        # Which worker accepts a connection is the kernel's choice: on a
        # loaded host one worker may take every connection for a while, so
        # the retries are bounded by time as well as by count.
        give_up_at = reactor.seconds() + self.FILL_TIMEOUT
        while len(members) < self.MEMBERS:
            self.assertLess(reactor.seconds(), give_up_at, "connections kept being refused")
            self.assertLess(busy, 10_000, "connections kept being refused")
            log = PushLog(total)
            client = yield connect_client(self, f"tcp:127.0.0.1:{master.port}", on_push=log.append)
            try:
                yield client.login(f"member{len(members)}")
            except ResponseError as error:
                self.assertEqual(error.status, Status.SERVER_BUSY)
                busy += 1
                continue
            yield client.join(1)
            members.append((client, log))

        yield defer.gatherResults([self._say_all(client, n) for n, (client, _) in enumerate(members)])
        yield defer.gatherResults([log.complete.addTimeout(20.0, reactor) for _, log in members])
        expected = {client.user_id: [f"{n}:{i}".encode() for i in range(self.MESSAGES)]
                    for n, (client, _) in enumerate(members)}
        for _, log in members:
            self.assertEqual(len(log.pushes), total)
            by_sender: dict = {}
            for push in log.pushes:
                by_sender.setdefault(push.from_user_id, []).append(push.message)
            self.assertEqual(by_sender, expected)

    @defer.inlineCallbacks
    def _say_all(self, client, n: int):
        for i in range(self.MESSAGES):
            yield client.say(1, f"{n}:{i}".encode())


class WorkerTLSTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_workers_serve_an_ssl_endpoint_with_its_certificate(self):
        redis = yield start_redis(self)
        tls = make_tls_files(os.path.abspath(self.mktemp()))  # the master runs elsewhere
        master = yield start_master(
            self, redis.url,
            listen=f"ssl:0:interface=127.0.0.1:privateKey={tls.key}:certKey={tls.cert}")
        client = yield connect_client(
            self, f"tls:127.0.0.1:{master.port}:trustRoots={tls.ca_dir}")
        reply = yield client.login("secure")
        self.assertEqual(reply.balance, 0)


class TwoHostTests(unittest.TestCase):
    """tapfiles/tradechat-host.tac twice on one Redis: one service."""

    timeout = 90

    @defer.inlineCallbacks
    def start_host(self, redis_url: str, workers: int) -> defer.Deferred:
        host = MasterProcess()
        spawn_twistd(self, LISTENING, "-y", os.path.join(PROJECT, "tapfiles", "tradechat-host.tac"),
                     process=host, env={"TRADECHAT_STORE": redis_url,
                                        "TRADECHAT_WORKERS": str(workers),
                                        "TRADECHAT_LISTEN": "tcp:0:interface=127.0.0.1"})
        found = yield host.seen.addTimeout(START_TIMEOUT, reactor)
        for slot in range(1, workers + 1 if workers > 1 else 1):  # 1: no workers, no master
            yield host.wait_for(rb"worker %d ready" % slot)
        return int(LISTENING.search(found).group(1))

    @defer.inlineCallbacks
    def test_two_hosts_on_one_redis_share_rooms_and_the_ledger(self):
        redis = yield start_redis(self)
        ports = yield defer.gatherResults([self.start_host(redis.url, 2),
                                           self.start_host(redis.url, 1)])
        logs = [PushLog(2), PushLog(2)]
        clients = []
        for name, port, log in zip(("ana", "ben"), ports, logs):
            client = yield connect_client(self, f"tcp:127.0.0.1:{port}", on_push=log.append)
            yield client.login(name)
            yield client.join(3)
            clients.append(client)
        ana, ben = clients
        yield ana.deposit(500)
        yield ana.say(3, b"from host A")
        yield ben.say(3, b"from host B")
        self.assertEqual((yield ana.transfer(ben.user_id, 200)), 300)
        self.assertEqual((yield ben.balance()), 200)
        for log in logs:
            yield log.complete.addTimeout(10.0, reactor)
            self.assertEqual([p.message for p in log.pushes], [b"from host A", b"from host B"])
