"""
A private ``redis-server`` per test, on a free port in a temporary directory.

Readiness is Redis's own "Ready to accept connections" log line, not a poll.
The server can be killed with SIGKILL and restarted on the same port and
directory, so tests can check what survives a crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket

from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ProcessExitedAlready
from twisted.trial.unittest import FailTest, SkipTest

from tests.support.tls import make_tls_files

MISSING = "redis-server is not installed (Debian: apt-get install -y redis-server)"

#: Seconds a redis-server may take to start or to exit.
START_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: What a redis-server logs once it serves.
READY = b"Ready to accept connections"


class _RedisProcess(protocol.ProcessProtocol):
    def __init__(self, ready_marker: bytes = READY):
        self.ready_marker = ready_marker
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output += data
        if self.ready.called:
            return
        if self.ready_marker in self.output:
            self.ready.callback(None)
        elif b"Address already in use" in self.output:
            self.ready.errback(OSError("port taken: " + self.output.decode(errors="replace")[-300:]))

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.ready.called:
            self.ready.errback(RuntimeError(
                "redis-server exited before it was ready: " + self.output.decode(errors="replace")[-500:]))
        self.ended.callback(None)


class RedisServer:
    #: the log line that says it serves
    ready_marker = READY

    def __init__(self, directory: str, appendonly: bool = False, tls: bool = False,
                 replica_of: int | None = None):
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.appendonly = appendonly
        #: the port of the primary this server replicates, if any
        self.replica_of = replica_of
        self.tls_files = make_tls_files(os.path.join(self.directory, "tls")) if tls else None
        self.port: int | None = None
        self._process: _RedisProcess | None = None

    @property
    def url(self) -> str:
        if self.tls_files is None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"rediss://127.0.0.1:{self.port}/0?ca={self.tls_files.ca}&hostname=localhost"

    def _arguments(self) -> list[str]:
        arguments = ["redis-server", "--bind", "127.0.0.1", "--dir", self.directory,
                     "--save", "", "--logfile", "", "--daemonize", "no"]
        if self.tls_files is None:
            arguments += ["--port", str(self.port)]
        else:
            arguments += ["--port", "0", "--tls-port", str(self.port),
                          "--tls-cert-file", self.tls_files.cert, "--tls-key-file", self.tls_files.key,
                          "--tls-ca-cert-file", self.tls_files.ca, "--tls-auth-clients", "no"]
        if self.appendonly:
            arguments += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            arguments += ["--appendonly", "no"]
        if self.replica_of is not None:
            arguments += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return arguments

    @defer.inlineCallbacks
    def start(self):
        """Start on a free port (retrying if another process takes it first)."""
        for _ in range(5):
            self.port = _free_port()
            try:
                yield self._spawn()
                return self
            except OSError:
                continue
        raise RuntimeError("could not find a free port for redis-server")

    def _spawn(self):
        process = _RedisProcess(self.ready_marker)
        reactor.spawnProcess(process, shutil.which("redis-server"), self._arguments(),
                             env=os.environ, path=self.directory)
        self._process = process
        return process.ready.addTimeout(START_TIMEOUT, reactor)

    @property
    def pid(self) -> int:
        return self._process.transport.pid

    def kill(self):
        """SIGKILL the server and wait until it is gone."""
        return self._signal_and_wait(signal.SIGKILL)

    def restart(self):
        """Start again on the same port and directory."""
        return self._spawn()

    def stop(self):
        return self._signal_and_wait(signal.SIGTERM)

    def _signal_and_wait(self, signum):
        process = self._process
        if process is None or process.ended.called:
            return defer.succeed(None)
        try:
            process.transport.signalProcess(signum)
        except ProcessExitedAlready:
            pass
        return process.ended.addTimeout(START_TIMEOUT, reactor)


def require_redis_server() -> None:
    """
    Skip the test without ``redis-server``, except under CI (``$CI`` set),
    where it fails: Redis-backed tests must run there.
    """
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            raise FailTest(MISSING)
        raise SkipTest(MISSING)


def start_redis(testcase, appendonly: bool = False, tls: bool = False) -> defer.Deferred:
    """Start a private redis-server for ``testcase`` and stop it at cleanup."""
    require_redis_server()
    server = RedisServer(testcase.mktemp(), appendonly=appendonly, tls=tls)
    testcase.addCleanup(server.stop)
    return server.start()
