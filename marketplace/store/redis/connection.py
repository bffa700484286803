"""
A txredisapi connection pool with the guarantees the store promises.

txredisapi reconnects by itself, but while disconnected its calls wait for a
connection indefinitely, and its back-off grows to ten seconds.  Here every
call carries the store timeout and fails with ``StoreUnavailable``; the
reconnect back-off is capped at one second so the store recovers quickly once
Redis is back.
"""

from __future__ import annotations

from twisted.internet import defer, error as net_error
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust
from twisted.logger import Logger
from twisted.python.filepath import FilePath
import txredisapi

from marketplace.store.redis.outage import OutageLog, QuietReconnecting
from marketplace.store.errors import StoreError, StoreUnavailable
from marketplace.store.address import RedisAddress

#: Redis replies that mean "not now" rather than "wrong request".
_TRANSIENT_REPLIES = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")

_UNREACHABLE = (
    defer.TimeoutError,
    txredisapi.ConnectionError,
    net_error.ConnectError,
    net_error.ConnectionLost,
    net_error.ConnectionDone,
)


class _QuickReconnectFactory(QuietReconnecting):
    initialDelay = 0.1
    maxDelay = 1.0


class RedisConnection:
    """
    Runs commands and Lua scripts against one Redis with a timeout each.
    """

    log = Logger()

    def __init__(self, address: RedisAddress, timeout: float, reactor, poolsize: int = 2):
        self.address = address
        self.timeout = timeout
        self._reactor = reactor
        self._poolsize = poolsize
        self._factory = None
        self.outage = OutageLog(f"Redis at {address}", reactor)

    def start(self) -> None:
        address = self.address
        factory = _QuickReconnectFactory(
            str(address), address.db or None, self._poolsize, isLazy=True,
            handler=txredisapi.ConnectionHandler, charset="utf-8",
            password=address.password, replyTimeout=self.timeout, convertNumbers=False)
        factory.outage = self.outage
        factory.startConnecting(redis_endpoint(address, self._reactor, self.timeout))
        self._factory = factory

    def stop(self):
        factory, self._factory = self._factory, None
        if factory is None:
            return defer.succeed(None)
        return factory.disconnect()

    def command(self, name: str, *args):
        """Run one Redis command (a txredisapi method name) with the timeout."""
        if self._factory is None:
            return defer.fail(StoreUnavailable("the Redis store is not started"))
        return self._guard(getattr(self._factory.handler, name)(*args), name)

    def script(self, source: str, keys, args):
        """
        Run a Lua script: EVALSHA, falling back to EVAL when Redis lost its
        script cache (txredisapi's ``eval`` does both).
        """
        return self.command("eval", source, list(keys), [str(a) for a in args])

    def _guard(self, d, what):
        d.addTimeout(self.timeout, self._reactor)
        return d.addErrback(self._translate, what)

    def _translate(self, failure, what):
        if failure.check(*_UNREACHABLE):
            raise StoreUnavailable(
                f"Redis at {self.address} did not answer {what} within {self.timeout}s: "
                f"{failure.getErrorMessage() or failure.type.__name__}")
        if failure.check(txredisapi.ResponseError):
            message = failure.getErrorMessage()
            if message.startswith(_TRANSIENT_REPLIES):
                raise StoreUnavailable(f"Redis at {self.address} is not ready: {message}")
            raise StoreError(f"Redis refused {what}: {message}")
        return failure


def redis_endpoint(address: RedisAddress, reactor, timeout: float):
    """The client endpoint reaching C{address}: TCP, or TLS for C{rediss://}."""
    endpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
    if not address.tls:
        return endpoint
    if address.ca:
        trust = Certificate.loadPEM(FilePath(address.ca).getContent())
    else:
        trust = platformTrust()
    return wrapClientTLS(optionsForClientTLS(address.verified_hostname, trustRoot=trust), endpoint)
