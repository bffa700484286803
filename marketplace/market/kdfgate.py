# -*- test-case-name: tests.market.test_logins -*-
"""
Admission of password-hash work (Login, CreateAccount) in a front end.

An argon2id hash costs tens of milliseconds of CPU and 19 MiB by design, and
anyone may ask for one: without a bound, a few hundred connections sending
logins with made-up passwords queue thousands of hashes, and a real user's
login waits behind all of them (measured: 38 ms -> 6.9 s).  The gate keeps
the hashing bounded and shares it between client addresses:

* at most ``workers`` hashes run at once (the CPUs they may take), and at
  most ``max_waiting`` more wait, first come first served;
* one client address has at most ``per_client`` hashes running or waiting,
  so however many connections it opens it holds a few places in the queue
  (an IPv6 client is its /64 network: one host is given a whole one);
* one client address starts at most one hash per ``interval`` seconds on
  average (bursts of ``burst``).

Work over a bound is refused at once, before any hashing: the address over
its share with ``CLIENT_ERROR``, everyone when the queue is full with
``SERVICE_UNAVAILABLE``.  A real user from another address therefore waits
for at most ``max_waiting`` hashes, never for an attacker's backlog.
"""

from __future__ import annotations

import ipaddress
from collections import deque

import attrs
from twisted.internet import defer
from twisted.python.failure import Failure

from marketplace.market.errors import ClientError, ServiceUnavailable
from marketplace.metrics import Counters


@attrs.frozen
class GateLimits:
    workers: int = 2
    max_waiting: int = 32
    per_client: int = 2
    interval: float = 1.0  # seconds per hash started, on average
    burst: int = 10


def client_key(address):
    """What the per-client limits count by: the address, or an IPv6 address's /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 4:
        return parsed
    if parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return ipaddress.ip_network(f"{parsed}/64", strict=False)


class _Client:
    """One address's token bucket and the hashes it has running or waiting."""

    __slots__ = ("tokens", "updated", "busy")

    def __init__(self, tokens, now):
        self.tokens = tokens
        self.updated = now
        self.busy = 0


class KdfGate:
    """
    Runs ``work()`` (a Deferred-returning hash) when the limits allow:
    ``run(client, work)`` fires with its result, or fails at once with the
    refusal.  ``counters`` counts ``kdf_refused_client`` and
    ``kdf_refused_busy``.
    """

    def __init__(self, clock, limits: GateLimits = GateLimits(), counters: Counters | None = None):
        self._clock = clock
        self._limits = limits
        self.counters = Counters() if counters is None else counters
        self._clients: dict[object, _Client] = {}
        self._waiting: deque = deque()  # (client state, work, Deferred)
        self._running = 0
        self._prune_at = 64

    def run(self, client, work) -> defer.Deferred:
        limits = self._limits
        state = self._client(client_key(client))
        if state.busy >= limits.per_client or state.tokens < 1:
            self.counters.increment("kdf_refused_client")
            return defer.fail(ClientError(
                "too many password attempts from your address; wait a few seconds"))
        if self._running >= limits.workers and len(self._waiting) >= limits.max_waiting:
            self.counters.increment("kdf_refused_busy")
            return defer.fail(ServiceUnavailable("too many logins at once; try again shortly"))
        state.tokens -= 1
        state.busy += 1
        done = defer.Deferred()
        self._waiting.append((state, work, done))
        self._start_waiting()
        return done

    def _start_waiting(self):
        while self._waiting and self._running < self._limits.workers:
            state, work, done = self._waiting.popleft()
            self._running += 1
            defer.maybeDeferred(work).addBoth(self._finished, state, done)

    def _finished(self, outcome, state, done):
        self._running -= 1
        state.busy -= 1
        (done.errback if isinstance(outcome, Failure) else done.callback)(outcome)
        self._start_waiting()

    def _client(self, client) -> _Client:
        """The address's state with its tokens refilled up to now."""
        now = self._clock.seconds()
        limits = self._limits
        state = self._clients.get(client)
        if state is None:
            self._prune(now)
            state = self._clients[client] = _Client(limits.burst, now)
        else:
            state.tokens = min(limits.burst, state.tokens + (now - state.updated) / limits.interval)
            state.updated = now
        return state

    def _prune(self, now):
        """
        Forget addresses that are back where a new one starts (full bucket,
        nothing running), whenever the table has doubled: it holds only the
        addresses of the last ``burst * interval`` seconds, at O(1) a call.
        """
        if len(self._clients) < self._prune_at:
            return
        limits = self._limits
        for client, state in list(self._clients.items()):
            tokens = state.tokens + (now - state.updated) / limits.interval
            if state.busy == 0 and tokens >= limits.burst:
                del self._clients[client]
        self._prune_at = max(64, 2 * len(self._clients))
