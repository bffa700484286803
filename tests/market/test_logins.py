"""
Logins in a front end over a fake customer-db and a fake thread pool: the
password-hash work a flood can cause is bounded and shared per client
address, an unknown name costs what a known one does, and a hash made with
less work than configured is upgraded on the next login.
"""

from collections import deque

from argon2 import PasswordHasher, extract_parameters
from twisted.internet import defer, task
from twisted.trial import unittest

from marketplace.market.accounts import CHEAP_COST, KdfCost, Passwords
from marketplace.market.errors import ClientError, ServiceUnavailable
from marketplace.market.front import AccountCalls
from marketplace.market.kdfgate import GateLimits, KdfGate
from protocols.envelope import Request

#: Cheap enough for a test, and more work than CHEAP_COST.
CONFIGURED = KdfCost(time_cost=2, memory_kib=128)
ATTACKER = "203.0.113.66"
USER = "198.51.100.7"


class ThreadPool:
    """Two workers, first in first out; the test finishes jobs one at a time."""

    workers = 2

    def __init__(self):
        self.queued = deque()
        self.running = []
        self.started = []  # (function, args) in start order

    def defer_to_thread(self, function, *args):
        d = defer.Deferred()
        self.queued.append((function, args, d))
        self._start()
        return d

    def _start(self):
        while self.queued and len(self.running) < self.workers:
            job = self.queued.popleft()
            self.running.append(job)
            self.started.append(job[:2])

    def finish_one(self):
        function, args, d = self.running.pop(0)
        self._start()
        d.callback(function(*args))

    def finish_all(self):
        while self.running:
            self.finish_one()


class CustomerDb:
    """Answers GetCredentials from ``users``, OpenSession at once; records every call."""

    def __init__(self, users):
        self.users = users
        self.calls = []

    def call(self, api, payload, session_id=None, idempotent=False, encoded=False):
        self.calls.append((api, payload))
        if api == "GetCredentials":
            user = self.users.get(payload["username"])
            if user is None:
                return defer.fail(ClientError(f"no buyer named {payload['username']!r}"))
            return defer.succeed((None, dict(user)))
        if api == "UpgradePasswordHash":
            return defer.succeed((None, {"upgraded": True}))
        return defer.succeed(("s" * 43, {"user_id": payload["user_id"]}))


def login(accounts, name, password, peer):
    return accounts.login(Request("Login", None, {"username": name, "password": password}, peer))


