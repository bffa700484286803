"""
The pieces of C{--workers} without real processes: the supervisor over a
fake reactor, the worker status codec, the options, the per-process
connection limit and the graceful close of a connection at shutdown.
"""

from __future__ import annotations

import signal

from twisted.internet import defer, error
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial import unittest

from marketplace.metrics import CONNECTION_CLOSED, CONNECTION_OPENED
from marketplace.supervisor import (
    LISTEN_FD, RESTART_BACKOFF, STATUS_FD, STOP_TIMEOUT, WorkerSupervisor,
)
from marketplace.tradechat.tap import Options
from protocols import tradechat_bodies as bodies
from protocols.nsframe import Status
from protocols.tradechat import CLOSE_TIMEOUT
from protocols.workerstatus import (
    MAX_COUNTER_NAME, MAX_LINE, Status as WorkerStatus, StatusDecoder, StatusError, encode_status,
)
from tests.tradechat.helpers import Harness


class FakeProcessTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stdin_closed = False
        self.signals: list = []

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, signum) -> None:
        if self.pid is None:
            raise error.ProcessExitedAlready()
        self.signals.append(signum)


class ProcessReactor(MemoryReactorClock):
    """A clock that records spawned processes instead of starting them."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list = []
        self._pids = iter(range(1000, 2000))

    def spawnProcess(self, processProtocol, executable, args=(), env=None, path=None,
                     uid=None, gid=None, usePTY=0, childFDs=None):
        transport = FakeProcessTransport(next(self._pids))
        self.spawned.append((processProtocol, executable, args, childFDs))
        processProtocol.makeConnection(transport)
        return transport


class FakeSocket:
    def fileno(self) -> int:
        return 42


def ended(worker, code=0) -> None:
    reason = error.ProcessDone(None) if code == 0 else error.ProcessTerminated(code)
    worker.transport.pid = None
    worker.processEnded(Failure(reason))


class SupervisorTests(unittest.TestCase):
    def setUp(self):
        self.reactor = ProcessReactor()
        self.supervisor = WorkerSupervisor(2, "/usr/bin/python3", ["-m", "worker", "--x"],
                                           FakeSocket(), self.reactor, env={})
        self.supervisor.startService()

    def ready(self, *workers):
        for worker in workers:
            worker.childDataReceived(STATUS_FD, encode_status("ready"))

    def test_starts_each_worker_with_the_socket_and_its_pipes(self):
        self.assertEqual(len(self.reactor.spawned), 2)
        _, executable, args, fds = self.reactor.spawned[0]
        self.assertEqual(args, ["/usr/bin/python3", "-m", "worker", "--x"])
        self.assertEqual(fds, {0: "w", 1: "r", 2: "r", LISTEN_FD: 42, STATUS_FD: "r"})

    def test_a_worker_that_dies_is_replaced_at_once(self):
        first, second = self.supervisor.workers.values()
        self.ready(first, second)
        ended(first, 9)
        self.reactor.advance(0)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertIs(self.supervisor.workers[2], second)
        self.assertIsNot(self.supervisor.workers[1], first)
        self.assertEqual(self.supervisor.restarts, 1)

    def test_a_worker_that_never_got_ready_is_replaced_after_a_pause(self):
        first = self.supervisor.workers[1]
        ended(first, 1)
        self.reactor.advance(RESTART_BACKOFF - 0.01)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(0.01)
        self.assertEqual(len(self.reactor.spawned), 3)

    def test_ready_waits_for_every_worker(self):
        first, second = self.supervisor.workers.values()
        waiting = self.supervisor.when_all_ready()
        self.ready(first)
        self.assertNoResult(waiting)
        self.ready(second)
        self.successResultOf(waiting)

    def test_stop_closes_stdin_and_waits_for_the_workers(self):
        workers = list(self.supervisor.workers.values())
        stopping = self.supervisor.stopService()
        self.assertEqual([w.transport.stdin_closed for w in workers], [True, True])
        self.assertNoResult(stopping)
        for worker in workers:
            ended(worker)
        self.successResultOf(stopping)
        self.assertEqual(len(self.reactor.spawned), 2)  # no restart while stopping

    def test_workers_still_running_after_the_stop_timeout_are_killed(self):
        first, second = self.supervisor.workers.values()
        stopping = self.supervisor.stopService()
        ended(first)
        self.reactor.advance(STOP_TIMEOUT)
        self.assertEqual(second.transport.signals, [signal.SIGKILL])
        self.assertEqual(first.transport.signals, [])
        ended(second, 9)
        self.successResultOf(stopping)

    def test_a_pending_restart_is_cancelled_by_the_stop(self):
        ended(self.supervisor.workers[1], 1)
        stopping = self.supervisor.stopService()
        ended(self.supervisor.workers[2])
        self.successResultOf(stopping)
        self.reactor.advance(RESTART_BACKOFF)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_counters_of_all_workers_read_as_one_even_after_a_restart(self):
        first, second = self.supervisor.workers.values()
        first.childDataReceived(STATUS_FD, encode_status("counters", {"connections": 3}))
        second.childDataReceived(STATUS_FD, encode_status("counters", {"connections": 4,
                                                                        "unauthorized": 1}))
        self.assertEqual(self.supervisor.counters(), {"connections": 7, "unauthorized": 1})
        ended(first, 9)
        self.reactor.advance(RESTART_BACKOFF)
        replacement = self.supervisor.workers[1]
        replacement.childDataReceived(STATUS_FD, encode_status("counters", {"connections": 1}))
        self.assertEqual(self.supervisor.counters(), {"connections": 8, "unauthorized": 1})

    def test_a_dead_workers_connections_are_no_longer_open(self):
        """Its connections died with it: the open-connections gauge must not keep them."""
        first, second = self.supervisor.workers.values()
        first.childDataReceived(STATUS_FD, encode_status(
            "counters", {CONNECTION_OPENED: 5, CONNECTION_CLOSED: 2}))
        second.childDataReceived(STATUS_FD, encode_status(
            "counters", {CONNECTION_OPENED: 4, CONNECTION_CLOSED: 3}))
        ended(first, 9)
        counters = self.supervisor.counters()
        self.assertEqual(counters[CONNECTION_OPENED], 9)
        self.assertEqual(counters[CONNECTION_OPENED] - counters[CONNECTION_CLOSED], 1)

    def test_bad_status_lines_are_counted_and_dropped(self):
        worker = self.supervisor.workers[1]
        worker.childDataReceived(STATUS_FD, b'{"kind": "counters", "counters": {"x": -1}}\n'
                                            b"garbage\n" + encode_status("counters", {"x": 2}))
        self.assertEqual(self.supervisor.bad_status, 2)
        self.assertEqual(self.supervisor.counters(), {"x": 2})

    def test_worker_output_is_logged_line_by_line(self):
        worker = self.supervisor.workers[2]
        logged = []
        self.patch(type(worker), "log", _Recorder(logged))
        worker.childDataReceived(2, b"first li")
        worker.childDataReceived(2, b"ne\nsecond\n")
        self.assertEqual(logged, ["first line", "second"])


class _Recorder:
    def __init__(self, lines):
        self.lines = lines

    def info(self, format, **kwargs):
        self.lines.append(kwargs["line"])


class StatusCodecTests(unittest.TestCase):
    def test_round_trip_in_any_split(self):
        data = encode_status("ready") + encode_status("counters", {"a": 1, "b": 0})
        for split in range(len(data) + 1):
            decoder = StatusDecoder()
            messages = decoder.receive(data[:split]) + decoder.receive(data[split:])
            self.assertEqual(messages, [WorkerStatus("ready"), WorkerStatus("counters")])
            self.assertEqual(messages[1].counters, {"a": 1, "b": 0})

    def test_hostile_lines_are_errors_and_decoding_goes_on(self):
        bad = [b"[]", b'{"kind": "shutdown"}', b'{"kind": "counters", "counters": []}',
               b'{"kind": "counters", "counters": {"a": 1.5}}',
               b'{"kind": "counters", "counters": {"a": true}}',
               b'{"kind": "counters", "counters": {"' + b"n" * (MAX_COUNTER_NAME + 1) + b'": 1}}',
               b"\xff"]
        decoder = StatusDecoder()
        messages = decoder.receive(b"\n".join(bad) + b"\n" + encode_status("ready"))
        self.assertEqual([type(m) for m in messages], [StatusError] * len(bad) + [WorkerStatus])

    def test_an_overlong_line_is_dropped_without_buffering_it(self):
        decoder = StatusDecoder()
        messages = decoder.receive(b"x" * (MAX_LINE + 1))
        self.assertEqual([type(m) for m in messages], [StatusError])
        self.assertEqual(decoder.receive(b"y" * MAX_LINE), [])
        self.assertEqual(decoder.receive(b"\n" + encode_status("ready")), [WorkerStatus("ready")])


class OptionsTests(unittest.TestCase):
    def test_workers_need_a_shared_store(self):
        error_ = self.assertRaises(usage.UsageError, Options().parseOptions, ["--workers", "2"])
        self.assertIn("--workers above 1 needs a shared store", str(error_))

    def test_workers_on_redis_and_the_arguments_kept_for_them(self):
        options = Options()
        arguments = ["--workers", "3", "--store", "redis://127.0.0.1:1/0", "--compat"]
        options.parseOptions(arguments)
        self.assertEqual((options["workers"], options.arguments), (3, arguments))

    def test_worker_count_and_connection_limit_are_checked(self):
        for arguments in (["--workers", "0"], ["--workers", "65"], ["--max-connections", "0"]):
            self.assertRaises(usage.UsageError, Options().parseOptions, arguments)


class ConnectionLimitTests(unittest.TestCase):
    def test_the_connection_past_the_limit_alone_is_answered_server_busy(self):
        harness = Harness(max_connections=2)
        served = [harness.logged_in("alice"), harness.logged_in("bob")]
        refused = harness.connect()
        response = refused.ask(bodies.Hello(), req_id=7)
        self.assertEqual((response.req_id, response.status), (7, Status.SERVER_BUSY))
        self.assertTrue(refused.transport.disconnecting)
        self.assertEqual(harness.counters.counts["server_busy"], 1)
        for peer in served:
            self.assertEqual(peer.ask(bodies.Balance()).status, Status.OK)

    def test_a_refused_connection_that_says_nothing_is_closed(self):
        harness = Harness(max_connections=1)
        harness.connect()
        silent = harness.connect()
        harness.clock.advance(CLOSE_TIMEOUT)
        self.assertTrue(silent.transport.disconnected)

    def test_a_slot_freed_by_a_close_serves_the_next_connection(self):
        harness = Harness(max_connections=1)
        first = harness.connect()
        first.protocol.connectionLost(None)
        harness.logged_in("carol")


class GracefulCloseTests(unittest.TestCase):
    def test_requests_already_read_are_answered_before_the_close(self):
        harness = Harness()
        peer = harness.logged_in("alice")
        depositing = defer.Deferred()
        ledger = harness.store.ledger
        real_deposit = ledger.deposit
        self.patch(ledger, "deposit", lambda *args: depositing.addCallback(
            lambda _: real_deposit(*args)))
        first = peer.send(bodies.Deposit(5))
        second = peer.send(bodies.Balance())
        closed = harness.factory.close_connections()
        self.assertFalse(peer.transport.disconnecting)
        self.assertTrue(peer.transport.producerState == "paused")
        depositing.callback(None)
        frames = peer.received()
        self.assertEqual([(f.req_id, f.status) for f in frames],
                         [(first, Status.OK), (second, Status.OK)])
        self.assertTrue(peer.transport.disconnecting)
        peer.protocol.connectionLost(None)
        self.successResultOf(closed)

    def test_connections_still_open_at_the_timeout_are_aborted(self):
        harness = Harness()
        peer = harness.logged_in("alice")
        self.patch(harness.store.ledger, "balance", lambda *args: defer.Deferred())
        peer.send(bodies.Balance())
        closed = harness.factory.close_connections()
        harness.clock.advance(CLOSE_TIMEOUT)
        self.assertTrue(peer.transport.disconnected)
        self.failureResultOf(closed, defer.TimeoutError)
