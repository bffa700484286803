"""
A private Sentinel-managed Redis per test: a primary, a replica of it and
three sentinels, each a ``redis-server`` on a free port in its own
temporary directory.

The fixture waits until the deployment can really fail over (the replica
is in sync and every sentinel knows the replica and the two other
sentinels) before handing it out, and offers the faults the tests need:
kill the primary, wait for the sentinels to promote the replica, restart
the old primary (which the sentinels then turn into a replica), stop one
sentinel.  Every wait polls a condition with a bounded deadline.
"""

from __future__ import annotations

import os

import txredisapi
from twisted.internet import defer, reactor, task

from tests.support.redis_server import RedisServer, require_redis_server

#: the service name the sentinels monitor
SERVICE = "primary"

#: how long a primary must stay silent before a sentinel calls it down
DOWN_AFTER_MS = 1000

#: the same once a killed server is to be restarted: longer than any test
DOWN_AFTER_FAILOVER_MS = 300_000

#: seconds a whole failover, or the deployment's start, may take
SETTLE_TIMEOUT = 30.0

#: seconds between two looks at a condition being waited for
POLL = 0.1


class SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` watching one primary."""

    ready_marker = b"+monitor master"

    def __init__(self, directory: str, primary_port: int, quorum: int = 2):
        super().__init__(directory)
        self.primary_port = primary_port
        self.quorum = quorum

    def _arguments(self) -> list[str]:
        # A sentinel rewrites its configuration file as it learns; it must
        # be its own, in its own directory.
        config = os.path.join(self.directory, "sentinel.conf")
        if not os.path.exists(config):
            with open(config, "w") as out:
                out.write(
                    f"port {self.port}\n"
                    "bind 127.0.0.1\n"
                    f"dir {self.directory}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} {self.quorum}\n"
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {SERVICE} 5000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                )
        return ["redis-server", config, "--sentinel", "--logfile", ""]


def _connect(port: int, reply_timeout: float = 2) -> defer.Deferred:
    return txredisapi.Connection(
        "127.0.0.1", port, reconnect=False, connectTimeout=2, replyTimeout=reply_timeout)


@defer.inlineCallbacks
def ask(port: int, *command):
    """One command to the server on ``port``, on a connection of its own."""
    connection = yield _connect(port)
    try:
        return (yield connection.execute_command(*command))
    finally:
        yield connection.disconnect()


@defer.inlineCallbacks
def write_and_wait(port: int, *command, replicas: int = 1, wait_ms: int = 20_000):
    """
    Run the write ``command`` on the server on ``port``, then ``WAIT`` on the
    same connection for ``replicas`` replicas to hold it, for up to
    ``wait_ms`` (generous: a loaded host may take a while).  ``WAIT`` counts
    the replicas holding its own connection's writes, so on a connection of
    its own it would answer at once, whatever the replicas hold.

    @return: how many replicas acknowledged the write.
    """
    connection = yield _connect(port, reply_timeout=wait_ms / 1000 + 5)
    try:
        yield connection.execute_command(*command)
        return (yield connection.execute_command("WAIT", replicas, wait_ms))
    finally:
        yield connection.disconnect()


@defer.inlineCallbacks
def wait_until(condition, what: str, timeout: float = SETTLE_TIMEOUT):
    """Poll ``condition`` (a Deferred-returning callable) until it is true."""
    deadline = reactor.seconds() + timeout
    while True:
        try:
            if (yield condition()):
                return
        except Exception:  # the server may be down or not yet up: look again
            pass
        if reactor.seconds() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        yield task.deferLater(reactor, POLL, lambda: None)


def _fields(flat) -> dict:
    return dict(zip(flat[::2], flat[1::2]))


class SentinelDeployment:
    def __init__(self, testcase):
        self._testcase = testcase
        self.primary = RedisServer(testcase.mktemp())
        self.replica = None
        self.sentinels: list[SentinelServer] = []

    @defer.inlineCallbacks
    def start(self):
        yield self._started(self.primary)
        self.replica = RedisServer(self._testcase.mktemp(), replica_of=self.primary.port)
        yield self._started(self.replica)
        for _ in range(3):
            sentinel = SentinelServer(self._testcase.mktemp(), self.primary.port)
            self.sentinels.append(sentinel)
            yield self._started(sentinel)
        yield self.wait_until_ready()
        return self

    def _started(self, server):
        self._testcase.addCleanup(server.stop)
        return server.start()

    def url(self, db: int = 0, query: str = "") -> str:
        """The store address of this deployment: ``redis+sentinel://...``."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}" + (f"?{query}" if query else "")

    def live_sentinels(self):
        return [s for s in self.sentinels if s._process is not None and not s._process.ended.called]

    @defer.inlineCallbacks
    def primary_port(self) -> int:
        """The primary's port as a live sentinel reports it."""
        host, port = yield ask(self.live_sentinels()[0].port,
                               "SENTINEL", "get-master-addr-by-name", SERVICE)
        return int(port)

    def wait_until_ready(self):
        """Until a failover could succeed: replica in sync, everyone known."""

        @defer.inlineCallbacks
        def ready():
            primary = yield self.primary_port()
            info = yield ask(primary, "INFO", "replication")
            if "state=online" not in info:
                return False
            for sentinel in self.live_sentinels():
                state = _fields((yield ask(sentinel.port, "SENTINEL", "master", SERVICE)))
                if (int(state["num-slaves"]) < 1
                        or int(state["num-other-sentinels"]) < len(self.live_sentinels()) - 1):
                    return False
            return True

        return wait_until(ready, "the sentinels know the replica and each other")

    def current_primary(self) -> defer.Deferred:
        """The L{RedisServer} the sentinels now call primary."""
        def server(port):
            return next(s for s in (self.primary, self.replica) if s.port == port)
        return self.primary_port().addCallback(server)

    @defer.inlineCallbacks
    def kill_primary_and_fail_over(self):
        """
        SIGKILL the current primary; wait until the sentinels have promoted
        the replica and it takes writes.  Returns the killed server.
        """
        old = yield self.current_primary()
        yield old.kill()

        @defer.inlineCallbacks
        def promoted():
            port = yield self.primary_port()
            if port == old.port:
                return False
            role = yield ask(port, "ROLE")
            return role[0] == "master"

        yield wait_until(promoted, "the sentinels promoted the replica")
        return old

    @defer.inlineCallbacks
    def _no_more_failovers(self):
        """
        Give every live sentinel a long down-after period.  These servers
        keep nothing on disk, so a killed one restarts empty; should a loaded
        host stall the new primary for the second of L{DOWN_AFTER_MS} while
        the restarted one is still resyncing from it, the sentinels would
        promote the empty one, and everything would be lost.  A test has one
        failover to make; a second, unplanned one would test the host.
        """
        for sentinel in self.live_sentinels():
            yield ask(sentinel.port, "SENTINEL", "SET", SERVICE, "down-after-milliseconds",
                      str(DOWN_AFTER_FAILOVER_MS))

    @defer.inlineCallbacks
    def restart_as_replica(self, server):
        """
        Restart a killed former primary; wait until the sentinels have made
        it a replica of the new primary.  From here on the sentinels fail
        over no more (L{_no_more_failovers}).
        """
        yield self._no_more_failovers()
        yield server.restart()

        @defer.inlineCallbacks
        def demoted():
            role = yield ask(server.port, "ROLE")
            return role[0] == "slave" and role[3] == "connected"

        yield wait_until(demoted, "the old primary became a replica")

    def stop_sentinel(self, index: int = 0):
        return self.sentinels[index].stop()


def start_sentinel_deployment(testcase) -> defer.Deferred:
    """Start a primary, a replica and three sentinels for ``testcase``."""
    require_redis_server()
    return SentinelDeployment(testcase).start()
