"""
Replicas as real child processes, for the tests that kill -9, SIGSTOP and
SIGCONT them.  Every wait is bounded.
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


def free_ports(count):
    """
    Ports the OS picked for us, released again: replicas must know each
    other's ports before they start, and a killed replica restarts on its
    own port.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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
        self.ports = free_ports(count)
        self.extra_args = list(extra_args)
        self.work = os.path.abspath(testcase.mktemp())
        os.makedirs(self.work)
        self.data_dirs = data_dirs
        self.processes = {}
        testcase.addCleanup(self.stop_all)

    @property
    def addresses(self):
        from marketplace.laptop.client import Address

        return [Address("127.0.0.1", port) for port in self.ports]

    def _arguments(self, i):
        args = ["--id", str(i), "--listen", f"tcp:{self.ports[i]}:interface=127.0.0.1:backlog=1024"]
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
        env = dict(os.environ, PYTHONPATH=REPOSITORY)
        argv = [sys.executable, "-m", "tests.laptop.replica_runner"] + self._arguments(i)
        reactor.spawnProcess(process, sys.executable, argv, env=env, path=REPOSITORY)
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
