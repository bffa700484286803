# -*- test-case-name: tests.test_metrics -*-
"""
Serving the process's metrics to Prometheus: C{--metrics ENDPOINT} adds a
listener whose C{/metrics} is L{marketplace.metrics.REGISTRY} in the
exposition format (text, or OpenMetrics when the scraper asks for it),
written by C{prometheus_client}.

The page is rendered in the reactor thread, not by C{prometheus_client}'s
own C{MetricsResource}, which runs its WSGI app in the reactor's thread
pool: the collectors read counters that the reactor thread updates without
locks, and a scrape of a few hundred samples takes a millisecond or so.
"""

from __future__ import annotations

from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource
from twisted.web.server import Site

from marketplace.metrics import REGISTRY
from marketplace.net import Listener


class MetricsPage(Resource):
    """C{GET /metrics}: the registry, as the scraper's C{Accept} header prefers."""

    isLeaf = True

    def __init__(self, registry=REGISTRY):
        super().__init__()
        self._registry = registry

    def render_GET(self, request):
        accept = request.getHeader("accept")
        encode, content_type = choose_encoder(accept or "")
        request.setHeader("content-type", content_type)
        return encode(self._registry)


def metrics_site(registry=REGISTRY) -> Site:
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    site = Site(root)
    site.noisy = False
    site.log = lambda request: None  # one access line per scrape would drown the log
    return site


def metrics_listener(description: str, reactor=None) -> Listener:
    listener = Listener(description, metrics_site(), reactor)
    listener.setName("metrics")
    return listener


def serve_metrics(service, options, reactor=None):
    """
    Add the C{--metrics} listener to C{service} (a MultiService) when the
    option is given; every plugin's C{makeService} ends with this.

    @return: C{service}
    """
    if options.get("metrics"):
        metrics_listener(options["metrics"], reactor).setServiceParent(service)
    return service
