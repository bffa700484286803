"""
The marketplace's twistd plugins: ``customer-db``, ``product-db``,
``payments``, ``buyer-front`` and ``seller-front``.

Each plugin is an attribute of this module holding ``Options`` and
``makeService`` (``ServiceMaker(name, "marketplace.market.tap.customer_db",
...)``), so the option code below is written once and shared:

- the DB services and payments own a store (``--store``) and listen on
  loopback by default.  With ``--service-secret FILE`` they serve only
  callers that prove the secret in that file (see ``dbservice.authenticated``);
  without one they refuse to listen anywhere but on loopback;
- the front ends own no state and no store; they are told where the DB
  services are (``--customer-db``, ``--product-db``, ``--payments``) and
  prove ``--service-secret`` on every pooled connection to them;
- every one of them runs with ``CollectorSettings`` (see ``marketplace.collector``).

``suite_service`` runs all five in one process for the ``suite`` plugin.
"""

from __future__ import annotations

import os
import secrets

import attrs
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.python import usage

from marketplace.market.accounts import CHEAP_COST, KdfCost, Passwords
from marketplace.market.buyer_front import BuyerFront
from marketplace.collector import CollectorSettings
from marketplace.market.customer_db import CustomerDbService
from marketplace.market.dbservice import authenticated, make_dispatch
from marketplace.market.front import Backend
from marketplace.market.kdfgate import GateLimits, KdfGate
from marketplace.market.payments import ApprovalPolicy, PaymentsService
from marketplace.market.periodic import Periodic
from marketplace.market.product_db import DEFAULT_LEASE, ProductDbService, lease_sweep_interval
from marketplace.market.rpc import ServiceClient
from marketplace.market.seller_front import SellerFront
from marketplace.metrics import Counters, export
from marketplace.metrics_endpoint import serve_metrics
from marketplace.net import Listener
from marketplace.peersecret import MAKE_ONE, is_loopback_endpoint, load_secret
from marketplace.options import (
    ServerOptions,
    ServiceOptions,
    check_client_endpoint,
    history_keep_option,
    listen_option,
    positive_float,
)
from marketplace.store import make_store
from marketplace.store.ledger_rules import KEEP_EVERYTHING
from protocols.envelope_server import EnvelopeServerFactory
from protocols.jsonframe import MAX_FRAME_LIMIT

CUSTOMER_DB_PORT = 7001
PRODUCT_DB_PORT = 7002
PAYMENTS_PORT = 7003
SELLER_FRONT_PORT = 7010
BUYER_FRONT_PORT = 7011
#: Where the marketplace's keys live in a shared Redis (docs/redis.md).
KEY_PREFIX = "market:"

_DEFAULT_LIMITS = GateLimits()

#: Calls a DB service runs at once per connection: front ends pipeline
#: independent calls over a few pooled connections.
DB_MAX_IN_FLIGHT = 64


def _loopback(port: int) -> str:
    return f"tcp:{port}:interface=127.0.0.1"


def _peer(name: str, port: int, what: str) -> list:
    return [name, None, f"tcp:127.0.0.1:{port}",
            f"Client endpoint of {what}, e.g. tcp:HOST:PORT or tls:HOST:PORT:trustRoots=DIR."]


def _int_at_least(minimum: int, maximum: int | None = None):
    def coerce(value: str) -> int:
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ValueError(f"must be an integer in {minimum}..{maximum or 'any'}: {value}")
        return number

    coerce.coerceDoc = f"An integer from {minimum}" + (f" to {maximum}." if maximum else " up.")
    return coerce


class _EnvelopeOptions:
    """Mixin: the frame cap every marketplace listener enforces."""

    optParameters = [
        ["max-frame", None, 1 << 20, "Largest request frame in bytes.",
         _int_at_least(1, MAX_FRAME_LIMIT)],
        ["idle-timeout", None, 300.0, "Seconds before an idle connection is closed.",
         positive_float],
    ]


