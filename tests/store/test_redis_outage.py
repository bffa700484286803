"""
A Redis outage is two log lines, one when it starts and one when it ends,
and no line per reconnection attempt (against a real redis-server that is
killed and restarted).
"""

from __future__ import annotations

import time

import attrs
from twisted.internet import defer, reactor, task
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from marketplace.store import StoreUnavailable, make_store
from marketplace.store.redis.outage import OutageLog
from tests.support.redis_server import start_redis

#: Seconds any one wait of this test may take.
WAIT = 20.0


class CapturedLog:
    """Every log event while the test runs, as (level, text)."""

    def __init__(self, testcase):
        self.lines: list[tuple[LogLevel, str]] = []
        globalLogPublisher.addObserver(self)
        testcase.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event):
        self.lines.append((event.get("log_level"), formatEvent(event)))

    def containing(self, text: str) -> list[tuple[LogLevel, str]]:
        return [line for line in self.lines if text in line[1]]


@defer.inlineCallbacks
def _until(condition, what: str):
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        yield task.deferLater(reactor, 0.05, lambda: None)


class RedisOutageLogTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_an_outage_is_one_line_at_its_start_and_one_at_its_end(self):
        redis = yield start_redis(self, appendonly=True)
        log = CapturedLog(self)
        store = make_store(redis.url, 1.0)
        store.startService()
        self.addCleanup(store.stopService)
        yield store.ledger.open_account("a", 5)
        outage = store.connection.outage

        yield redis.kill()
        with self.assertRaises(StoreUnavailable):
            yield store.ledger.balance("a")
        yield _until(lambda: outage.down, "the outage noticed")
        # Several reconnection attempts (back-off capped at 1 s) fail meanwhile.
        yield task.deferLater(reactor, 2.5, lambda: None)
        yield redis.restart()
        yield _until(lambda: not outage.down, "the end of the outage noticed")
        self.assertEqual((yield store.ledger.balance("a")), 5)

        [(level, started)] = log.containing("is unreachable since")
        self.assertEqual(level, LogLevel.warn)
        self.assertIn(f"Redis at {redis.url}", started)
        [(level, ended)] = log.containing("is reachable again after")
        self.assertEqual(level, LogLevel.info)
        self.assertEqual(log.containing("Scheduling retry"), [])
        self.assertEqual(store.metrics.snapshot().get("redis_outages"), 1)

    @defer.inlineCallbacks
    def test_writes_short_of_replicas_are_one_line_at_the_start_and_one_at_the_end(self):
        """
        A store told to have one replica acknowledge every write, on a Redis
        with none (what a primary left alone after a failover is): each write
        answers unavailable, and the log says why once, not once per write.
        """
        redis = yield start_redis(self)
        log = CapturedLog(self)
        store = make_store(redis.url, 1.0)
        store.startService()
        self.addCleanup(store.stopService)
        connection = store.connection
        connection.address = attrs.evolve(connection.address, wait_replicas=1, wait_ms=10)
        for account in ("a", "b", "c"):
            with self.assertRaises(StoreUnavailable):
                yield store.ledger.open_account(account, 5)
        [(level, started)] = log.containing("replicas acknowledged a write")
        self.assertEqual(level, LogLevel.warn)
        self.assertIn(f"Redis at {redis.url}", started)
        self.assertIn(": 0 of 1 replicas acknowledged a write within 10 ms since ", started)
        self.assertIn("writes answer unavailable until enough replicas follow the primary", started)
        self.assertEqual(store.metrics.snapshot().get("redis_replica_shortfalls"), 1)
        self.assertEqual(log.containing("is unreachable"), [])

        connection.replica_shortfall.ended()
        [(level, ended)] = log.containing("acknowledged by enough replicas again")
        self.assertEqual(level, LogLevel.info)
        self.assertIn("(short of replicas since ", ended)

    def test_the_start_of_the_store_names_it_without_its_password(self):
        log = CapturedLog(self)
        make_store("redis://:sesame@127.0.0.1:1/0", 1.0)
        [(_, line)] = log.containing("store: ")
        self.assertIn("redis://127.0.0.1:1/0", line)
        self.assertNotIn("sesame", line)


class OutageLogTests(unittest.SynchronousTestCase):
    def test_repeated_failures_and_connections_log_once_each(self):
        clock, lines = task.Clock(), []
        clock.advance(1_700_000_000)
        outage = OutageLog("Redis at redis://h:1/0", clock)
        outage.log = Logger(observer=lambda event: lines.append(formatEvent(event)))
        outage.ended()
        for _ in range(5):
            outage.began()
            clock.advance(0.5)
        for _ in range(3):
            outage.ended()
        self.assertEqual(lines, [
            "Redis at redis://h:1/0 is unreachable since 2023-11-14 22:13:20 UTC; reconnecting "
            "every second at most, store calls fail as unavailable meanwhile",
            "Redis at redis://h:1/0 is reachable again after 2.5s "
            "(unreachable since 2023-11-14 22:13:20 UTC)",
        ])
        self.assertEqual(outage.counters.snapshot(), {"redis_outages": 1})
