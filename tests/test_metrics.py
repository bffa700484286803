"""
Metrics: L{marketplace.metrics} recording and export, and every plugin's
C{--metrics} endpoint serving C{/metrics} in a format Prometheus parses,
with the families each system records once it has served some traffic.
"""

from __future__ import annotations

import os

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.python import usage
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from marketplace import metrics
from marketplace.metrics import CONNECTION_CLOSED, CONNECTION_OPENED, Counters, export
from marketplace.options import ServiceOptions
from protocols.laptop import ROLE_CUSTOMER, TYPE_LOCAL_READ, CustomerRequest, encode_request, \
    encode_role
from protocols.nsframe import Opcode, encode_frame
from tests.support.services import listeners_of, listening_port, start_service

TIMEOUT = 20.0
LOOPBACK = "tcp:0:interface=127.0.0.1"


def families(text: str) -> dict:
    """The families of an exposition, by name (parsing fails on malformed text)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def count(exported: dict, family: str, **labels) -> float:
    """The sum of C{family}'s samples with C{labels} (0 if none)."""
    found = exported.get(family)
    return sum(sample.value for sample in samples(found, **labels)) if found else 0


def samples(family, **labels) -> list:
    return [sample for sample in family.samples
            if all(sample.labels.get(key) == value for key, value in labels.items())]


class _Exchange(protocol.Protocol):
    """Sends C{request}; C{done} fires with what came back once C{expected} bytes did."""

    def __init__(self, request: bytes, expected: int):
        self.request, self.expected = request, expected
        self.received = b""
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(self.received)
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(self.received)


@defer.inlineCallbacks
def exchange(port: int, request: bytes, expected: int = 1):
    exchange = _Exchange(request, expected)
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), exchange)
    received = yield exchange.done.addTimeout(TIMEOUT, reactor)
    return received


@defer.inlineCallbacks
def scrape(port: int, path: bytes = b"/metrics") -> dict:
    response = yield Agent(reactor).request(
        b"GET", b"http://127.0.0.1:%d%s" % (port, path)).addTimeout(TIMEOUT, reactor)
    body = yield readBody(response)
    return response, body


def _listener_named(service, name):
    [listener] = [found for found in listeners_of(service) if found.name == name]
    return listener


class CountersTests(unittest.SynchronousTestCase):
    def test_flat_state_reads_back(self):
        counters = Counters()
        counters.increment("bad_frame", 2)
        counters.request("LOGIN", "OK", 0.0003)
        counters.request("LOGIN", "OK", 0.02)
        counters.request("LOGIN", "UNAUTHORIZED", 20.0)
        parts = metrics.unflatten(counters.flat())
        self.assertEqual(parts.events, {"bad_frame": 2})
        self.assertEqual(parts.requests, {("LOGIN", "OK"): 2, ("LOGIN", "UNAUTHORIZED"): 1})
        buckets = parts.latency["LOGIN"]
        self.assertEqual(sum(buckets), 3)
        self.assertEqual(buckets[metrics.LATENCY_BUCKETS.index(0.0005)], 1)
        self.assertEqual(buckets[metrics.LATENCY_BUCKETS.index(0.025)], 1)
        self.assertEqual(buckets[-1], 1)  # past the last bound: +Inf only
        self.assertEqual(parts.latency_us["LOGIN"], 300 + 20_000 + 20_000_000)

    def test_events_stay_apart_from_requests(self):
        counters = Counters()
        counters.request("X", "OK", 0.1)
        self.assertEqual(counters.snapshot(), {})

    def test_export_is_read_at_each_scrape(self):
        counters = export("unittest", "first", Counters())
        counters.increment(CONNECTION_OPENED, 3)
        counters.increment(CONNECTION_CLOSED)
        counters.increment("refused")
        counters.request("GET", "OK", 0.003)
        exported = families(generate_latest(metrics.REGISTRY).decode())
        [opened] = samples(exported["marketplace_unittest_connections"], service="first")
        self.assertEqual(opened.value, 3)
        [open_now] = samples(exported["marketplace_unittest_connections_open"], service="first")
        self.assertEqual(open_now.value, 2)
        [refused] = samples(exported["marketplace_unittest_events"], service="first")
        self.assertEqual((refused.labels["event"], refused.value), ("refused", 1))
        latency = exported["marketplace_unittest_request_duration_seconds"]
        self.assertEqual([s.value for s in samples(latency, le="0.001")], [0])
        self.assertEqual([s.value for s in samples(latency, le="0.005")], [1])
        self.assertEqual([s.value for s in samples(latency, le="+Inf")], [1])
        counters.request("GET", "OK", 0.003)
        again = families(generate_latest(metrics.REGISTRY).decode())
        [requests] = samples(again["marketplace_unittest_requests"], service="first")
        self.assertEqual(requests.value, 2)

    def test_a_source_that_is_gone_leaves_the_scrape(self):
        export("unittest", "gone", Counters()).increment("x")
        exported = families(generate_latest(metrics.REGISTRY).decode())
        events = exported.get("marketplace_unittest_events")
        self.assertEqual(events and samples(events, service="gone"), events and [])