class _ServiceSecretOptions:
    """Mixin: ``--service-secret``, loaded into ``self["secret"]`` (None without one)."""

    optParameters = [
        ["service-secret", None, None,
         "File holding the secret shared by the front ends and the DB services; every "
         "link between them proves it, and a DB service needs it to listen beyond "
         "loopback. " + MAKE_ONE[0].upper() + MAKE_ONE[1:] + "."],
    ]

    def load_service_secret(self):
        path = self["service-secret"]
        try:
            self["secret"] = None if path is None else load_secret(path)
        except ValueError as error:
            raise usage.UsageError(f"--service-secret: {error}") from None


class _DbServiceOptions(_ServiceSecretOptions, _EnvelopeOptions, ServiceOptions):
    """
    A DB service (or payments): its internal APIs act for whoever calls them,
    so it serves only callers that prove the service secret, or else only
    this machine.
    """

    def postOptions(self):
        super().postOptions()
        self.load_service_secret()
        if self["secret"] is None and not is_loopback_endpoint(self["listen"]):
            raise usage.UsageError(
                f"--listen {self['listen']} accepts callers from other hosts: give "
                f"--service-secret FILE (the front ends' one), or listen on loopback "
                f"(tcp:PORT:interface=127.0.0.1)")


class CustomerDbOptions(_DbServiceOptions):
    synopsis = "[options]"
    longdesc = "Accounts, sessions, carts, purchase history and ratings of the marketplace."
    optParameters = [
        listen_option(_loopback(CUSTOMER_DB_PORT)),
        ["session-ttl", None, 300.0, "Sliding session inactivity timeout in seconds.",
         positive_float],
    ]


class ProductDbOptions(_DbServiceOptions):
    synopsis = "[options]"
    longdesc = "Items, stock, search index, purchase reservations and item feedback."
    optParameters = [
        listen_option(_loopback(PRODUCT_DB_PORT)),
        ["reservation-lease", None, DEFAULT_LEASE,
         "Seconds a purchase's reservation holds its stock; uncommitted by then, it lapses.",
         positive_float],
    ]


class PaymentsOptions(_DbServiceOptions):
    synopsis = "[options]"
    longdesc = "Card authorisation (Luhn, expiry, CVV) with a configurable approval policy."
    optParameters = [
        listen_option(_loopback(PAYMENTS_PORT)),
        ["approve", None, "all", "Approval policy: all, none, max:CENTS or ratio:F (0..1)."],
        history_keep_option(),
    ]

    def postOptions(self):
        super().postOptions()
        try:
            self["policy"] = ApprovalPolicy(self["approve"])
        except ValueError as error:
            raise usage.UsageError(f"--approve: {error}") from None


class _FrontOptions(_ServiceSecretOptions, _EnvelopeOptions, ServerOptions):
    """A stateless front end: where its DB services are, and how to call them."""

    optParameters = [
        _peer("customer-db", CUSTOMER_DB_PORT, "customer-db"),
        _peer("product-db", PRODUCT_DB_PORT, "product-db"),
        ["rpc-timeout", None, 2.0, "Seconds a DB service call may take.", positive_float],
        ["rpc-pool", None, 4, "Connections kept to each DB service.", _int_at_least(1)],
        ["rpc-retries", None, 2, "Extra attempts for idempotent DB calls.", _int_at_least(0)],
    ]
    optParameters += [
        ["kdf-workers", None, _DEFAULT_LIMITS.workers, "Password hashes run at once.", _int_at_least(1)],
        ["kdf-queue", None, _DEFAULT_LIMITS.max_waiting,
         "Password hashes that may wait for a worker; more are refused as busy.", _int_at_least(0)],
        ["kdf-per-client", None, _DEFAULT_LIMITS.per_client,
         "Password hashes one client address may have running or waiting.", _int_at_least(1)],
        ["kdf-interval", None, _DEFAULT_LIMITS.interval,
         "One client address may start a password hash every this many seconds, on average.",
         positive_float],
        ["kdf-burst", None, _DEFAULT_LIMITS.burst,
         "Password hashes one client address may start at once after a quiet spell.",
         _int_at_least(1)],
    ]
    optFlags = [
        ["cheap-kdf", None, "Use a fast argon2id setting (tests and benchmarks only)."],
    ]
    peers: tuple = ("customer-db", "product-db")

    def postOptions(self):
        super().postOptions()
        for peer in self.peers:
            check_client_endpoint(self[peer])
        self.load_service_secret()


