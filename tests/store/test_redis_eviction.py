"""
A Redis that may evict the store's keys is named in the log when the store
connects: the judgement over given replies, and once against a real
redis-server told to evict.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial import unittest
import txredisapi

from marketplace.store import make_store
from marketplace.store.redis.eviction import check_eviction_policy
from tests.store.test_redis_outage import CapturedLog
from tests.support.redis_sentinel import ask
from tests.support.redis_server import start_redis

class JudgementTests(unittest.TestCase):
    """What each answer to ``CONFIG GET maxmemory*`` is logged as."""

    def check(self, answer):
        """The log events of one check whose command gets C{answer}."""
        events = []
        sent = []

        def send(*command):
            sent.append(command)
            return answer if isinstance(answer, defer.Deferred) else defer.succeed(answer)

        done = check_eviction_policy(send, "10.0.0.7:6380", Logger(observer=events.append))
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(sent, [("CONFIG", "GET", "maxmemory*")])
        return [(event["log_level"], formatEvent(event)) for event in events]

    def one_line(self, answer):
        """The one log event of a check whose command gets C{answer}."""
        lines = self.check(answer)
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def test_noeviction_is_not_logged(self):
        answer = ["maxmemory", "104857600", "maxmemory-policy", "noeviction",
                  "maxmemory-samples", "5"]
        self.assertEqual(self.check(answer), [])

    def test_an_evicting_policy_under_a_limit_is_an_error(self):
        level, text = self.one_line(["maxmemory", "104857600",
                                      "maxmemory-policy", "allkeys-lru"])
        self.assertEqual(level, LogLevel.error)
        self.assertIn("Redis at 10.0.0.7:6380 evicts keys", text)
        self.assertIn("104857600 bytes, maxmemory-policy allkeys-lru", text)
        self.assertIn("set maxmemory-policy noeviction", text)

    def test_a_volatile_policy_puts_sessions_and_outcomes_at_risk_too(self):
        level, text = self.one_line(["maxmemory-policy", "volatile-ttl", "maxmemory", "1"])
        self.assertEqual(level, LogLevel.error)
        self.assertIn("maxmemory-policy volatile-ttl", text)

    def test_an_evicting_policy_without_a_limit_is_a_warning(self):
        level, text = self.one_line(["maxmemory", "0", "maxmemory-policy", "allkeys-random"])
        self.assertEqual(level, LogLevel.warn)
        self.assertIn("Redis at 10.0.0.7:6380 has maxmemory-policy allkeys-random", text)
        self.assertIn("once a memory limit is set", text)

    def test_a_server_that_hides_its_settings_is_not_judged(self):
        """A reply without the policy (CONFIG narrowed by an ACL) is no reason to warn."""
        self.assertEqual(self.check(["maxmemory", "104857600"]), [])

    def test_a_refused_config_is_noted_as_not_checked(self):
        refused = defer.fail(txredisapi.ResponseError("ERR unknown command 'CONFIG'"))
        level, text = self.one_line(refused)
        self.assertEqual(level, LogLevel.info)
        self.assertIn("Redis at 10.0.0.7:6380 did not say its eviction policy", text)
        self.assertIn("unknown command 'CONFIG'", text)


class ConnectingTests(unittest.TestCase):
    """The check runs on each connection the store makes to a real redis-server."""

    @defer.inlineCallbacks
    def connect_and_log(self, *settings):
        redis = yield start_redis(self)
        for name, value in settings:
            yield ask(redis.port, "CONFIG", "SET", name, value)
        log = CapturedLog(self)
        store = make_store(redis.url, 1.0)
        store.startService()
        self.addCleanup(store.stopService)
        # The check goes first on the connection, and Redis answers in order:
        # once the store's first call is answered, the check has been judged.
        yield store.ledger.open_account("a", 5)
        return redis, log

    @defer.inlineCallbacks
    def test_a_redis_that_evicts_is_an_error_in_the_log(self):
        redis, log = yield self.connect_and_log(("maxmemory", "100mb"),
                                                ("maxmemory-policy", "allkeys-lru"))
        lines = log.containing("maxmemory-policy")
        self.assertEqual([level for level, _ in lines], [LogLevel.error])
        [(_, text)] = lines
        self.assertIn(f"Redis at 127.0.0.1:{redis.port} evicts keys at its memory limit "
                      "(104857600 bytes, maxmemory-policy allkeys-lru)", text)

    @defer.inlineCallbacks
    def test_a_redis_that_never_evicts_is_not_logged(self):
        _, log = yield self.connect_and_log()
        self.assertEqual(log.containing("maxmemory-policy"), [])
        self.assertEqual(log.containing("eviction policy"), [])
