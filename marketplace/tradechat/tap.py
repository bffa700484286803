"""
The C{tradechat} plugin: C{twistd -n tradechat --listen tcp:9000 --store ...}.
"""

from __future__ import annotations

import sys

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

from marketplace.collector import CollectorSettings
from marketplace.metrics import Counters, export, export_flat
from marketplace.metrics_endpoint import serve_metrics
from marketplace.net import ConnectionLimits, Listener
from marketplace.options import ServiceOptions, history_keep_option, listen_option, positive_float
from marketplace.peersecret import MAKE_ONE, load_secret
from marketplace.sharedsocket import AdoptedListener, SharedSocket
from marketplace.store import MAX_BALANCE, make_store, store_label
from marketplace.supervisor import WorkerSupervisor, worker_environment
from marketplace.tradechat.auth import Authenticator, CredentialFileError, parse_credentials
from marketplace.tradechat.compat import COMPAT_OPENING_BALANCE
from marketplace.tradechat.pubsub import room_hub
from marketplace.tradechat.service import (
    DEFAULT_ANONYMOUS_LEASE, DEFAULT_SESSION_TTL, TradeChatConfig, TradeChatService,
)
from protocols.nsframe import DEFAULT_MAX_FRAME_SIZE, HEADER_LEN
from protocols.tradechat import (
    DEFAULT_IDLE_TIMEOUT, DEFAULT_LOGIN_TIMEOUT, DEFAULT_MAX_OUTPUT_BUFFER, DEFAULT_MAX_TOTAL_OUTPUT,
    TradeChatServerFactory,
)
from protocols.turns import TurnFlusher

DEFAULT_PORT = 9000
DEFAULT_LISTEN = f"tcp:{DEFAULT_PORT}"
#: Where this system's keys live in a shared Redis (docs/redis.md).
KEY_PREFIX = "tradechat:"
MAX_WORKERS = 64
DEFAULT_MAX_CONNECTIONS = 10_000


def _frame_size(value: str) -> int:
    size = int(value)
    if not HEADER_LEN <= size <= DEFAULT_MAX_FRAME_SIZE:
        raise ValueError(f"must be {HEADER_LEN}..{DEFAULT_MAX_FRAME_SIZE}")
    return size


def _byte_count(value: str) -> int:
    size = int(value)
    if size < 1:
        raise ValueError("must be a positive number of bytes")
    return size


def _worker_count(value: str) -> int:
    count = int(value)
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"must be 1..{MAX_WORKERS}")
    return count


def _balance(value: str) -> int:
    amount = int(value)
    if not 0 <= amount <= MAX_BALANCE:
        raise ValueError(f"must be 0..{MAX_BALANCE}")
    return amount