class SellerFrontOptions(_FrontOptions):
    synopsis = "[options]"
    longdesc = "Seller front end: the seller APIs, stateless over customer-db and product-db."
    optParameters = [listen_option(f"tcp:{SELLER_FRONT_PORT}")]


class BuyerFrontOptions(_FrontOptions):
    synopsis = "[options]"
    longdesc = "Buyer front end: the buyer APIs, stateless over customer-db, product-db, payments."
    optParameters = [
        listen_option(f"tcp:{BUYER_FRONT_PORT}"),
        _peer("payments", PAYMENTS_PORT, "the payments service"),
        ["void-interval", None, 5.0,
         "Seconds between sweeps voiding the payments of lapsed reservations.", positive_float],
        ["record-interval", None, 5.0,
         "Seconds between sweeps recording in customer-db the purchases a front end committed "
         "but could not record.", positive_float],
    ]
    peers = ("customer-db", "product-db", "payments")


def _listener(options, name, table, reactor, max_in_flight=1, secret=None, counters=None):
    """The listener of one service; with ``secret``, only its holders get through."""
    counters = export("market", name, counters or Counters())
    factory = EnvelopeServerFactory(
        make_dispatch(table), counters, options["max-frame"], options["idle-timeout"], reactor,
        max_in_flight=max_in_flight)
    factory.apis = frozenset(table)
    if secret is not None:
        factory = authenticated(factory, name, secret, reactor)
    listener = Listener(options["listen"], factory, reactor, limits=options.connection_limits(),
                        counters=counters)
    listener.setName(name)
    return listener


def _db_service(name, options, build, store=None, reactor=None):
    """
    A store (unless one is shared in) and the listener of the dispatch table
    ``build(store, reactor, service)`` makes (adding any service of its own).
    """
    if reactor is None:
        from twisted.internet import reactor
    service = MultiService()
    CollectorSettings().setServiceParent(service)
    if store is None:
        store = make_store(options["store"], options["store-timeout"], reactor, KEY_PREFIX,
                           options.get("history-keep", KEEP_EVERYTHING))
        store.setServiceParent(service)
    table = build(store, reactor, service)
    _listener(options, name, table, reactor, DB_MAX_IN_FLIGHT,
              options["secret"]).setServiceParent(service)
    return serve_metrics(service, options, reactor)


def make_customer_db(options, store=None, reactor=None):
    return _db_service("customer-db", options, lambda store, reactor, _: CustomerDbService(
        store.sessions, store.customers, reactor, options["session-ttl"]).dispatch_table(),
        store, reactor)


def make_product_db(options, store=None, reactor=None, lease_clock=None):
    """
    ``lease_clock`` (default: the reactor) times the sweep of lapsed
    reservations; a test whose store runs on a ``task.Clock`` passes it.
    """
    lease = options["reservation-lease"]

    def build(store, reactor, service):
        product_db = ProductDbService(store.catalog, lease)
        Periodic("lease-sweep", lease_sweep_interval(lease), product_db.expire_leases,
                 lease_clock or reactor).setServiceParent(service)
        return product_db.dispatch_table()

    return _db_service("product-db", options, build, store, reactor)


def make_payments(options, store=None, reactor=None):
    return _db_service("payments", options, lambda store, reactor, _: PaymentsService(
        store.ledger, options["policy"], reactor).dispatch_table(), store, reactor)


def _clients(options, reactor):
    return {peer: Backend(peer, ServiceClient(
        options[peer], options["rpc-pool"], options["rpc-timeout"], options["rpc-retries"], reactor,
        secret=options["secret"]))
        for peer in options.peers}


def _passwords(options, reactor, counters):
    """Password hashing admitted by the gate; its refusals counted with the listener's."""
    limits = GateLimits(options["kdf-workers"], options["kdf-queue"], options["kdf-per-client"],
                        options["kdf-interval"], options["kdf-burst"])
    return Passwords(CHEAP_COST if options["cheap-kdf"] else KdfCost(),
                     gate=KdfGate(reactor, limits, counters))


