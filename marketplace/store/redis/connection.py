# -*- test-case-name: tests.store.test_redis,tests.store.test_redis_connection -*-
"""
The store's connection to Redis, with the guarantees the store promises and
a short path per call.

txredisapi keeps the connection: it connects through an endpoint (TCP or
TLS), authenticates, selects the database and reconnects after a loss (its
back-off capped here at one second so the store recovers quickly once Redis
is back).  What happens per command is this module's, because txredisapi's
own path was the Redis store's bottleneck (docs/redis.md, "Where the time
went"):

- **No Nagle.**  txredisapi leaves ``TCP_NODELAY`` off, so a command written
  while an earlier one was still unanswered waited in the kernel for that
  reply's ACK: concurrent requests took turns.  Here it is set on connect.
- **One pipelined connection.**  Every command of a reactor turn goes out in
  one ``send`` at the end of the turn, straight to the socket rather than at
  the reactor's next poll (see L{protocols.immediate}); Redis is
  single-threaded, so a second connection adds system calls, not capacity.
- **One Deferred per command.**  A reply is matched to its command in a
  queue and fired straight away; commands are packed and replies parsed and
  decoded by hiredis in C; a script goes as ``EVALSHA`` of a digest
  computed once (``EVAL`` the first time on a connection, and when Redis
  lost its script cache).  The caller's reading of the reply (``parse=``)
  and the translation of Redis's errors are one step of that Deferred,
  the fallback to ``EVAL`` included.
- **One timer per connection**, not two per command: it fires when the
  oldest unanswered command is due, and a connection that let a command wait
  past the store timeout is dropped, failing every command on it with
  ``StoreUnavailable`` (and reconnected).  A call made while no connection
  is up waits for one, within the same timeout.

With a ``redis+sentinel://`` address the connection goes to whichever
server the sentinels call the primary (L{sentinel}), asked again before
every reconnection, and is used only once ``ROLE`` confirms it is a
primary; a ``-READONLY`` reply (the server was demoted under us) drops it,
failing its commands as unavailable, and the reconnection asks the
sentinels again.  A script that changes what the store promises to keep
(money, stock, carts, purchases: ``durable=True``) is followed by ``WAIT``
on the same connection, one for all such scripts of a reactor turn, and is
acknowledged only once that many replicas hold it (docs/redis.md, "High
availability").
"""

from __future__ import annotations

import collections
import hashlib

import attrs
import hiredis
from twisted.internet import defer, error as net_error
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
import txredisapi

from marketplace.store.address import RedisAddress
from marketplace.store.errors import StoreError, StoreUnavailable
from marketplace.store.redis.eviction import check_eviction_policy
from marketplace.store.redis.outage import OutageLog, QuietReconnecting
from marketplace.store.redis.sentinel import SentinelPrimaryEndpoint
from protocols.immediate import plain_tcp_socket

#: Redis replies that mean "not now" rather than "wrong request".
_TRANSIENT_REPLIES = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN",
                      "NOREPLICAS")

_UNREACHABLE = (
    defer.TimeoutError,
    txredisapi.ConnectionError,
    net_error.ConnectError,
    net_error.ConnectionLost,
    net_error.ConnectionDone,
)