class Options(ServiceOptions):
    synopsis = "[options]"
    longdesc = ("Trading chatroom over NS binary frames: login, rooms with live push, "
                "deposits, withdrawals, transfers and history.")
    optFlags = [
        ["compat", None, "Compatibility profile: accounts 0..1023 pre-opened and names mapped "
                         "into that range, as the existing server and its stress client expect."],
        ["require-password", None, "Refuse CRC-token-only logins: every account needs a "
                                   "password (see --credentials)."],
    ]
    optParameters = [
        listen_option(DEFAULT_LISTEN),
        ["opening-balance", None, None,
         f"Opening balance of new accounts (default {COMPAT_OPENING_BALANCE} with --compat, "
         "else 0).", _balance],
        ["credentials", None, None,
         "File of password credentials (lines made by tradechat-passwd); needs --decoy-secret."],
        ["decoy-secret", None, None,
         "Secret file (mode 0600, at least 16 bytes) keying the KDF parameters HELLO gives "
         "names without a password; the same file for every process and restart."],
        ["idle-timeout", None, DEFAULT_IDLE_TIMEOUT,
         "Close a connection that sends nothing for this many seconds.", positive_float],
        ["login-timeout", None, DEFAULT_LOGIN_TIMEOUT,
         "Close a connection that has not logged in after this many seconds.", positive_float],
        ["session-ttl", None, DEFAULT_SESSION_TTL,
         "Seconds a login session stays alive without activity.", positive_float],
        ["anonymous-lease", None, DEFAULT_ANONYMOUS_LEASE,
         "Seconds a name without a password keeps its user id after its last use "
         "(at least twice --session-ttl).", positive_float],
        ["max-frame-size", None, DEFAULT_MAX_FRAME_SIZE,
         "Largest request frame accepted, header included, in bytes.", _frame_size],
        ["max-output-buffer", None, DEFAULT_MAX_OUTPUT_BUFFER,
         "Bytes queued to a connection that stopped reading before it is dropped.", _byte_count],
        ["workers", None, 1,
         "Worker processes accepting on one listening socket a master owns and supervises "
         "(more than 1 needs a shared store: --store redis://...).", _worker_count],
        ["max-connections", None, DEFAULT_MAX_CONNECTIONS,
         "Connections per process (per worker with --workers); one more is answered "
         "SERVER_BUSY and closed.", _byte_count],
        ["max-total-output", None, DEFAULT_MAX_TOTAL_OUTPUT,
         "Bytes queued to all connections together before the readers with the most "
         "queued are dropped.", _byte_count],
        history_keep_option(),
    ]

    def connection_limits(self) -> ConnectionLimits:
        """
        The listener's limits: only the one per address, as the total is
        the factory's (C{--max-connections}), which answers the connection
        past it SERVER_BUSY before closing it.
        """
        return ConnectionLimits(per_address=self["max-connections-per-address"])

    def parseOptions(self, options=None):
        # Kept so that a master can start its workers with the same options.
        self.arguments = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def postOptions(self):
        super().postOptions()
        if self["workers"] > 1 and self["store"] == "memory":
            raise usage.UsageError(
                "--workers above 1 needs a shared store: the embedded store lives in one "
                "process, so each worker would have its own balances and sessions; "
                "use --store redis://HOST:PORT/DB")
        if self["anonymous-lease"] < 2 * self["session-ttl"]:
            raise usage.UsageError(
                "--anonymous-lease must be at least twice --session-ttl, so that a logged-in "
                "name always renews its user id before the lease can end")
        if self["opening-balance"] is None:
            self["opening-balance"] = COMPAT_OPENING_BALANCE if self["compat"] else 0
        credentials = {}
        if self["credentials"] is not None:
            try:
                credentials = parse_credentials(FilePath(self["credentials"]).getContent().decode("utf-8"))
            except (OSError, UnicodeDecodeError, CredentialFileError) as error:
                raise usage.UsageError(f"--credentials: {error}") from None
            if self["decoy-secret"] is None:
                raise usage.UsageError(
                    "--credentials needs --decoy-secret: without one, decoy salts change at "
                    f"every start and show which names have passwords; {MAKE_ONE}")
        decoy = {}
        if self["decoy-secret"] is not None:
            try:
                decoy["decoy_secret"] = load_secret(self["decoy-secret"])
            except ValueError as error:
                raise usage.UsageError(f"--decoy-secret: {error}") from None
        self["authenticator"] = Authenticator(credentials, self["require-password"], **decoy)


class _Provisioning(Service):
    """Prepares the service (compatibility accounts) once the store runs."""

    log = Logger()

    def __init__(self, tradechat: TradeChatService) -> None:
        self.tradechat = tradechat

    def startService(self):
        super().startService()
        self.tradechat.prepare().addErrback(
            lambda failure: self.log.failure("provisioning accounts failed; logins will retry",
                                             failure))


class TradeChatRoot(MultiService):
    """
    One serving process's service tree.  On stop it first stops accepting,
    then lets every client connection finish the requests it has sent and
    closes it, and waits for their login sessions to be ended before
    stopping the store (MultiService alone would stop all children at
    once); then it logs the counters of refused input and closed
    connections.
    """

    log = Logger()
    factory: TradeChatServerFactory | None = None
    listener: Service | None = None

    def stopService(self):
        if self.factory is None:
            return super().stopService()
        stopped_accepting = defer.maybeDeferred(self.listener.stopService)
        closed = stopped_accepting.addCallback(lambda _: self.factory.close_connections())
        closed.addErrback(lambda failure: self.log.warn(
            "connections still closing at shutdown: {error}", error=failure.getErrorMessage()))
        closed.addCallback(lambda _: self.log.info(
            "tradechat counters: {counters}", counters=self.factory.counters.snapshot()))
        return closed.addCallback(lambda _: super(TradeChatRoot, self).stopService())