def make_seller_front(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    clients, counters = _clients(options, reactor), Counters()
    front = SellerFront(clients["customer-db"], clients["product-db"],
                        _passwords(options, reactor, counters))
    return _front_service(options, "seller-front", front, clients, reactor, counters)


def make_buyer_front(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    clients, counters = _clients(options, reactor), Counters()
    front = BuyerFront(clients["customer-db"], clients["product-db"], clients["payments"],
                       _passwords(options, reactor, counters), reactor, counters)
    service = _front_service(options, "buyer-front", front, clients, reactor, counters)
    Periodic("payment-voids", options["void-interval"], front.voids.sweep,
             reactor).setServiceParent(service)
    Periodic("owed-records", options["record-interval"], front.owed.sweep,
             reactor).setServiceParent(service)
    return service


class _FrontService(MultiService):
    """A front end's listener; stopping it also closes its pooled DB connections."""

    def __init__(self, clients):
        super().__init__()
        self._clients = clients

    def stopService(self):
        stopped = super().stopService()
        closed = [client.close() for client in self._clients.values()]
        return defer.gatherResults([defer.maybeDeferred(lambda: stopped), *closed])


def _front_service(options, name, front, clients, reactor, counters):
    service = _FrontService(clients)
    CollectorSettings().setServiceParent(service)
    _listener(options, name, front.dispatch_table(), reactor,
              counters=counters).setServiceParent(service)
    return serve_metrics(service, options, reactor)


@attrs.frozen
class Plugin:
    """What ``ServiceMaker`` looks up in its module: ``Options`` and ``makeService``."""

    Options: type
    makeService: object


customer_db = Plugin(CustomerDbOptions, make_customer_db)
product_db = Plugin(ProductDbOptions, make_product_db)
payments = Plugin(PaymentsOptions, make_payments)
seller_front = Plugin(SellerFrontOptions, make_seller_front)
buyer_front = Plugin(BuyerFrontOptions, make_buyer_front)


def options_from_environ(options_class, environ=None, prefix="MARKET_"):
    """
    Parse ``options_class`` from ``MARKET_<OPTION>`` environment variables
    (``--customer-db`` from ``MARKET_CUSTOMER_DB``): how the ``.tac`` files
    are configured per host.
    """
    if environ is None:
        environ = os.environ
    options = options_class()
    argv = []
    for long_name in options.longOpt:
        name = long_name.rstrip("=")
        value = environ.get(prefix + name.upper().replace("-", "_"))
        if value is None:
            continue
        if long_name.endswith("="):
            argv += [f"--{name}", value]
        elif value.lower() in ("1", "yes", "true"):
            argv.append(f"--{name}")
    options.parseOptions(argv)
    return options


def suite_service(suite_options):
    """
    Every marketplace service in one process on the suite's ports, the DB
    services (on loopback) and payments sharing the suite's store.  Their
    links are authenticated with a secret drawn for this run: another user
    of the machine can reach loopback ports too.
    """
    service = MultiService()
    store = make_store(suite_options["store"], suite_options["store-timeout"], key_prefix=KEY_PREFIX)
    store.setServiceParent(service)
    secret = secrets.token_bytes(32)

    def listen(name, loopback=False):
        return ["--listen", suite_options.endpoint(suite_options[f"{name}-port"], loopback)]

    def peer(name):
        return [f"--{name}", f"tcp:127.0.0.1:{suite_options[f'{name}-port']}"]

    arguments = {
        customer_db: listen("customer-db", True)
        + ["--session-ttl", str(suite_options["session-ttl"])],
        product_db: listen("product-db", True),
        payments: listen("payments", True),
        seller_front: listen("seller-front") + peer("customer-db") + peer("product-db"),
        buyer_front: listen("buyer-front") + peer("customer-db") + peer("product-db")
        + peer("payments"),
    }

    def configured(plugin):
        options = plugin.Options()
        options.parseOptions(arguments[plugin])
        options["secret"] = secret
        return options

    for plugin in (customer_db, product_db, payments):
        plugin.makeService(configured(plugin), store=store).setServiceParent(service)
    for plugin in (seller_front, buyer_front):
        plugin.makeService(configured(plugin)).setServiceParent(service)
    return service