class Harness(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.pool = ThreadPool()
        self.hash = PasswordHasher(time_cost=CONFIGURED.time_cost, memory_cost=CONFIGURED.memory_kib,
                                   parallelism=CONFIGURED.parallelism).hash("right password")
        self.customer_db = CustomerDb({"bea": {"user_id": 1, "password_hash": self.hash}})

    def accounts(self, gate=True, cost=CONFIGURED):
        passwords = Passwords(cost, self.pool.defer_to_thread,
                              KdfGate(self.clock) if gate else None)
        return AccountCalls("buyer", self.customer_db, passwords)


class FloodTests(Harness):
    def flood_then_log_in(self, accounts):
        """
        300 wrong logins from one address, then a real one from another:
        the flood's logins and how many hashes finished before the real one.
        """
        flood = [login(accounts, "bea", f"guess {n}", ATTACKER) for n in range(300)]
        real = login(accounts, "bea", "right password", USER)
        ahead = 0
        while not real.called:
            self.pool.finish_one()
            ahead += 1
        self.successResultOf(real)
        return flood, ahead

    def test_a_flood_from_one_address_does_not_starve_another(self):
        flood, ahead = self.flood_then_log_in(self.accounts())
        self.assertLessEqual(ahead, 3)
        refused = [self.failureResultOf(d, ClientError).value.message for d in flood]
        self.assertEqual(refused[:2], ["wrong user name or password"] * 2)
        self.assertIn("too many password attempts", refused[2])

    def test_without_a_gate_the_real_login_waits_behind_the_flood(self):
        # What the gate prevents: the thread pool alone serves in order.
        flood, ahead = self.flood_then_log_in(self.accounts(gate=False))
        self.assertGreater(ahead, 300)
        for d in flood:
            self.failureResultOf(d, ClientError)

    def test_each_address_starts_a_limited_number_of_hashes_a_second(self):
        limits = GateLimits(per_client=100, interval=1.0, burst=10)
        gate = KdfGate(self.clock, limits)
        started = [gate.run(ATTACKER, lambda: defer.succeed(True)) for _ in range(11)]
        self.assertEqual([d.called and not isinstance(d.result, Exception) for d in started[:10]],
                         [True] * 10)
        self.failureResultOf(started[10], ClientError)
        self.assertEqual(gate.counters.counts["kdf_refused_client"], 1)
        self.clock.advance(1)
        self.assertTrue(self.successResultOf(gate.run(ATTACKER, lambda: defer.succeed(True))))
        self.failureResultOf(gate.run(ATTACKER, lambda: defer.succeed(True)), ClientError)

    def test_an_ipv6_client_is_its_whole_network(self):
        gate = KdfGate(self.clock, GateLimits(per_client=2))
        gate.run("2001:db8:1:2::1", defer.Deferred)
        gate.run("2001:db8:1:2:ffff::9", defer.Deferred)
        self.failureResultOf(gate.run("2001:db8:1:2::3", defer.Deferred), ClientError)
        self.assertNoResult(gate.run("2001:db8:1:3::1", defer.Deferred))
        gate.run("::ffff:192.0.2.1", defer.Deferred)
        gate.run("192.0.2.1", defer.Deferred)
        self.failureResultOf(gate.run("192.0.2.1", defer.Deferred), ClientError)

    def test_a_full_queue_refuses_everyone_at_once(self):
        gate = KdfGate(self.clock, GateLimits(workers=1, max_waiting=2))
        held = [gate.run(f"10.0.0.{n}", defer.Deferred) for n in range(3)]
        self.failureResultOf(gate.run("10.0.0.9", defer.Deferred), ServiceUnavailable)
        self.assertEqual(gate.counters.counts["kdf_refused_busy"], 1)
        self.assertEqual([d.called for d in held], [False] * 3)

    def test_addresses_seen_long_ago_are_forgotten(self):
        gate = KdfGate(self.clock)
        for n in range(1000):
            gate.run(f"10.0.{n // 256}.{n % 256}", lambda: defer.succeed(True))
            self.clock.advance(0.1)
        self.assertLess(len(gate._clients), 300)


class UnknownNameTests(Harness):
    def test_an_unknown_name_costs_the_same_hash_work_as_a_known_one(self):
        accounts = self.accounts(gate=False)
        known = login(accounts, "bea", "wrong password", USER)
        unknown = login(accounts, "nobody", "wrong password", USER)
        self.assertEqual(len(self.pool.started), 2)
        (_, known_args), (_, unknown_args) = self.pool.started
        self.assertEqual(extract_parameters(unknown_args[0]), extract_parameters(known_args[0]))
        self.pool.finish_one()
        self.pool.finish_one()
        for d in (known, unknown):
            error = self.failureResultOf(d, ClientError).value
            self.assertEqual(error.message, "wrong user name or password")


class UpgradeTests(Harness):
    def test_a_cheap_hash_is_upgraded_on_a_successful_login(self):
        cheap = Passwords(CHEAP_COST, lambda f, *a: defer.succeed(f(*a)))
        weak = self.successResultOf(cheap.hash("right password"))
        self.customer_db.users["bea"]["password_hash"] = weak
        accounts = self.accounts(gate=False)
        done = login(accounts, "bea", "right password", USER)
        self.pool.finish_all()
        self.successResultOf(done)
        [(_, upgrade)] = [call for call in self.customer_db.calls if call[0] == "UpgradePasswordHash"]
        self.assertEqual((upgrade["user_id"], upgrade["old_hash"]), (1, weak))
        stronger = extract_parameters(upgrade["password_hash"])
        self.assertEqual((stronger.time_cost, stronger.memory_cost),
                         (CONFIGURED.time_cost, CONFIGURED.memory_kib))
        self.assertTrue(PasswordHasher().verify(upgrade["password_hash"], "right password"))

    def test_a_hash_at_the_configured_cost_is_left_alone(self):
        accounts = self.accounts(gate=False)
        done = login(accounts, "bea", "right password", USER)
        self.pool.finish_all()
        self.successResultOf(done)
        self.assertNotIn("UpgradePasswordHash", [api for api, _ in self.customer_db.calls])

    def test_a_front_end_on_the_cheap_setting_never_downgrades(self):
        accounts = self.accounts(gate=False, cost=CHEAP_COST)
        done = login(accounts, "bea", "right password", USER)
        self.pool.finish_all()
        self.successResultOf(done)
        self.assertNotIn("UpgradePasswordHash", [api for api, _ in self.customer_db.calls])
