"""
Endpoints, listeners and outbound connections, all from endpoint strings.

Every plugin listens on ``--listen`` (``tcp:9000``, ``ssl:9443:privateKey=...``)
and reaches peers through client strings (``tcp:host:port``,
``tls:host:port:trustRoots=DIR`` -- TLS with hostname verification by
``service_identity``).
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from marketplace.tls import forward_secret_only


def _reactor_or_global(reactor):
    if reactor is None:
        from twisted.internet import reactor
    return reactor


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
    """

    log = Logger()

    def __init__(self, description: str, factory, reactor=None):
        self.description = description
        self.factory = factory
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
            self._listening = endpoint.listen(self.factory)
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
            return port.stopListening()
        if self._listening is not None:
            self._listening.cancel()
        return None


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