class MetricsOptionTests(unittest.SynchronousTestCase):
    def test_a_bad_endpoint_is_a_usage_error(self):
        options = ServiceOptions()
        with self.assertRaises(usage.UsageError) as raised:
            options.parseOptions(["--metrics", "tcp:notaport"])
        self.assertIn("bad server endpoint 'tcp:notaport'", str(raised.exception))

    def test_every_plugin_takes_it(self):
        from twisted.application.service import IServiceMaker
        from twisted.plugins import marketplace_plugins
        makers = [maker for maker in vars(marketplace_plugins).values()
                  if IServiceMaker.providedBy(maker)]
        self.assertEqual(len(makers), 10)
        for maker in makers:
            self.assertIn("metrics=", maker.options().longOpt, maker.tapname)

    def test_no_listener_without_the_option(self):
        from marketplace.branch import tap
        options = tap.Options()
        options.parseOptions(["--listen", LOOPBACK])
        self.assertEqual([listener.name for listener in listeners_of(tap.makeService(options))],
                         ["branch A"])


class _Endpoint:
    """Serving a plugin's service with C{--metrics} on port 0, and scraping it."""

    @defer.inlineCallbacks
    def serve(self, options_class, make_service, *arguments):
        options = options_class()
        options.parseOptions(["--metrics", LOOPBACK, *arguments])
        service = start_service(self, make_service(options))
        metrics_port = yield listening_port(_listener_named(service, "metrics"))
        return service, metrics_port

    @defer.inlineCallbacks
    def scrape_families(self, metrics_port) -> dict:
        response, body = yield scrape(metrics_port)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/plain; version=0.0.4; charset=utf-8"])
        return families(body.decode())


