"""
Replicas as real child processes, for the tests that kill -9, SIGSTOP and
SIGCONT them.  Every wait is bounded.  Each replica inherits a listening
socket the test made, so every replica knows its peers' ports before any
starts, and a killed one restarts on its own port.
"""

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
    def __init__(self, testcase, count=3, extra_args=(), data_dirs=False):
        self.testcase = testcase
        self.count = count
        self.sockets = [listening_socket() for _ in range(count)]
        self.ports = [listener.getsockname()[1] for listener in self.sockets]
        self.extra_args = list(extra_args)
        self.work = os.path.abspath(testcase.mktemp())
        os.makedirs(self.work)
        self.data_dirs = data_dirs
        self.processes = {}
        testcase.addCleanup(self._close_sockets)
        testcase.addCleanup(self.stop_all)

    @property
    def addresses(self):
        from marketplace.laptop.client import Address

        return [Address("127.0.0.1", port) for port in self.ports]

    def _arguments(self, i):
        args = ["--id", str(i), "--listen", "systemd:domain=INET:index=0"]
        for peer, port in enumerate(self.ports):
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
        env = dict(os.environ, PYTHONPATH=REPOSITORY, LISTEN_FDS="1", LISTEN_FDNAMES="listen")
        argv = [sys.executable, "-m", "tests.laptop.replica_runner"] + self._arguments(i)
        reactor.spawnProcess(
            process, sys.executable, argv, env=env, path=REPOSITORY,
            childFDs={0: "w", 1: "r", 2: "r", LISTEN_FD: self.sockets[i].fileno()},
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

    def stop_all(self) -> defer.Deferred:
        waits = []
        for process in self.processes.values():
            if process.running:
                process.signal(signal.SIGCONT)
                process.signal(signal.SIGKILL)
                waits.append(process.ended.addTimeout(EXIT_TIMEOUT, reactor))
        return defer.DeferredList(waits, consumeErrors=True)

    def _close_sockets(self):
        for listener in self.sockets:
            listener.close()
