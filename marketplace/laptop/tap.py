# -*- test-case-name: tests.laptop.test_tap -*-
"""
The ``laptop-factory`` twistd plugin: one replica of the laptop-order
service.  A three-host deployment runs one per host::

    twistd -n laptop-factory --id 0 --listen tcp:8080 \\
        --replica-listen tcp:8090 --replica-secret laptop-replica.secret \\
        --peer 1=tcp:hostB:8090 --peer 2=tcp:hostC:8090

Replica links carry the replicated data, so they prove a shared secret
(``--replica-secret``) before any of their messages is read; a replica whose
replica links could come from another machine refuses to start without one.

``cluster_service`` builds a whole cluster in one process (the ``suite``
plugin's, and a quick way to try the system on one machine).

Replicas keep their state on disk unless told otherwise: the replication
scheme's safety rests on a replica remembering its vote and log, and a
replica that restarts empty but votes at once can elect a primary that lacks
an acknowledged order.  ``--memory-only`` is for throwaway runs.
"""

import os
import secrets
from typing import Dict, Optional, Sequence

from twisted.application.service import Application, MultiService
from twisted.python import usage

from marketplace.laptop.replication import Timeouts
from marketplace.laptop.service import ReplicaService, make_storage
from marketplace.metrics import Counters, export
from marketplace.metrics_endpoint import serve_metrics
from marketplace.net import ConnectionLimits
from marketplace.options import (
    ServerOptions,
    check_client_endpoint,
    check_server_endpoint,
    listen_option,
    positive_float,
)
from marketplace.peersecret import (
    MAKE_ONE,
    is_loopback_client_endpoint,
    is_loopback_endpoint,
    load_secret,
)
from protocols.laptop_server import DEFAULT_IDLE_TIMEOUT

#: a deep accept queue: the existing server's backlog of 8 dropped customers
#: that connected at once; 128 and more must all get in
BACKLOG = 1024
DEFAULT_LISTEN = f"tcp:8080:backlog={BACKLOG}"
#: the suite's in-process cluster: replica i listens on port 8080 + i
SUITE_PORTS = (8080, 8081, 8082)
#: where replicas keep their state when no --data-dir is given (relative to
#: the working directory), one subdirectory per replica id
DEFAULT_DATA_ROOT = "laptop-data"
#: the same for the suite's in-process cluster, apart from a replica's own
SUITE_DATA_ROOT = "laptop-suite-data"
_DEFAULTS = Timeouts()


def default_data_dir(replica_id: int, root: str = DEFAULT_DATA_ROOT) -> str:
    return os.path.join(root, f"replica-{replica_id}")


def _replica_id(value: str) -> int:
    number = int(value)
    if not 0 <= number < 2**31:
        raise ValueError(f"must be a non-negative integer: {value}")
    return number


_replica_id.coerceDoc = "A non-negative integer, unique in the cluster."


