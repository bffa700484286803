"""
Replicas as real child processes, for the tests that kill -9, SIGSTOP and
SIGCONT them.  Every wait is bounded.  Each replica inherits a listening
socket the test made, so every replica knows its peers' ports before any
starts, and a killed one restarts on its own port.  The replicas share a
secret, which their replica links prove.
"""

import base64
import os
import signal
import socket
import sys

from twisted.internet import defer, protocol, reactor

import tests

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__)))
START_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0


#: the descriptor a replica process inherits its listening socket as (the
#: first of systemd's socket activation protocol, which the runner speaks)
LISTEN_FD = 3


def listening_socket(backlog=1024):
    """
    A socket listening on an OS-chosen loopback port, for a replica process
    to inherit: the test keeps it open for its whole run, so the port stays
    ours across replica restarts (no port is released and bound again).
    While its replica is down, connections wait in the socket's backlog
    instead of being refused.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    return listener


def refusing_port(testcase):
    """
    A loopback port that refuses connections for the rest of ``testcase``:
    bound, never listened on, closed at cleanup.
    """
    bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    bound.bind(("127.0.0.1", 0))
    testcase.addCleanup(bound.close)
    return bound.getsockname()[1]


class ReplicaProcess(protocol.ProcessProtocol):
    def __init__(self, replica_id, log):
        self.replica_id = replica_id
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.running = True
        self._out = b""
        self._log = log

    def outReceived(self, data):
        self._out += data
        if b"\n" in self._out and not self.ready.called:
            line = self._out.split(b"\n", 1)[0]
            if line.startswith(b"READY "):
                self.ready.callback(int(line.split()[1]))

    def errReceived(self, data):
        self._log.write(data)
        self._log.flush()

    def signal(self, name):
        os.kill(self.transport.pid, name)

    def processEnded(self, reason):
        self.running = False
        if not self.ready.called:
            self.ready.errback(reason)
        self.ended.callback(reason.value)


class ProcessCluster:
    """
    ``count`` replica processes on loopback.  With ``replica_ports`` each
    takes replica links on a port of its own (``--replica-listen``, a second
    inherited socket), as a deployment across hosts would.
    """

    def __init__(self, testcase, count=3, extra_args=(), data_dirs=False, replica_ports=False):
        self.testcase = testcase
        self.count = count
        self.sockets = [listening_socket() for _ in range(count)]
        self.ports = [listener.getsockname()[1] for listener in self.sockets]
        #: each replica's socket for replica links, if they have their own
        self.replica_sockets = [listening_socket() for _ in range(count)] if replica_ports else []
        self.extra_args = list(extra_args)
        self.work = os.path.abspath(testcase.mktemp())
        os.makedirs(self.work)
        self.data_dirs = data_dirs
        self.secret_file = os.path.join(self.work, "replica.secret")
        with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as secret:
            secret.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        self.processes = {}
        testcase.addCleanup(self._close_sockets)
        testcase.addCleanup(self.stop_all)

    @property
    def addresses(self):
        from marketplace.laptop.client import Address

        return [Address("127.0.0.1", port) for port in self.ports]

    @property
    def replica_link_ports(self):
        """Where each replica takes replica links."""
        return [listener.getsockname()[1] for listener in self.replica_sockets] or self.ports

    def _arguments(self, i):
        args = ["--id", str(i), "--listen", "systemd:domain=INET:index=0",
                "--replica-secret", self.secret_file]
        if self.replica_sockets:
            args += ["--replica-listen", "systemd:domain=INET:index=1"]
        for peer, port in enumerate(self.replica_link_ports):
            if peer != i:
                args += ["--peer", f"{peer}=tcp:127.0.0.1:{port}"]
        if self.data_dirs:
            args += ["--data-dir", os.path.join(self.work, f"replica-{i}")]
        else:
            args.append("--memory-only")
        return args + self.extra_args

    def start(self, i) -> defer.Deferred:
        log = open(os.path.join(self.work, f"replica-{i}.log"), "ab")
        process = ReplicaProcess(i, log)
        process.ended.addBoth(lambda result: (log.close(), result)[1])
        self.processes[i] = process
        inherited = {LISTEN_FD: self.sockets[i].fileno()}
        if self.replica_sockets:
            inherited[LISTEN_FD + 1] = self.replica_sockets[i].fileno()
        env = dict(os.environ, PYTHONPATH=REPOSITORY, LISTEN_FDS=str(len(inherited)),
                   LISTEN_FDNAMES=":".join(["listen", "replica"][:len(inherited)]))
        argv = [sys.executable, "-m", "tests.laptop.replica_runner"] + self._arguments(i)
        reactor.spawnProcess(
            process, sys.executable, argv, env=env, path=REPOSITORY,
            childFDs={0: "w", 1: "r", 2: "r", **inherited},
        )
        return process.ready.addTimeout(START_TIMEOUT, reactor)

    def start_all(self) -> defer.Deferred:
        return defer.gatherResults([self.start(i) for i in range(self.count)], consumeErrors=True)

    def kill(self, i) -> defer.Deferred:
        """kill -9, and wait until the process is gone."""
        process = self.processes[i]
        process.signal(signal.SIGKILL)
        return process.ended.addTimeout(EXIT_TIMEOUT, reactor)

    def freeze(self, i):
        self.processes[i].signal(signal.SIGSTOP)

    def resume(self, i):
        self.processes[i].signal(signal.SIGCONT)

    def log_lines(self, i, text):
        """The lines of replica ``i``'s log (so far) that contain ``text``."""
        with open(os.path.join(self.work, f"replica-{i}.log"), "rb") as log:
            return [line for line in log.read().decode("utf-8", "replace").splitlines()
                    if text in line]

    def stop_all(self) -> defer.Deferred:
        waits = []
        for process in self.processes.values():
            if process.running:
                process.signal(signal.SIGCONT)
                process.signal(signal.SIGKILL)
                waits.append(process.ended.addTimeout(EXIT_TIMEOUT, reactor))
        return defer.DeferredList(waits, consumeErrors=True)

    def _close_sockets(self):
        for listener in self.sockets + self.replica_sockets:
            listener.close()