def makeService(options: Options, reactor=None) -> MultiService:
    """
    One process serving C{--listen}, or with C{--workers N} a master that
    owns the listening socket and supervises N such processes.
    """
    if reactor is None:
        from twisted.internet import reactor
    if options["workers"] > 1:
        return serve_metrics(_master(options, reactor), options, reactor)
    return serve_metrics(_serving_process(
        options, reactor, lambda factory: Listener(options["listen"], factory, reactor,
                                                   limits=options.connection_limits())),
        options, reactor)


def worker_service(options: Options, listen_fd: int, reactor) -> TradeChatRoot:
    """A worker's service tree: the master's listening socket, inherited as C{listen_fd}."""
    return _serving_process(
        options, reactor,
        lambda factory: AdoptedListener(listen_fd, options["listen"], factory, reactor))


def _master(options: Options, reactor) -> MultiService:
    root = MultiService()
    shared = SharedSocket(options["listen"], reactor)
    shared.setName("tradechat")
    shared.setServiceParent(root)
    supervisor = WorkerSupervisor(
        options["workers"], sys.executable,
        ["-m", "marketplace.tradechat.worker", *options.arguments], shared, reactor,
        env=worker_environment())
    supervisor.setName("workers")
    supervisor.setServiceParent(root)
    supervisor.sums = WorkerSums(supervisor, store_label(options["store"]))
    return root


def _serving_process(options: Options, reactor, make_listener) -> TradeChatRoot:
    root = TradeChatRoot()
    CollectorSettings().setServiceParent(root)
    store = make_store(options["store"], options["store-timeout"], reactor, KEY_PREFIX,
                       options["history-keep"])
    store.setName("store")
    store.setServiceParent(root)
    flusher = TurnFlusher(reactor)
    rooms = room_hub(store, flusher, reactor)
    if isinstance(rooms, Service):
        rooms.setName("rooms")
        rooms.setServiceParent(root)
    tradechat = TradeChatService(
        store, rooms, options["authenticator"], reactor,
        TradeChatConfig(options["compat"], options["opening-balance"], options["session-ttl"],
                        options["anonymous-lease"]))
    _Provisioning(tradechat).setServiceParent(root)
    factory = TradeChatServerFactory(
        tradechat, reactor, export("tradechat", "tradechat", Counters()),
        idle_timeout=options["idle-timeout"], login_timeout=options["login-timeout"],
        max_frame_size=options["max-frame-size"], max_output_buffer=options["max-output-buffer"],
        flusher=flusher, max_connections=options["max-connections"],
        max_total_output=options["max-total-output"])
    root.factory = factory
    listener = root.listener = make_listener(factory)
    listener.setName("tradechat")
    listener.setServiceParent(root)
    return root


def worker_report(root: TradeChatRoot) -> dict:
    """
    What a worker reports to its master: its chat counters, and its store's
    under C{store.} names (L{WorkerSums} splits them again).
    """
    report = root.factory.counters.flat()
    for name, value in root.getServiceNamed("store").metrics.flat().items():
        report[STORE_PREFIX + name] = value
    return report


STORE_PREFIX = "store."


class WorkerSums:
    """
    The master's view of all its workers, exported for C{--metrics}: the
    sum of every worker's report (L{WorkerSupervisor.counters}), split into
    the chat's counters and the store's.
    """

    def __init__(self, supervisor: WorkerSupervisor, store_label: str) -> None:
        self._supervisor = supervisor
        export_flat("tradechat", "tradechat", self.chat)
        export_flat("store", store_label, self.store)

    def chat(self) -> dict:
        return {name: value for name, value in self._supervisor.counters().items()
                if not name.startswith(STORE_PREFIX)}

    def store(self) -> dict:
        return {name[len(STORE_PREFIX):]: value
                for name, value in self._supervisor.counters().items()
                if name.startswith(STORE_PREFIX)}


def suite_service(suite_options) -> MultiService:
    """
    The trading chatroom inside the C{suite} plugin: default options
    (CRC-only login allowed, no compatibility profile) on the suite's port
    and store settings.
    """
    options = Options()
    options.parseOptions(["--listen", suite_options.endpoint(suite_options["tradechat-port"]),
                          "--store", suite_options["store"],
                          "--store-timeout", str(suite_options["store-timeout"])])
    return makeService(options)
