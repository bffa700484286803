"""
The whole marketplace on 127.0.0.1 for end-to-end tests: customer-db,
product-db and payments on OS-chosen ports, both front ends pointed at them
(every link between them authenticated by a service secret), and envelope
clients for the front ends.
"""

from __future__ import annotations

import os
import re
import signal
import sys

import attrs
from twisted.internet import defer, protocol, reactor

from marketplace.market import tap
from marketplace.market.rpc import ServiceClient
from marketplace.peersecret import load_secret
from marketplace.store import make_store
from tests.support.redis_server import START_TIMEOUT
from tests.support.services import listeners_of, listening_port, start_service

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LOOPBACK_ANY_PORT = "tcp:0:interface=127.0.0.1"

#: Front-end options that let every test user sign up at once from 127.0.0.1.
UNLIMITED_LOGINS = ["--kdf-queue", "10000", "--kdf-per-client", "10000", "--kdf-interval", "0.0001",
                    "--kdf-burst", "10000"]

#: A card that passes Luhn, with an expiry far ahead.
CARD = {"name": "Bea Buyer", "card_number": "4111 1111 1111 1111",
        "expiration_date": "12/2099", "security_code": "123"}


def parse(plugin, argv):
    options = plugin.Options()
    options.parseOptions(argv)
    return options


def secret_file(testcase, secret=b"a service secret for this test only"):
    """A service secret file (mode 0600) in the test's temporary directory."""
    path = os.path.abspath(testcase.mktemp())
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(secret)
    return path


@attrs.define
class Market:
    store: object
    secret_file: str | None = None
    ports: dict = attrs.Factory(dict)
    listeners: dict = attrs.Factory(dict)

    def secret_argv(self) -> list:
        return [] if self.secret_file is None else ["--service-secret", self.secret_file]

    def db_client(self, testcase, name):
        """A client of DB service ``name`` that proves the market's secret, as a front end does."""
        return client(testcase, self.ports[name], secret=load_secret(self.secret_file))

    def front_options(self, role, listen=LOOPBACK_ANY_PORT):
        plugin = tap.buyer_front if role == "buyer" else tap.seller_front
        argv = ["--listen", listen, "--cheap-kdf", "--rpc-timeout", "2", *UNLIMITED_LOGINS,
                "--customer-db", f"tcp:127.0.0.1:{self.ports['customer-db']}",
                "--product-db", f"tcp:127.0.0.1:{self.ports['product-db']}",
                *self.secret_argv()]
        if role == "buyer":
            argv += ["--payments", f"tcp:127.0.0.1:{self.ports['payments']}"]
        return parse(plugin, argv)


@defer.inlineCallbacks
def start_db_services(testcase, market, approve="all", lease_clock=None):
    """
    customer-db, product-db and payments sharing ``market.store``; product-db
    sweeps lapsed reservations on ``lease_clock`` (default: the reactor).
    """
    common = ["--listen", LOOPBACK_ANY_PORT, *market.secret_argv()]
    makers = {
        "customer-db": (tap.make_customer_db, parse(tap.customer_db, common), {}),
        "product-db": (tap.make_product_db, parse(tap.product_db, common),
                       {"lease_clock": lease_clock}),
        "payments": (tap.make_payments, parse(tap.payments, common + ["--approve", approve]), {}),
    }
    for name, (make, options, extra) in makers.items():
        service = start_service(testcase, make(options, store=market.store, reactor=reactor,
                                               **extra))
        market.listeners[name] = listeners_of(service)[0]
        market.ports[name] = yield listening_port(market.listeners[name])


@defer.inlineCallbacks
def start_front(testcase, market, role):
    """Start (or start another) ``role`` front end; returns its port."""
    make = tap.make_buyer_front if role == "buyer" else tap.make_seller_front
    service = start_service(testcase, make(market.front_options(role)))
    return (yield listening_port(listeners_of(service)[0]))


@defer.inlineCallbacks
def start_market(testcase, store=None, approve="all", lease_clock=None):
    """
    Everything, on the embedded store unless ``store`` is given (a memory
    store on a ``task.Clock`` lets a test drive session expiry and
    reservation leases while the sockets stay on the real reactor; pass the
    clock as ``lease_clock`` too for product-db's sweep of lapsed leases).
    """
    if store is None:
        store = make_store("memory", reactor=reactor)
    start_service(testcase, store)
    market = Market(store, secret_file(testcase))
    yield start_db_services(testcase, market, approve, lease_clock)
    market.ports["buyer-front"] = yield start_front(testcase, market, "buyer")
    market.ports["seller-front"] = yield start_front(testcase, market, "seller")
    return market


def client(testcase, port, timeout=5.0, secret=None):
    """An envelope client of a front end (or with ``secret``, of a DB service); closed at cleanup."""
    connection = ServiceClient(f"tcp:127.0.0.1:{port}", pool_size=2, timeout=timeout, retries=0,
                               secret=secret)
    testcase.addCleanup(connection.close)
    return connection


class Shopper:
    """A logged-in user of one front end: calls carry the session."""

    def __init__(self, connection, role):
        self.connection = connection
        self.role = role
        self.session_id = None
        self.user_id = None
        self.username = self.password = None

    @defer.inlineCallbacks
    def sign_up(self, username, password="secret-pass"):
        yield self.connection.call("CreateAccount", {"username": username, "password": password})
        self.username, self.password = username, password
        return (yield self.log_in_again())

    @defer.inlineCallbacks
    def log_in_again(self):
        """Log in again (a new session) with the account ``sign_up`` made."""
        session_id, reply = yield self.connection.call(
            "Login", {"username": self.username, "password": self.password})
        self.session_id = session_id
        self.user_id = reply[f"{self.role}_id"]
        return self

    def call(self, api, payload=None, **kwargs):
        d = self.connection.call(api, payload or {}, session_id=self.session_id, **kwargs)
        return d.addCallback(lambda reply: reply[1])


class _TwistdProcess(protocol.ProcessProtocol):
    """A ``twistd -ny`` child; ``listening`` fires with the port it logs."""

    def __init__(self, name):
        self.name = name
        self.output = b""
        self.port = None
        self.listening = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data
        found = re.search(rb"%s listening on [\d.]+:(\d+)" % self.name.encode(), self.output)
        if found and not self.listening.called:
            self.port = int(found.group(1))
            self.listening.callback(self.port)

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode(errors="replace")[-2000:]))
        self.ended.callback(None)

    def kill(self):
        """SIGKILL, as a crash would; fires once the process is gone."""
        if not self.ended.called:
            self.transport.signalProcess(signal.SIGKILL)
        return self.ended.addTimeout(START_TIMEOUT, reactor)


def spawn_tac(testcase, role, port=0, **settings):
    """
    Run ``tapfiles/market-<role>.tac`` under ``twistd -n`` with MARKET_*
    settings; a Deferred fires with the process once it listens.
    """
    child = _TwistdProcess(role)
    env = dict(os.environ, PYTHONPATH=REPO, MARKET_LISTEN=f"tcp:{port}:interface=127.0.0.1",
               **{f"MARKET_{name.upper()}": value for name, value in settings.items()})
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "--logfile=-", "-y",
            os.path.join(REPO, "tapfiles", f"market-{role}.tac")]
    directory = testcase.mktemp()
    os.makedirs(directory)
    reactor.spawnProcess(child, sys.executable, argv, env=env, path=directory)
    testcase.addCleanup(child.kill)
    return child.listening.addTimeout(START_TIMEOUT, reactor).addCallback(lambda _: child)