class PluginEndpointTests(_Endpoint, unittest.TestCase):
    """Each plugin's C{makeService} with C{--metrics} on port 0, after some traffic."""

    @defer.inlineCallbacks
    def test_branch(self):
        from marketplace.branch import tap
        service, metrics_port = yield self.serve(
            tap.Options, tap.makeService, "--listen", LOOPBACK, "--id", "M",
            "--csv", os.path.join(self.mktemp(), "missing.csv"))
        port = yield listening_port(_listener_named(service, "branch M"))
        reply = yield exchange(port, b"REQUEST\n", 10_000)
        self.assertIn(b"ERROR", reply)
        exported = yield self.scrape_families(metrics_port)
        [answered] = samples(exported["marketplace_branch_requests"], service="branch M")
        self.assertEqual((answered.labels, answered.value),
                         ({"service": "branch M", "api": "REQUEST", "outcome": "error"}, 1))
        self.assertTrue(samples(exported["marketplace_branch_request_duration_seconds"],
                                service="branch M", api="REQUEST", le="+Inf"))
        self.assertEqual(count(exported, "marketplace_branch_connections", service="branch M"),
                         1)

    @defer.inlineCallbacks
    def test_branch_aggregator(self):
        from marketplace.branch import aggregator_tap
        closed = self.mktemp()
        service, metrics_port = yield self.serve(
            aggregator_tap.Options, aggregator_tap.makeService, "--branch", "tcp:127.0.0.1:1",
            "--main", closed + ".csv", "--connect-timeout", "1")
        exported = yield self.scrape_families(metrics_port)
        [runs] = samples(exported["marketplace_branch_events"], service="aggregator",
                         event="runs")
        self.assertGreaterEqual(runs.value, 1)

    @defer.inlineCallbacks
    def test_tradechat(self):
        from marketplace.tradechat import tap
        service, metrics_port = yield self.serve(
            tap.Options, tap.makeService, "--listen", LOOPBACK)
        port = yield listening_port(_listener_named(service, "tradechat"))
        before = yield self.scrape_families(metrics_port)
        yield exchange(port, encode_frame(Opcode.HEARTBEAT, 7) + encode_frame(Opcode.DEPOSIT, 8),
                       64)
        yield service.getServiceNamed("store").ledger.open_account("metrics-test", 3)
        after = yield self.scrape_families(metrics_port)

        def added(family, **labels):
            return count(after, family, **labels) - count(before, family, **labels)

        requests = "marketplace_tradechat_requests"
        self.assertEqual(added(requests, api="HEARTBEAT", outcome="OK"), 1)
        self.assertEqual(added("marketplace_tradechat_connections", service="tradechat"), 1)
        self.assertEqual(added(requests, api="DEPOSIT", outcome="UNAUTHORIZED"), 1)
        self.assertEqual(added("marketplace_tradechat_events", event="unauthorized"), 1)
        self.assertEqual(added("marketplace_tradechat_request_duration_seconds",
                               api="HEARTBEAT", le="+Inf"), 1)
        self.assertEqual(added("marketplace_store_requests", service="memory",
                               api="ledger.open_account", outcome="ok"), 1)
        self.assertEqual(added("marketplace_store_request_duration_seconds", service="memory",
                               api="ledger.open_account", le="+Inf"), 1)

    @defer.inlineCallbacks
    def test_marketplace_plugins(self):
        from marketplace.market import tap
        for name, plugin in [("customer-db", tap.customer_db), ("product-db", tap.product_db),
                             ("payments", tap.payments), ("seller-front", tap.seller_front),
                             ("buyer-front", tap.buyer_front)]:
            service, metrics_port = yield self.serve(
                plugin.Options, plugin.makeService, "--listen", LOOPBACK)
            port = yield listening_port(_listener_named(service, name))
            before = yield self.scrape_families(metrics_port)
            reply = yield exchange(
                port, b'{"type":"request","api":"Fly","session_id":null,"payload":{}}\n', 20)
            self.assertIn(b"404_NOT_FOUND", reply)
            after = yield self.scrape_families(metrics_port)
            for family, labels in [
                    ("marketplace_market_requests", {"outcome": "404_NOT_FOUND"}),
                    ("marketplace_market_request_duration_seconds", {"le": "+Inf"})]:
                self.assertEqual(count(after, family, service=name, api="UNKNOWN", **labels)
                                 - count(before, family, service=name, api="UNKNOWN", **labels),
                                 1, (name, family))
            self.assertEqual(count(after, "marketplace_market_connections", service=name)
                             - count(before, "marketplace_market_connections", service=name),
                             1, name)

    @defer.inlineCallbacks
    def test_laptop_factory(self):
        from marketplace.laptop import tap
        service, metrics_port = yield self.serve(
            tap.Options, tap.makeService, "--listen", LOOPBACK, "--id", "5", "--memory-only")
        port = yield listening_port(service.listener)
        yield exchange(port, encode_role(ROLE_CUSTOMER)
                       + encode_request(CustomerRequest(3, 0, TYPE_LOCAL_READ)), 8)
        exported = yield self.scrape_families(metrics_port)
        self.assertEqual(
            [s.value for s in samples(exported["marketplace_laptop_requests"],
                                      service="replica 5", api="local_read", outcome="ok")], [1])

    @defer.inlineCallbacks
    def test_openmetrics_when_asked(self):
        from marketplace.branch import tap
        _, metrics_port = yield self.serve(tap.Options, tap.makeService, "--listen", LOOPBACK)
        response = yield Agent(reactor).request(
            b"GET", b"http://127.0.0.1:%d/metrics" % metrics_port,
            _headers(accept=b"application/openmetrics-text; version=1.0.0"))
        body = yield readBody(response)
        self.assertTrue(body.endswith(b"# EOF\n"))


def _headers(**fields):
    from twisted.web.http_headers import Headers
    return Headers({name.encode(): [value] for name, value in fields.items()})


class _Reports:
    """A supervisor stand-in: C{counters()} is the sum of the workers' reports."""

    def __init__(self, total: dict):
        self.total = total

    def counters(self) -> dict:
        return self.total


class WorkerSumsTests(unittest.SynchronousTestCase):
    def test_the_master_exports_its_workers_sum_split_into_chat_and_store(self):
        from marketplace.tradechat.tap import STORE_PREFIX, WorkerSums
        chat, store = Counters(), Counters()
        chat.increment("unauthorized", 2)
        chat.request("LOGIN", "OK", 0.001)
        store.request("ledger.transfer", "ok", 0.002)
        report = {**chat.flat(), **{STORE_PREFIX + k: v for k, v in store.flat().items()}}
        before = families(generate_latest(metrics.REGISTRY).decode())
        sums = WorkerSums(_Reports(report), "redis://sums-test:6379/0")
        exported = families(generate_latest(metrics.REGISTRY).decode())
        self.assertEqual(count(exported, "marketplace_tradechat_events", event="unauthorized")
                         - count(before, "marketplace_tradechat_events", event="unauthorized"), 2)
        self.assertEqual(count(exported, "marketplace_store_requests",
                               service="redis://sums-test:6379/0", api="ledger.transfer"), 1)
        self.assertEqual(count(exported, "marketplace_tradechat_requests", api="ledger.transfer"),
                         0)
        del sums


