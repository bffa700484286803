"""
The ``suite`` plugin: every system of the product in one process, on default
ports and the embedded store, for trying the product out on one machine.

Each system contributes a ``suite_service(options)`` function in its tap module
(``options`` are the suite's own: the shared ``--store`` settings, each
system's ports and the interface, through :meth:`Options.endpoint`); adding a
system to the suite is one line in :data:`SYSTEMS`.
"""

from __future__ import annotations

import importlib

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from marketplace.branch.tap import DEFAULT_PORT as BRANCH_PORT
from marketplace.laptop.tap import SUITE_PORTS as LAPTOP_PORTS
from marketplace.market.tap import (
    BUYER_FRONT_PORT,
    CUSTOMER_DB_PORT,
    PAYMENTS_PORT,
    PRODUCT_DB_PORT,
    SELLER_FRONT_PORT,
)
from marketplace.metrics_endpoint import serve_metrics
from marketplace.net import Listener
from marketplace.options import MetricsOptions, StoreOptions, positive_float
from marketplace.tradechat.tap import DEFAULT_PORT as TRADECHAT_PORT

#: (system name, tap module providing ``suite_service``), in start order.
SYSTEMS: list[tuple[str, str]] = [
    ("branch", "marketplace.branch.tap"),
    ("tradechat", "marketplace.tradechat.tap"),
    ("market", "marketplace.market.tap"),
    ("laptop", "marketplace.laptop.tap"),
]


def port_number(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"must be a TCP port, 0 to 65535: {value}")
    return number


port_number.coerceDoc = "A TCP port, 0 to 65535."


def _port(name: str, default: int, what: str) -> list:
    return [f"{name}-port", None, default, f"Port of {what}.", port_number]


class Options(MetricsOptions, StoreOptions):
    synopsis = "[options]"
    longdesc = ("Start every system of the product (by default on its default ports) and log "
                "one table of what listens where.")
    optParameters = [
        ["interface", None, "",
         "Address the public listeners bind (default: every interface).  The marketplace's "
         "DB services and payments always bind 127.0.0.1."],
        _port("branch", BRANCH_PORT, "branch A"),
        _port("tradechat", TRADECHAT_PORT, "the trading chatroom"),
        _port("customer-db", CUSTOMER_DB_PORT, "the marketplace customer DB"),
        _port("product-db", PRODUCT_DB_PORT, "the marketplace product DB"),
        _port("payments", PAYMENTS_PORT, "the marketplace payments service"),
        _port("seller-front", SELLER_FRONT_PORT, "the marketplace seller front end"),
        _port("buyer-front", BUYER_FRONT_PORT, "the marketplace buyer front end"),
        ["laptop-ports", None, ",".join(map(str, LAPTOP_PORTS)),
         "Ports of the three laptop replicas, comma separated."],
        ["session-ttl", None, 300.0, "Seconds of inactivity before a marketplace session "
         "expires.", positive_float],
    ]

    def postOptions(self):
        super().postOptions()
        try:
            ports = [port_number(port) for port in self["laptop-ports"].split(",")]
        except ValueError as error:
            raise usage.UsageError(f"--laptop-ports: {error}") from None
        if len(ports) != 3:
            raise usage.UsageError("--laptop-ports: give three ports, e.g. 8080,8081,8082")
        self["laptop-ports"] = ports

    def endpoint(self, port: int, loopback: bool = False) -> str:
        """The server endpoint string for ``port`` on the suite's interface (or loopback)."""
        interface = "127.0.0.1" if loopback else self["interface"]
        return f"tcp:{port}:interface={interface}" if interface else f"tcp:{port}"


def listeners_in(service) -> list[Listener]:
    if isinstance(service, Listener):
        return [service]
    return [found for child in getattr(service, "services", ()) for found in listeners_in(child)]


class AddressTable(Service):
    """Logs, once everything listens, which system listens on which address."""

    log = Logger()

    def __init__(self, systems: list[tuple[str, Service]]):
        self._systems = systems

    def startService(self):
        super().startService()
        rows = [(name, listener) for name, system in self._systems for listener in listeners_in(system)]
        bound = defer.DeferredList([listener.whenListening() for _, listener in rows], consumeErrors=True)
        bound.addCallback(lambda _: self.log.info("{table}", table=self.format(rows)))

    @staticmethod
    def format(rows) -> str:
        lines = [("system", "listener", "address")] + [
            (name, listener.name or listener.description, listener.address) for name, listener in rows]
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def makeService(options) -> MultiService:
    suite = MultiService()
    systems = []
    for name, module in SYSTEMS:
        system = importlib.import_module(module).suite_service(options)
        system.setName(name)
        system.setServiceParent(suite)
        systems.append((name, system))
    AddressTable(systems).setServiceParent(suite)
    return serve_metrics(suite, options)