class Options(ServerOptions):
    synopsis = "--id N --listen ENDPOINT [--peer ID=ENDPOINT]... [options]"
    longdesc = (
        "Run one replica of the laptop-order service.  Customers (the existing "
        "client or laptop-client) may connect to any replica; orders are "
        "committed by the primary on every live backup before they are "
        "acknowledged.  Give every other replica of the cluster with --peer."
    )
    optParameters = [
        listen_option(DEFAULT_LISTEN),
        ["id", None, 0, "This replica's id.", _replica_id],
        ["data-dir", None, None,
         "Directory for the view, vote, write-ahead log and snapshots, so a restart "
         "(even of the whole cluster) keeps every acknowledged order.  Default: "
         f"{DEFAULT_DATA_ROOT}/replica-ID in the working directory."],
        ["heartbeat", None, _DEFAULTS.heartbeat,
         "Seconds between the primary's heartbeats.", positive_float],
        ["backup-timeout", None, _DEFAULTS.backup,
         "Seconds a silent backup may hold up commits before it is dropped from the "
         "live set.", positive_float],
        ["election-timeout", None, _DEFAULTS.election,
         "Seconds without a primary before a replica stands for election (replica id "
         "times --election-stagger is added, so lower ids go first).", positive_float],
        ["election-stagger", None, _DEFAULTS.election_stagger,
         "Extra election delay per replica id.", positive_float],
        ["request-timeout", None, _DEFAULTS.request,
         "Seconds a customer request may wait for a primary to commit it before the "
         "customer gets a failure reply.", positive_float],
        ["idle-timeout", None, DEFAULT_IDLE_TIMEOUT,
         "Seconds a customer connection with no request unanswered may stay silent "
         "before it is closed.", positive_float],
        ["replica-listen", None, None,
         "Server endpoint for the other replicas' links alone (their --peer names it); "
         "the --listen port then refuses replica links.  Default: replica links come to "
         "--listen."],
        ["replica-secret", None, None,
         "File holding the secret every replica of the cluster shares; each replica link "
         "proves it before any of its messages is read.  Required unless every replica "
         "link endpoint (--replica-listen, or else --listen, and every --peer) is on "
         "loopback."],
    ]
    optFlags = [
        ["memory-only", None, "Keep nothing on disk.  UNSAFE across restarts: a replica "
                              "restarted empty votes at once, so an acknowledged order can be "
                              "lost with only one replica down.  For throwaway runs."],
        ["fsync", None, "fsync the write-ahead log before acknowledging (survives a "
                        "machine crash, not only a process crash)."],
    ]

    def __init__(self):
        super().__init__()
        self["peers"] = {}

    def opt_peer(self, value: str) -> None:
        """Another replica, as ID=ENDPOINT (e.g. 1=tcp:hostB:8081); repeat for each."""
        peer, separator, endpoint = value.partition("=")
        try:
            peer_id = _replica_id(peer)
        except ValueError:
            raise usage.UsageError(f"--peer {value!r}: expected ID=ENDPOINT") from None
        if not separator or not endpoint:
            raise usage.UsageError(f"--peer {value!r}: expected ID=ENDPOINT")
        check_client_endpoint(endpoint)
        if peer_id in self["peers"]:
            raise usage.UsageError(f"--peer: replica {peer_id} given twice")
        self["peers"][peer_id] = endpoint

    def postOptions(self):
        super().postOptions()
        if self["id"] in self["peers"]:
            raise usage.UsageError(f"--peer: {self['id']} is this replica's own --id")
        if self["backup-timeout"] <= self["heartbeat"]:
            raise usage.UsageError("--backup-timeout must be longer than --heartbeat")
        if self["election-timeout"] <= self["backup-timeout"]:
            raise usage.UsageError("--election-timeout must be longer than --backup-timeout")
        if self["memory-only"]:
            if self["data-dir"] is not None:
                raise usage.UsageError("--memory-only and --data-dir exclude each other")
            if self["fsync"]:
                raise usage.UsageError("--fsync needs a data directory, not --memory-only")
        elif self["data-dir"] is None:
            self["data-dir"] = default_data_dir(self["id"])
        self._check_replica_links()

    def _check_replica_links(self) -> None:
        """
        Load the replica secret into ``self["secret"]``; without one, every
        endpoint a replica link uses must be on loopback, since an
        unauthenticated link could rewrite committed orders.
        """
        if self["replica-listen"] is not None:
            check_server_endpoint(self["replica-listen"])
        path = self["replica-secret"]
        try:
            self["secret"] = None if path is None else load_secret(path)
        except ValueError as error:
            raise usage.UsageError(f"--replica-secret: {error}") from None
        if self["secret"] is not None:
            return
        exposed = [
            f"--peer {peer}={endpoint}"
            for peer, endpoint in sorted(self["peers"].items())
            if not is_loopback_client_endpoint(endpoint)
        ]
        replica_listen = self["replica-listen"] or self["listen"]
        if not is_loopback_endpoint(replica_listen):
            name = "--replica-listen" if self["replica-listen"] else "--listen"
            exposed.insert(0, f"{name} {replica_listen}")
        if exposed:
            raise usage.UsageError(
                f"replica links off loopback ({', '.join(exposed)}) need --replica-secret FILE, "
                f"the same file on every replica; {MAKE_ONE}.  Or put replica links on "
                f"loopback: --replica-listen tcp:PORT:interface=127.0.0.1"
            )

    def timeouts(self) -> Timeouts:
        return Timeouts(
            heartbeat=self["heartbeat"],
            backup=self["backup-timeout"],
            election=self["election-timeout"],
            election_stagger=self["election-stagger"],
            request=self["request-timeout"],
        )