class WorkerMetricsTests(unittest.TestCase):
    """C{tradechat --workers 2 --metrics}: the master's endpoint shows every worker."""

    timeout = 90

    @defer.inlineCallbacks
    def test_the_masters_endpoint_adds_up_its_workers(self):
        from tests.support.redis_server import start_redis
        from tests.tradechat.helpers import connect_client
        from tests.tradechat.masters import start_master
        redis = yield start_redis(self)
        master = yield start_master(self, redis.url, "--metrics", LOOPBACK)
        found = yield master.wait_for(rb"metrics listening on 127\.0\.0\.1:(\d+)")
        metrics_port = int(found.group(1))
        connections = 10
        yield defer.gatherResults([
            exchange(master.port, encode_frame(Opcode.HEARTBEAT, 1), 32)
            for _ in range(connections)])
        client = yield connect_client(self, f"tcp:127.0.0.1:{master.port}")
        yield client.login("metrics")  # a store call: the user id directory
        exported = yield _until_scraped(metrics_port, lambda exported: count(
            exported, "marketplace_tradechat_requests", api="HEARTBEAT") >= connections)
        self.assertEqual(count(exported, "marketplace_tradechat_requests", api="HEARTBEAT"),
                         connections)
        self.assertEqual(count(exported, "marketplace_tradechat_request_duration_seconds",
                               api="HEARTBEAT", le="+Inf"), connections)
        self.assertGreaterEqual(count(exported, "marketplace_tradechat_connections"), connections)
        exported = yield _until_scraped(
            metrics_port, lambda exported: count(exported, "marketplace_store_requests",
                                                 service=redis.url, outcome="ok") > 0)
        self.assertGreater(
            count(exported, "marketplace_store_requests", service=redis.url, outcome="ok"), 0)


@defer.inlineCallbacks
def _until_scraped(metrics_port: int, condition, within: float = 15.0):
    """
    Scrape until C{condition(families)} holds (workers report once a
    second), at most C{within} seconds; fire with the last scrape.
    """
    deadline = reactor.seconds() + within
    while True:
        _, body = yield scrape(metrics_port)
        exported = families(body.decode())
        if condition(exported) or reactor.seconds() > deadline:
            return exported
        yield task.deferLater(reactor, 0.2, lambda: None)


class SuiteEndpointTests(_Endpoint, unittest.TestCase):
    """C{suite --metrics}: one endpoint for every system it runs."""

    @defer.inlineCallbacks
    def test_one_endpoint_shows_every_system(self):
        import tempfile
        from marketplace import suite
        from tests.test_suite import suite_arguments
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(tempfile.mkdtemp(dir=os.getcwd()))  # the laptop replicas' state goes here
        arguments = suite_arguments()
        service, metrics_port = yield self.serve(suite.Options, suite.makeService, *arguments)
        port = dict(zip(arguments[::2], arguments[1::2]))
        laptop_port = int(port["--laptop-ports"].split(",")[0])
        before = yield self.scrape_families(metrics_port)
        yield exchange(int(port["--branch-port"]), b"REQUEST\n", 10_000)
        yield exchange(int(port["--tradechat-port"]), encode_frame(Opcode.HEARTBEAT, 1), 32)
        yield exchange(int(port["--buyer-front-port"]),
                       b'{"type":"request","api":"Fly","session_id":null,"payload":{}}\n', 20)
        yield exchange(laptop_port, encode_role(ROLE_CUSTOMER)
                       + encode_request(CustomerRequest(3, 0, TYPE_LOCAL_READ)), 8)
        after = yield self.scrape_families(metrics_port)
        for system, service_name in [("branch", "branch A"), ("tradechat", "tradechat"),
                                     ("market", "buyer-front"), ("laptop", "replica 0")]:
            for family in ("connections", "requests"):
                name = f"marketplace_{system}_{family}"
                self.assertGreaterEqual(count(after, name, service=service_name)
                                        - count(before, name, service=service_name),
                                        1, name)


class DeploymentTests(unittest.SynchronousTestCase):
    def test_the_host_tac_serves_metrics_when_asked(self):
        from twisted.application.service import IServiceCollection, loadApplication
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "tapfiles", "tradechat-host.tac")
        environ = dict(os.environ, TRADECHAT_STORE="redis://127.0.0.1:1/0")
        self.patch(os, "environ", environ)
        without = loadApplication(path, "python")
        self.assertNotIn("metrics", [l.name for l in listeners_of(IServiceCollection(without))])
        environ["TRADECHAT_METRICS"] = LOOPBACK
        application = loadApplication(path, "python")
        [listener] = [l for l in listeners_of(IServiceCollection(application))
                      if l.name == "metrics"]
        self.assertEqual(listener.description, LOOPBACK)

    def test_the_suite_has_one_endpoint_for_every_system(self):
        from marketplace import suite
        options = suite.Options()
        options.parseOptions(["--metrics", LOOPBACK])
        names = [listener.name for listener in listeners_of(suite.makeService(options))]
        self.assertEqual(names.count("metrics"), 1)
