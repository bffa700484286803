"""
Endpoints, listeners and outbound connections, all from endpoint strings.

Every plugin listens on ``--listen`` (``tcp:9000``, ``ssl:9443:privateKey=...``)
and reaches peers through client strings (``tcp:host:port``,
``tls:host:port:trustRoots=DIR`` -- TLS with hostname verification by
``service_identity``).
"""

from __future__ import annotations

from collections import Counter

import attrs
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.application.service import Service
from twisted.internet import defer, endpoints, error
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from marketplace.metrics import CONNECTION_CLOSED, CONNECTION_OPENED, Counters
from marketplace.tls import forward_secret_only


def _reactor_or_global(reactor):
    if reactor is None:
        from twisted.internet import reactor
    return reactor


@attrs.frozen
class ConnectionLimits:
    """
    How many connections one listener keeps open at once: C{total} in all,
    C{per_address} from one client address (C{None}: no limit).
    """

    total: int | None = None
    per_address: int | None = None


#: Seconds a stopping listener lets its connections finish before it aborts them.
CLOSE_GRACE = 5.0


class _ForwardingFactory(Factory):
    """A factory in front of C{factory}, which it starts, stops and names."""

    noisy = False

    def __init__(self, factory):
        self.factory = factory

    def logPrefix(self):
        return self.factory.logPrefix()

    def doStart(self):
        self.factory.doStart()

    def doStop(self):
        self.factory.doStop()


def _when_lost(protocol, then) -> None:
    """Chain C{then()} after C{protocol}'s own C{connectionLost}, however that ends."""
    lost = protocol.connectionLost

    def connectionLost(reason):
        try:
            return lost(reason)
        finally:
            then()

    protocol.connectionLost = connectionLost


class _ServingFactory(_ForwardingFactory):
    """
    Serves C{factory}'s protocols within L{ConnectionLimits} and knows the
    connections open, so that the listener can finish them when it stops.

    A connection beyond a limit gets no protocol, so the port closes it at
    once; each refusal is counted (C{connections_refused.listener},
    C{connections_refused.address}) and logged at every power of ten.

    The protocol itself is handed out unwrapped, so its transport stays the
    real one (half-close, TCP options and direct socket writes keep
    working); its C{connectionLost} is chained to release its place.
    """

    log = Logger()

    def __init__(self, factory, limits: ConnectionLimits, counters):
        super().__init__(factory)
        self.limits = limits
        self.counters = counters
        self.open: set = set()
        self.by_address: Counter = Counter()
        self._all_closed: list[defer.Deferred] = []

    def buildProtocol(self, addr):
        address = getattr(addr, "host", None)
        limits = self.limits
        if limits.total is not None and len(self.open) >= limits.total:
            return self._refuse("listener", addr)
        if limits.per_address is not None and self.by_address[address] >= limits.per_address:
            return self._refuse("address", addr)
        protocol = self.factory.buildProtocol(addr)
        if protocol is None:
            return None
        self.open.add(protocol)
        self.by_address[address] += 1
        _when_lost(protocol, lambda: self._release(protocol, address))
        return protocol

    def _refuse(self, which: str, addr):
        name = f"connections_refused.{which}"
        self.counters.increment(name)
        refused = self.counters.counts[name]
        if str(refused).strip("0") == "1":
            self.log.warn(
                "refused a connection from {peer}: the {which} limit is reached "
                "({refused} refused so far)", peer=addr, which=which, refused=refused)
        return None

    def _release(self, protocol, address):
        self.open.discard(protocol)
        self.by_address[address] -= 1
        if not self.by_address[address]:
            del self.by_address[address]
        if not self.open:
            waiters, self._all_closed = self._all_closed, []
            for waiter in waiters:
                waiter.callback(None)

    def finish_all(self, clock, grace: float = CLOSE_GRACE) -> defer.Deferred:
        """
        Finish every open connection: one that follows the connection
        discipline (its C{shutdown}) answers the requests it has read and
        closes; any other, and any still open C{grace} seconds on, is
        aborted.  Fire once all are gone.
        """
        if not self.open:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._all_closed.append(waiter)
        for protocol in list(self.open):
            shutdown = getattr(protocol, "shutdown", None)
            if shutdown is not None:
                shutdown()
            elif protocol.transport is not None:
                protocol.transport.abortConnection()
        late = clock.callLater(grace, self._abort_open)
        return waiter.addBoth(self._cancel, late)

    def _abort_open(self):
        for protocol in list(self.open):
            if protocol.transport is not None:
                protocol.transport.abortConnection()

    @staticmethod
    def _cancel(result, call):
        if call.active():
            call.cancel()
        return result


