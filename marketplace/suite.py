"""
The ``suite`` plugin: every system of the product in one process, on default
ports and the embedded store, for trying the product out on one machine.

Each system contributes a ``suite_service(options)`` function in its tap module
(``options`` are the suite's own, for the shared ``--store`` settings); adding
a system to the suite is one line in :data:`SYSTEMS`.
"""

from __future__ import annotations

import importlib

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger

from marketplace.metrics_endpoint import serve_metrics
from marketplace.net import Listener
from marketplace.options import ServiceOptions

#: (system name, tap module providing ``suite_service``), in start order.
SYSTEMS: list[tuple[str, str]] = [
    ("branch", "marketplace.branch.tap"),
    ("tradechat", "marketplace.tradechat.tap"),
    ("market", "marketplace.market.tap"),
    ("laptop", "marketplace.laptop.tap"),
]


class Options(ServiceOptions):
    synopsis = "[options]"
    longdesc = ("Start every system of the product on its default ports and log one table "
                "of what listens where.")


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
