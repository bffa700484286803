# -*- test-case-name: tests.store.test_redis_eviction -*-
"""
A loud log line when Redis may evict the store's keys.

Every key a store writes is state held nowhere else: an account's balance
and history, a kept outcome that stops a retried operation from being
applied twice, a login session, a cart, a reservation.  Redis at its
``maxmemory`` limit makes room by evicting keys unless its
``maxmemory-policy`` is ``noeviction`` (Redis's default): the ``allkeys-*``
policies may drop any key, the ``volatile-*`` ones any key with a TTL,
which here means sessions and kept outcomes.  A store that lost such a key
answers as if it never existed, and nothing in Redis says so.

So on every new connection (a failover may reach a server configured
otherwise) the store reads the policy and the limit, and logs an error when
keys may be evicted now, or a warning when they would be once a limit is set.
It does not refuse to run: the operator may know better, and the line says
what to change.  A server that refuses ``CONFIG`` (managed services often
rename it) is noted once per connection at info level, as not checked.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

#: The one policy under which Redis never drops a key to make room.
SAFE_POLICY = "noeviction"


def check_eviction_policy(send: Callable[..., defer.Deferred], server: str,
                          log: Logger) -> defer.Deferred:
    """
    Ask the server through C{send} (a connection's command method) for its
    memory settings, and log what they put at risk.

    @return: a Deferred firing with C{None} once the answer was judged; it
        never fails (a failed check is logged, never raised into the caller).
    """
    # One pattern, not two names: CONFIG GET takes a single parameter
    # before Redis 7.
    asked = send("CONFIG", "GET", "maxmemory*")
    asked.addCallback(_judge, server, log)
    asked.addErrback(_not_checked, server, log)
    return asked


def _judge(reply, server: str, log: Logger) -> None:
    settings = dict(zip(reply[::2], reply[1::2]))
    policy = settings.get("maxmemory-policy", SAFE_POLICY)
    if policy == SAFE_POLICY:
        return
    limit = settings.get("maxmemory", "0")
    if limit != "0":
        log.error(
            "Redis at {server} evicts keys at its memory limit ({limit} bytes, "
            "maxmemory-policy {policy}): balances, histories, sessions and the outcomes "
            "that make retries safe can vanish; set maxmemory-policy noeviction",
            server=server, limit=limit, policy=policy)
    else:
        log.warn(
            "Redis at {server} has maxmemory-policy {policy}: once a memory limit is set "
            "it will evict this store's keys; set maxmemory-policy noeviction",
            server=server, policy=policy)


def _not_checked(failure, server: str, log: Logger) -> None:
    log.info("Redis at {server} did not say its eviction policy ({error}): not checked",
             server=server, error=failure.getErrorMessage())