@attrs.frozen
class Script:
    """A Lua script and its SHA-1 digest, the name Redis caches it under."""

    source: str
    sha: str = attrs.field()

    @sha.default
    def _digest(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()


class _PipelinedProtocol(txredisapi.HiredisProtocol):
    """
    A txredisapi connection whose commands all go through one ordered queue
    of waiting Deferreds (txredisapi's own methods too: they end in
    L{execute_command}), pipelined and flushed once per reactor turn.
    """

    def __init__(self, *args, clock, timeout: float, require_primary: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self._require_primary = require_primary
        # Bytes that are not UTF-8 (another program's, in a shared Redis)
        # stay in the string as surrogates instead of failing the connection.
        self._reader = hiredis.Reader(protocolError=txredisapi.InvalidData,
                                      replyError=txredisapi.ResponseError, encoding="utf-8",
                                      errors="surrogateescape")
        self._clock = clock
        self._timeout = timeout
        self._waiting: collections.deque = collections.deque()
        self._watchdog = None
        self._output: list[bytes] = []
        # (replicas, wait_ms) -> the calls of this turn waiting for that many
        # replicas: one WAIT at the end of the turn's commands answers them.
        self._replica_waits: dict[tuple[int, int], list[defer.Deferred]] = {}
        #: Digests of the scripts sent with EVAL on this connection.
        self.scripts: set[str] = set()
        self._socket = None
        self._held = False

    def connectionMade(self):
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._socket = plain_tcp_socket(self.transport)
        return super().connectionMade()

    def send(self, *args) -> defer.Deferred:
        """Send one command; the Deferred fires with its reply or fails with its error."""
        if not self.connected:
            return defer.fail(txredisapi.ConnectionError("Not connected"))
        self._schedule_flush()
        self._output.append(hiredis.pack_command(args))
        return self._expect_reply()

    def wait_for_replicas(self, replicas: int, wait_ms: int) -> defer.Deferred:
        """
        How many replicas (up to C{replicas}, within C{wait_ms}) hold every
        write sent on this connection so far.

        One C{WAIT} after the turn's other commands answers every such call
        of the turn: it counts all the writes sent before it on the
        connection, and Redis holds up a connection's later commands until
        its C{WAIT} returns, so a C{WAIT} behind each write would make the
        writes of a turn wait for the replicas one after another.
        """
        if not self.connected:
            return defer.fail(txredisapi.ConnectionError("Not connected"))
        self._schedule_flush()
        d = defer.Deferred()
        self._replica_waits.setdefault((replicas, wait_ms), []).append(d)
        return d

    def _schedule_flush(self) -> None:
        """Flush at the end of this turn, if nothing queued yet has asked to."""
        if not self._output and not self._replica_waits:
            self._clock.callLater(0, self._flush)

    def _expect_reply(self) -> defer.Deferred:
        """The Deferred of the command just queued, due within the timeout."""
        d = defer.Deferred()
        waiting = self._waiting
        if not waiting:
            self._arm(self._timeout)
        waiting.append((d, self._clock.seconds() + self._timeout))
        return d

    def execute_command(self, *args, **kwargs):
        post_proc = kwargs.get("post_proc")
        d = self.send(*args)
        return d if post_proc is None else d.addCallback(post_proc)

    def _flush(self) -> None:
        """
        Send the turn's commands: at once while the transport holds nothing
        of ours, else (and whatever the kernel did not take) through it,
        which keeps the byte stream in order.
        """
        if self._replica_waits and self.connected:
            waits, self._replica_waits = self._replica_waits, {}
            for (replicas, wait_ms), callers in waits.items():
                self._output.append(hiredis.pack_command(("WAIT", replicas, wait_ms)))
                self._expect_reply().addBoth(_answer_each, callers)
        output, self._output = self._output, []
        if not output or not self.connected:
            return
        data = b"".join(output)
        if self._socket is not None and not self._held:
            try:
                sent = self._socket.send(data)
            except OSError:
                sent = 0  # full or failing: the transport meets the error itself
            if sent == len(data):
                return
            data = data[sent:]
            self._held = True
            self.transport.registerProducer(_Drained(self), False)
        self.transport.write(data)

    def drained(self) -> None:
        """The transport wrote out what it held: send at once again."""
        self._held = False
        self.transport.unregisterProducer()

    def dataReceived(self, data, unpause=False):
        reader = self._reader
        reader.feed(data)
        reply = reader.gets()
        while reply is not False:
            self.replyReceived(reply)
            reply = reader.gets()

    def replyReceived(self, reply):
        if not self._waiting:
            return
        d, _ = self._waiting.popleft()
        if isinstance(reply, Exception):
            d.errback(reply)
            if self._require_primary and str(reply).startswith("READONLY"):
                # Demoted under us: the sentinels know the new primary.
                self.transport.abortConnection()
        else:
            d.callback(reply)

    def _arm(self, delay: float) -> None:
        if self._watchdog is None or not self._watchdog.active():
            self._watchdog = self._clock.callLater(delay, self._check)

    def _check(self) -> None:
        """The oldest unanswered command is due: drop the connection if it is late."""
        if not self._waiting:
            return
        late_by = self._clock.seconds() - self._waiting[0][1]
        if late_by < 0:
            self._arm(-late_by)
            return
        self._fail_waiting(defer.TimeoutError(f"no reply from Redis within {self._timeout}s"))
        self.transport.abortConnection()

    def connectionLost(self, why):
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._output = []
        # Out of the pool first: a caller that retries from its errback gets
        # another connection (or waits for one), not this one.
        super().connectionLost(why)
        self._fail_waiting(txredisapi.ConnectionError("Lost connection"))

    def _fail_waiting(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, collections.deque()
        waits, self._replica_waits = self._replica_waits, {}
        for d, _ in waiting:
            d.errback(error)
        for callers in waits.values():
            _answer_each(Failure(error), callers)


def _answer_each(result, callers: list[defer.Deferred]) -> None:
    """Give C{result} (a reply or a L{Failure}) to each of C{callers}."""
    for caller in callers:
        if isinstance(result, Failure):
            caller.errback(result)
        else:
            caller.callback(result)


@attrs.define
class _Drained:
    """
    A pull producer registered while the transport holds some of our output:
    a TCP transport asks a pull producer for more each time its buffer runs
    empty, which is when sending at once is safe again.  It is unregistered
    then, so it never holds up closing the connection.
    """

    protocol: _PipelinedProtocol
    registered: bool = False

    def resumeProducing(self):
        if not self.registered:  # registerProducer's own first call
            self.registered = True
            return
        self.protocol.drained()

    def stopProducing(self):
        pass


class _QuickReconnectFactory(QuietReconnecting):
    """
    txredisapi's reconnecting factory with its back-off capped at one second,
    reporting an outage once (L{OutageLog}) instead of every attempt.
    """

    initialDelay = 0.1
    maxDelay = 1.0


class _Factory(_QuickReconnectFactory):
    protocol = _PipelinedProtocol
    log = Logger()

    def __init__(self, *args, clock, timeout: float, require_primary: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self._clock = clock
        self._timeout = timeout
        self._require_primary = require_primary

    def buildProtocol(self, addr):
        p = self.protocol(self.charset, password=self.password, dbid=self.dbid,
                          convertNumbers=self.convertNumbers, username=self.username,
                          clock=self._clock, timeout=self._timeout,
                          require_primary=self._require_primary)
        p.factory = self
        p.whenConnected().addCallback(self._connectionReady)
        return p

    def _connectionReady(self, conn):
        """Into the pool, once ``ROLE`` says it is a primary if one is required."""
        if not self._require_primary:
            return self._usable(conn)

        def check(role):
            if role[0] == "master":
                return self._usable(conn)
            self.log.warn("{address} is a {role}, not the primary: asking the sentinels again",
                          address=_server_name(conn), role=role[0])
            conn.transport.abortConnection()

        def failed(failure):
            conn.transport.abortConnection()
        conn.send("ROLE").addCallbacks(check, failed)

    def _usable(self, conn):
        """Into the pool, its eviction policy checked (and logged if keys are at risk)."""
        check_eviction_policy(conn.send, _server_name(conn), self.log)
        return super()._connectionReady(conn)


def _server_name(conn) -> str:
    """The server at the other end of C{conn}, as host:port."""
    peer = conn.transport.getPeer()
    return f"{peer.host}:{peer.port}"


class RedisConnection:
    """
    Runs commands and Lua scripts against one Redis, or the primary of a
    Sentinel-managed one, with a timeout each.
    """

    log = Logger()

    def __init__(self, address: RedisAddress, timeout: float, reactor):
        self.address = address
        #: What every key of this store starts with.
        self.prefix = address.prefix or ""
        self.timeout = timeout
        self._reactor = reactor
        self._factory = None
        self.outage = OutageLog(f"Redis at {address}", reactor)
        #: Writes refused because fewer replicas than ``wait`` acknowledged
        #: them: logged when it starts and when it ends, as an outage is.
        self.replica_shortfall = OutageLog(
            f"Redis at {address}", reactor, event="redis_replica_shortfalls",
            began=("{what}: {acknowledged} of {wanted} replicas acknowledged a write within "
                   "{wait_ms} ms since {since}; writes answer unavailable until enough replicas "
                   "follow the primary"),
            ended=("{what}: writes are acknowledged by enough replicas again after {seconds:.1f}s "
                   "(short of replicas since {since})"))

    def start(self) -> None:
        address = self.address
        factory = _Factory(
            str(address), address.db or None, 1, isLazy=True,
            handler=txredisapi.ConnectionHandler, charset="utf-8",
            password=address.password, convertNumbers=False,
            clock=self._reactor, timeout=self.timeout, require_primary=address.is_sentinel)
        factory.outage = self.outage
        factory.startConnecting(self.endpoint())
        self._factory = factory

    def endpoint(self):
        """
        The client endpoint reaching the server: the address's, or (Sentinel)
        the one the sentinels call the primary at each connection attempt.
        """
        if not self.address.is_sentinel:
            return redis_endpoint(self.address, self._reactor, self.timeout)
        return SentinelPrimaryEndpoint(
            self.address, lambda server: redis_endpoint(server, self._reactor, self.timeout),
            self.timeout, self._reactor)

    def stop(self):
        factory, self._factory = self._factory, None
        if factory is None:
            return defer.succeed(None)
        return factory.disconnect()

    def command(self, name: str, *args, parse=None):
        """
        Run one Redis command (a txredisapi method name) with the timeout;
        C{parse}, if given, turns its reply into the result (see L{script}).
        """
        return self._on_connection(
            lambda conn: self._answer(getattr(conn, name)(*args), parse, name), name)

    def execute(self, *args, parse=None):
        """
        Run one Redis command given as its words: ``execute("HGET", key, field)``;
        C{parse}, if given, turns its reply into the result (see L{script}).
        """
        what = args[0] if args else ""
        return self._on_connection(lambda conn: self._answer(conn.send(*args), parse, what), what)

    def script(self, script: Script, keys, args, durable: bool = False, parse=None):
        """
        Run a Lua script: EVAL the first time on a connection (which caches
        it in Redis), EVALSHA after that, and EVAL again when Redis lost its
        script cache (SCRIPT FLUSH; a restart is a new connection).

        A C{durable} script's result is given only once the address's
        C{wait_replicas} replicas hold its change (none on a ``redis://``
        address, so it costs nothing there); else the call fails with
        L{StoreUnavailable}.

        C{parse}, if given, turns the reply into the call's result.  It runs
        in the same step of the Deferred as the translation of Redis's
        errors, which costs less on every call than a callback of its own
        (the store's hot path is a few such steps per request).
        """
        replicas = self.address.wait_replicas if durable else 0
        return self._on_connection(
            lambda conn: self._run_script(conn, script, keys, args, replicas, parse), "a script")

    def _run_script(self, conn, script, keys, args, replicas, parse, cached=None):
        """
        Send C{script} by its digest if C{cached} (by default: if it went
        with EVAL on this connection before), else in full.
        """
        if cached is None:
            cached = script.sha in conn.scripts
        if cached:
            d = conn.send("EVALSHA", script.sha, len(keys), *keys, *args)
        else:
            conn.scripts.add(script.sha)
            d = conn.send("EVAL", script.source, len(keys), *keys, *args)
        if replicas:
            d = self._replicated(conn, d, replicas)
        return d.addCallbacks(parse or defer.passthru, self._script_failed,
                              errbackArgs=(conn, script, keys, args, replicas, parse, cached))

    def _script_failed(self, failure, conn, script, keys, args, replicas, parse, cached):
        """Run the script again with EVAL if Redis lost it, else translate the error."""
        if (cached and failure.check(txredisapi.ResponseError)
                and failure.getErrorMessage().startswith("NOSCRIPT")):
            return self._run_script(conn, script, keys, args, replicas, parse, cached=False)
        return self._translate(failure, "a script")

    def _answer(self, sent, parse, what):
        """C{sent}'s reply through C{parse}, or its error translated."""
        return sent.addCallbacks(parse or defer.passthru, self._translate, errbackArgs=(what,))

    def _replicated(self, conn, written, replicas: int):
        """
        C{written}'s result once ``WAIT`` (sent on the same connection after
        the turn's commands, so it costs no round trip of its own, and shared
        by the turn's writes) says C{replicas} replicas hold it.  Fewer in
        time fail as unavailable, never as success: the write may or may not
        survive a failover, and the caller's idempotency key makes a retry
        safe.
        """
        wait_ms = self.address.wait_ms
        acked = conn.wait_for_replicas(replicas, wait_ms)
        # The WAIT's reply comes after the write's: the write's outcome
        # waits for it, or ends the call if the write failed.
        return written.addCallbacks(self._once_held, _discard_and_fail,
                                    callbackArgs=(acked, replicas, wait_ms), errbackArgs=(acked,))

    def _once_held(self, result, acked, replicas: int, wait_ms: int):
        """The write succeeded: C{result}, once C{acked} says enough replicas hold it."""
        return acked.addCallback(self._held, result, replicas, wait_ms)

    def _held(self, count: int, result, replicas: int, wait_ms: int):
        """C{result}, if C{count} replicas are enough; else unavailable."""
        if count < replicas:
            self.replica_shortfall.began(acknowledged=count, wanted=replicas, wait_ms=wait_ms)
            raise StoreUnavailable(
                f"{count} of {replicas} replicas of {self.address} acknowledged a write "
                f"within {wait_ms} ms: retry it with the same idempotency key")
        self.replica_shortfall.ended()
        return result

    def _on_connection(self, run, what):
        """
        C{run(connection)}, which translates its own errors, on the
        connection, or once there is one: the wait for it and the call
        within one timeout (a failover is in progress, or Redis is down).
        """
        factory = self._factory
        if factory is None:
            return defer.fail(StoreUnavailable("the Redis store is not started"))
        if factory.pool:
            return run(factory.pool[0])
        d = factory.getConnection(peek=True).addCallback(run)
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


def _discard_and_fail(failure, acked: defer.Deferred):
    """A write failed: that is the outcome, whatever its C{WAIT} says."""
    acked.addErrback(lambda _: None)
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
