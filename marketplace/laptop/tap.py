"""
The ``laptop-factory`` twistd plugin: one replica of the laptop-order
service.  A three-host deployment runs one per host::

    twistd -n laptop-factory --id 0 --listen tcp:8080 \\
        --peer 1=tcp:hostB:8081 --peer 2=tcp:hostC:8082

``cluster_service`` builds a whole cluster in one process (the ``suite``
plugin's, and a quick way to try the system on one machine).

Replicas keep their state on disk unless told otherwise: the replication
scheme's safety rests on a replica remembering its vote and log, and a
replica that restarts empty but votes at once can elect a primary that lacks
an acknowledged order.  ``--memory-only`` is for throwaway runs.
"""

import os
from typing import Dict, Optional, Sequence

from twisted.application.service import Application, MultiService
from twisted.python import usage

from marketplace.laptop.replication import Timeouts
from marketplace.laptop.service import ReplicaService, make_storage
from marketplace.net import ConnectionLimits
from marketplace.options import (
    ServerOptions,
    check_client_endpoint,
    listen_option,
    positive_float,
)

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
        counters=counters,
        clock=reactor,
        limits=limits,
    )


def replica_application(
    replica_id: int, hosts: Dict[int, str], data_dir: Optional[str] = None
) -> Application:
    """
    The ``application`` of a per-host ``.tac``: replica ``replica_id`` of the
    cluster ``hosts`` ({id: "host:port"}, the same table on every host),
    listening on its own port on every interface, keeping its state in
    ``data_dir`` (by default ``default_data_dir(replica_id)``).
    """
    if data_dir is None:
        data_dir = default_data_dir(replica_id)
    own_port = hosts[replica_id].rpartition(":")[2]
    peers = {peer: f"tcp:{address}" for peer, address in hosts.items() if peer != replica_id}
    application = Application(f"laptop-replica-{replica_id}")
    replica_service(
        replica_id, f"tcp:{own_port}:backlog={BACKLOG}", peers, data_dir=data_dir
    ).setServiceParent(application)
    return application


def makeService(options) -> ReplicaService:
    return replica_service(
        options["id"],
        options["listen"],
        options["peers"],
        timeouts=options.timeouts(),
        data_dir=options["data-dir"],
        fsync=options["fsync"],
        limits=options.connection_limits(),
    )


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
    protocol at work (and each replica can be stopped alone).
    """
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
            reactor=reactor,
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