class Listener(Service):
    """
    Listens on a server endpoint string while the service runs.

    Unlike ``strports.service`` it exposes the bound port, which tests (that
    listen on port 0) and the ``suite`` plugin's address table need.

    Like ``strports.service``, a listen that fails at once (``tcp:`` and
    ``ssl:`` listen synchronously, so a port in use does) makes
    ``startService`` raise, so ``twistd`` exits non-zero at startup with the
    error instead of running without the listener.  An endpoint that fails
    later can only log it and fail ``whenListening``.

    ``limits`` (L{ConnectionLimits}) caps the connections it keeps open;
    refusals are counted in ``counters`` (the factory's own ``counters``
    when it has them).  Stopping it finishes the connections still open:
    each answers what it has read and closes, and those still open after
    L{CLOSE_GRACE} seconds are aborted.
    Every connection it accepts and loses is counted in ``counters`` too:
    the metrics' open and total connections.
    """

    log = Logger()

    def __init__(self, description: str, factory, reactor=None, *,
                 limits: ConnectionLimits = ConnectionLimits(), counters=None):
        self.description = description
        self.factory = factory
        if counters is None:
            counters = getattr(factory, "counters", None) or Counters()
        self.counters = counters
        self._serving = _ServingFactory(CountingFactory(factory, counters), limits, counters)
        self.port = None
        self._reactor = _reactor_or_global(reactor)
        self._listening = None
        self._failure = None
        self._starting = False
        self._waiters: list[defer.Deferred] = []

    def startService(self):
        super().startService()
        endpoint = forward_secret_only(endpoints.serverFromString(self._reactor, self.description))
        self._failure = None
        self._starting = True
        try:
            self._listening = endpoint.listen(self._serving)
            self._listening.addCallbacks(self._listened, self._failed)
        finally:
            self._starting = False
        if self._failure is not None:
            self._failure.raiseException()

    def _listened(self, port):
        self.port = port
        self.log.info("{name} listening on {address}", name=self.name or type(self.factory).__name__,
                      address=self.address)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port)

    def _failed(self, failure):
        self._failure = failure
        if not self._starting:
            # Nobody is left to raise to: startService has returned.
            self.log.failure("cannot listen on {description}", failure,
                             description=self.description)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    @property
    def address(self) -> str:
        """``host:port`` actually bound, or the description before that."""
        if self.port is None:
            return self.description
        host = self.port.getHost()
        return f"{host.host}:{host.port}"

    def whenListening(self) -> defer.Deferred:
        """
        A Deferred firing with the ``IListeningPort`` once bound, or failing
        with the reason it could not be.
        """
        if self.port is not None:
            return defer.succeed(self.port)
        if self._failure is not None:
            return defer.fail(self._failure)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            stopped = defer.maybeDeferred(port.stopListening)
        else:
            if self._listening is not None:
                self._listening.cancel()
            stopped = defer.succeed(None)
        finished = self._serving.finish_all(self._reactor)
        return defer.gatherResults([stopped, finished], consumeErrors=True)


class CountingFactory(_ForwardingFactory):
    """
    Hands out C{factory}'s protocols, counting each connection in
    C{counters} when it is made (L{CONNECTION_OPENED}) and when it is lost
    (L{CONNECTION_CLOSED}).  The protocol itself is handed out unwrapped, so
    its transport stays the real one; its C{connectionLost} is chained.
    """

    def __init__(self, factory, counters: Counters):
        super().__init__(factory)
        self.counters = counters

    def buildProtocol(self, addr):
        protocol = self.factory.buildProtocol(addr)
        if protocol is None:
            return None
        counters = self.counters
        counters.increment(CONNECTION_OPENED)
        _when_lost(protocol, lambda: counters.increment(CONNECTION_CLOSED))
        return protocol


def client_endpoint(description: str, reactor=None):
    """The client endpoint a string such as ``tcp:host:port`` names."""
    return endpoints.clientFromString(_reactor_or_global(reactor), description)


def connect(description: str, protocol, timeout: float, reactor=None) -> defer.Deferred:
    """
    Connect ``protocol`` to the endpoint ``description`` names, failing with
    ``TimeoutError`` if the connection is not made within ``timeout``.

    For ``tls:`` endpoints the connection counts as made once TCP connects:
    the TLS handshake happens afterwards, while ``protocol`` already runs,
    so whatever bounds the protocol's first exchange also bounds the
    handshake.
    """
    reactor = _reactor_or_global(reactor)
    d = client_endpoint(description, reactor).connect(_OneConnection(protocol))
    return d.addTimeout(timeout, reactor)


def describe_connection_failure(reason) -> str:
    """
    Why a connection could not be made, or was lost, in words for the
    person at a command line: a refused connection, a name that does not
    resolve, and above all a TLS failure's reason (the server's certificate
    is signed by no CA the client trusts, or names another host).

    @param reason: a L{Failure} or an exception.
    """
    problem = reason.value if isinstance(reason, Failure) else reason
    if isinstance(problem, VerificationError):
        return ("TLS: the server's certificate is for another host name (hostname mismatch); "
                "dial the name it was issued for")
    if isinstance(problem, SSL.Error):
        reasons = [str(detail[-1]) for detail in (problem.args[0] if problem.args else ())
                   if isinstance(detail, tuple) and detail]
        if any("certificate verify failed" in text for text in reasons):
            return ("TLS: the server's certificate is not signed by a CA in trustRoots "
                    "(unknown CA)")
        return f"TLS: {', '.join(reasons) or 'handshake failed'}"
    if isinstance(problem, error.ConnectionRefusedError):
        return "connection refused: nothing listens there"
    if isinstance(problem, error.DNSLookupError):
        return f"cannot resolve the host name ({problem})"
    if isinstance(problem, (defer.TimeoutError, error.TimeoutError)):
        return "no answer in time"
    return str(problem) or type(problem).__name__


class _OneConnection(Factory):
    """
    Hands out one prepared protocol, quietly: ``connectProtocol``'s factory
    logs a start and a stop line per connection, hundreds per aggregator run.
    """

    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol
