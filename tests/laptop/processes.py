"""
Replicas as real child processes, for the tests that kill -9, SIGSTOP and
SIGCONT them.  Every wait is bounded.
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
    """
    ``count`` replicas on loopback.  With ``secured`` they take replica links
    on ports of their own (``--replica-listen``) and prove a shared secret,
    as a deployment across hosts must.
    """

    def __init__(self, testcase, count=3, extra_args=(), data_dirs=False, secured=False):
        self.testcase = testcase
        self.count = count
        ports = free_ports(count * 2 if secured else count)
        self.ports = ports[:count]
        #: where replica links go: ports of their own, or the customer ports
        self.replica_ports = ports[count:] if secured else self.ports
        self.extra_args = list(extra_args)
        self.work = os.path.abspath(testcase.mktemp())
        os.makedirs(self.work)
        self.data_dirs = data_dirs
        self.secret_file = None
        if secured:
            self.secret_file = os.path.join(self.work, "replica.secret")
            with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
                file.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        self.processes = {}
        testcase.addCleanup(self.stop_all)

    @property
    def addresses(self):
        from marketplace.laptop.client import Address

        return [Address("127.0.0.1", port) for port in self.ports]

    def _arguments(self, i):
        args = ["--id", str(i), "--listen", f"tcp:{self.ports[i]}:interface=127.0.0.1:backlog=1024"]
        for peer, port in enumerate(self.replica_ports):
            if peer != i:
                args += ["--peer", f"{peer}=tcp:127.0.0.1:{port}"]
        if self.secret_file is not None:
            args += ["--replica-secret", self.secret_file,
                     "--replica-listen", f"tcp:{self.replica_ports[i]}:interface=127.0.0.1"]
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