def replica_service(
    replica_id: int,
    listen: str,
    peers: Dict[int, str],
    timeouts: Timeouts = _DEFAULTS,
    data_dir=None,
    fsync: bool = False,
    counters=None,
    reactor=None,
    replica_secret: Optional[bytes] = None,
    replica_listen: Optional[str] = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    limits: ConnectionLimits = ConnectionLimits(),
) -> ReplicaService:
    """
    One replica; a ``.tac`` per host calls this with its own id and peers.
    ``data_dir`` None keeps nothing on disk (unsafe across restarts).
    """
    return ReplicaService(
        replica_id,
        listen,
        peers,
        timeouts=timeouts,
        storage=make_storage(data_dir, fsync),
        counters=export("laptop", f"replica {replica_id}",
                        Counters() if counters is None else counters),
        clock=reactor,
        idle_timeout=idle_timeout,
        replica_secret=replica_secret,
        replica_listen=replica_listen,
        limits=limits,
    )


def replica_application(
    replica_id: int,
    replica_hosts: Dict[int, str],
    secret_file: str,
    customer_listen: str = DEFAULT_LISTEN,
    data_dir: Optional[str] = None,
) -> Application:
    """
    The ``application`` of a per-host ``.tac``: replica ``replica_id`` of the
    cluster whose replica links go to ``replica_hosts`` ({id: "host:port"},
    the same table on every host), authenticated by the secret in
    ``secret_file`` (the same file on every host).  Customers connect to
    ``customer_listen``; replica links to the replica's own port in the
    table, on every interface.  State goes to ``data_dir`` (by default
    ``default_data_dir(replica_id)``).

    @raise ValueError: if the secret file cannot be used (its message says why).
    """
    if data_dir is None:
        data_dir = default_data_dir(replica_id)
    own_port = replica_hosts[replica_id].rpartition(":")[2]
    peers = {
        peer: f"tcp:{address}" for peer, address in replica_hosts.items() if peer != replica_id
    }
    application = Application(f"laptop-replica-{replica_id}")
    replica_service(
        replica_id, customer_listen, peers, data_dir=data_dir,
        replica_secret=load_secret(secret_file), replica_listen=f"tcp:{own_port}",
    ).setServiceParent(application)
    return application


def makeService(options) -> ReplicaService:
    return serve_metrics(replica_service(
        options["id"],
        options["listen"],
        options["peers"],
        timeouts=options.timeouts(),
        data_dir=options["data-dir"],
        fsync=options["fsync"],
        replica_secret=options["secret"],
        replica_listen=options["replica-listen"],
        idle_timeout=options["idle-timeout"],
        limits=options.connection_limits(),
    ), options)


def cluster_service(
    ports: Sequence[int] = SUITE_PORTS,
    host: str = "127.0.0.1",
    timeouts: Timeouts = _DEFAULTS,
    reactor=None,
    data_root: Optional[str] = SUITE_DATA_ROOT,
    listen=lambda port: f"tcp:{port}",
) -> MultiService:
    """
    A whole cluster in one process: replica i listens on ``listen(ports[i])``,
    reaches the others on ``host`` and keeps its state under ``data_root``
    (None: nothing on disk).  It survives no machine failure, but shows the
    protocol at work (and each replica can be stopped alone).  Its replica
    links prove a secret drawn afresh for the process, which no other
    process knows.
    """
    secret = secrets.token_bytes(32)
    cluster = MultiService()
    for replica_id, port in enumerate(ports):
        peers = {
            other: f"tcp:{host}:{other_port}"
            for other, other_port in enumerate(ports)
            if other != replica_id
        }
        data_dir = None if data_root is None else default_data_dir(replica_id, data_root)
        replica = replica_service(
            replica_id, f"{listen(port)}:backlog={BACKLOG}", peers, timeouts, data_dir=data_dir,
            reactor=reactor, replica_secret=secret,
        )
        replica.setName(f"replica {replica_id}")
        replica.setServiceParent(cluster)
    return cluster


def suite_service(options) -> MultiService:
    """
    The ``suite`` plugin's laptop system: three replicas on the suite's
    laptop ports (8080-8082 by default), their state under
    ``SUITE_DATA_ROOT`` in the working directory.
    """
    return cluster_service(options["laptop-ports"], host=options["interface"] or "127.0.0.1",
                           listen=options.endpoint)
