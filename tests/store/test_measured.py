"""
Store calls measured at the store's interface: every call counted once, by
outcome, whether it answers at once, later, with an error or by raising.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from marketplace.metrics import Counters, unflatten
from marketplace.store import InsufficientFunds, StoreUnavailable, make_store
from marketplace.store.measured import MeasuredDomain


class _Domain:
    limit = 3

    def __init__(self):
        self.pending = defer.Deferred()

    def now(self, value):
        return defer.succeed(value)

    def refused(self):
        return defer.fail(InsufficientFunds("no"))

    def later(self):
        return self.pending

    def raising(self):
        raise ValueError("bad argument")

    def plain(self):
        return 7


class MeasuredDomainTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.domain = _Domain()
        self.counters = Counters()
        self.measured = MeasuredDomain(self.domain, "ledger", self.counters)

    def requests(self):
        return unflatten(self.counters.flat()).requests

    def test_each_outcome_is_counted_once(self):
        self.assertEqual(self.successResultOf(self.measured.now(5)), 5)
        self.failureResultOf(self.measured.refused(), InsufficientFunds)
        with self.assertRaises(ValueError):
            self.measured.raising()
        self.assertEqual(self.measured.plain(), 7)
        self.assertEqual(self.requests(), {
            ("ledger.now", "ok"): 1, ("ledger.refused", "InsufficientFunds"): 1,
            ("ledger.raising", "ValueError"): 1, ("ledger.plain", "ok"): 1})

    def test_a_call_answered_later_is_counted_when_it_is(self):
        d = self.measured.later()
        self.assertEqual(self.requests(), {})
        self.domain.pending.errback(StoreUnavailable("down"))
        self.failureResultOf(d, StoreUnavailable)
        self.assertEqual(self.requests(), {("ledger.later", "StoreUnavailable"): 1})
        latency = unflatten(self.counters.flat()).latency["ledger.later"]
        self.assertEqual(sum(latency), 1)

    def test_attributes_pass_through(self):
        self.assertEqual(self.measured.limit, 3)
        self.assertIs(self.measured.now, self.measured.now)  # wrapped once


class MakeStoreTests(unittest.SynchronousTestCase):
    def test_every_domain_of_a_store_is_measured(self):
        store = make_store()
        self.successResultOf(store.ledger.open_account("a", 10))
        self.failureResultOf(store.ledger.withdraw("a", 11), InsufficientFunds)
        self.assertEqual(unflatten(store.metrics.flat()).requests, {
            ("ledger.open_account", "ok"): 1, ("ledger.withdraw", "InsufficientFunds"): 1})
        for domain in ("sessions", "ledger", "directory", "customers", "catalog"):
            self.assertIsInstance(getattr(store, domain), MeasuredDomain, domain)
