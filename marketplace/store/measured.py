# -*- test-case-name: tests.store.test_measured -*-
"""
Store call latency and errors, measured at the store's outer interface so
that every backend is measured alike.

L{measure} puts a L{MeasuredDomain} in front of each of a store's domains
(sessions, ledger, directory, customers, catalog): every call is counted in
the store's L{Counters} as a request named C{domain.call}, with outcome
C{ok} or the name of the error's class (C{StoreUnavailable},
C{InsufficientFunds}, ...), and its latency.  The wrapper of each call is
made once, on its first use.
"""

from __future__ import annotations

from time import perf_counter

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from marketplace.metrics import Counters

DOMAINS = ("sessions", "ledger", "directory", "customers", "catalog")
OK = "ok"


class MeasuredDomain:
    """Forwards to C{domain}, timing and counting each call."""

    def __init__(self, domain, name: str, counters: Counters):
        self._domain = domain
        self._name = name
        self._counters = counters

    def __getattr__(self, attribute):
        value = getattr(self._domain, attribute)
        if attribute.startswith("_") or not callable(value):
            return value
        measured = _measured(value, f"{self._name}.{attribute}", self._counters)
        setattr(self, attribute, measured)
        return measured


def _measured(call, api: str, counters: Counters):
    record = counters.request

    def done(result, started):
        outcome = result.type.__name__ if isinstance(result, Failure) else OK
        record(api, outcome, perf_counter() - started)
        return result

    def measured_call(*args, **kwargs):
        started = perf_counter()
        try:
            result = call(*args, **kwargs)
        except Exception as error:
            record(api, type(error).__name__, perf_counter() - started)
            raise
        if isinstance(result, Deferred):
            if not result.called:
                return result.addBoth(done, started)
            # The embedded store answers at once: read the outcome without
            # the cost of a callback.
            outcome = result.result
            record(api, outcome.type.__name__ if isinstance(outcome, Failure) else OK,
                   perf_counter() - started)
            return result
        record(api, OK, perf_counter() - started)
        return result

    return measured_call


def measure(store, counters: Counters):
    """Measure every call to C{store}'s domains into C{counters}; returns C{store}."""
    for name in DOMAINS:
        setattr(store, name, MeasuredDomain(getattr(store, name), name, counters))
    return store
