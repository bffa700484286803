"""
The DB services and payments serve only callers that prove the deployment's
service secret; the front ends prove it on every pooled connection.
"""

import os

from twisted.internet import defer, protocol, reactor, task
from twisted.python import usage
from twisted.trial import unittest

from marketplace.market import dbservice, tap
from marketplace.market.errors import ServiceUnavailable
from protocols.jsonframe import Framing, encode_frame
from protocols.envelope import encode_request
from protocols.envelope_server import EnvelopeServerFactory
from protocols.peerauth import MAGIC, NONCE_SIZE, AuthenticatingFactory
from tests.market.market_harness import (
    Market,
    Shopper,
    client,
    secret_file,
    start_front,
    start_market,
)
from tests.support.redis_server import START_TIMEOUT
from tests.support.services import listeners_of

DB_PLUGINS = {"customer-db": tap.customer_db, "product-db": tap.product_db,
              "payments": tap.payments}
FRONT_PLUGINS = {"seller-front": tap.seller_front, "buyer-front": tap.buyer_front}


def parsed(plugin, argv):
    options = plugin.Options()
    options.parseOptions(argv)
    return options


class OptionTests(unittest.TestCase):
    def test_db_service_beyond_loopback_needs_a_secret(self):
        for name, plugin in DB_PLUGINS.items():
            for listen in ("tcp:7001", "tcp:7001:interface=10.0.0.11", "tcp:7001:interface=0.0.0.0"):
                error = self.assertRaises(usage.UsageError, parsed, plugin, ["--listen", listen])
                self.assertIn("--service-secret", str(error), name)

    def test_db_service_beyond_loopback_starts_with_a_secret(self):
        path = secret_file(self)
        for plugin in DB_PLUGINS.values():
            options = parsed(plugin, ["--listen", "tcp:7001", "--service-secret", path])
            self.assertEqual(options["secret"], b"a service secret for this test only")

    def test_loopback_needs_no_secret(self):
        for plugin in DB_PLUGINS.values():
            self.assertIsNone(parsed(plugin, [])["secret"])

    def test_a_secret_others_can_read_is_refused(self):
        path = secret_file(self)
        os.chmod(path, 0o644)
        for plugin in {**DB_PLUGINS, **FRONT_PLUGINS}.values():
            error = self.assertRaises(usage.UsageError, parsed, plugin, ["--service-secret", path])
            self.assertIn("chmod 600", str(error))

    def test_front_ends_load_the_secret(self):
        path = secret_file(self)
        for plugin in FRONT_PLUGINS.values():
            self.assertEqual(parsed(plugin, ["--service-secret", path])["secret"],
                             b"a service secret for this test only")

    def test_tac_environment_sets_the_secret(self):
        options = tap.options_from_environ(tap.CustomerDbOptions, {
            "MARKET_LISTEN": "tcp:7001:interface=10.0.0.11",
            "MARKET_SERVICE_SECRET": secret_file(self)})
        self.assertIsNotNone(options["secret"])


class SuiteTests(unittest.TestCase):
    def test_suite_links_are_authenticated_with_one_secret(self):
        from marketplace.suite import Options as SuiteOptions
        suite_options = SuiteOptions()
        suite_options.parseOptions([])
        service = tap.suite_service(suite_options)
        factories = {listener.name: listener.factory for listener in listeners_of(service)}
        for name in DB_PLUGINS:
            self.assertIsInstance(factories[name], AuthenticatingFactory, name)
        self.assertNotIsInstance(factories["buyer-front"], AuthenticatingFactory)


class RefusalLogTests(unittest.TestCase):
    def test_every_refusal_is_counted_and_a_flood_logs_a_line_per_interval(self):
        clock = task.Clock()
        lines = []
        self.patch(dbservice.log, "warn", lambda *args, **kwargs: lines.append(kwargs["count"]))
        factory = dbservice.authenticated(EnvelopeServerFactory(lambda request: None, reactor=clock),
                                          "payments", b"s" * 32, clock)
        for _ in range(100):
            factory.buildProtocol(None)._on_refused("wrong proof of the shared secret")
            clock.advance(0.25)
        self.assertEqual(factory.wrapped.counters.counts["auth_refusals"], 100)
        self.assertEqual(lines, [1, 41, 81])


class _RawClient(protocol.Protocol):
    """Sends bytes as soon as it connects and keeps whatever comes back."""

    def __init__(self, data):
        self.data = data
        self.received = b""
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.data)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(None)


class CallerTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.apis = {}
        listener = tap._listener

        def recording(options, name, table, *args, **kwargs):
            self.apis[name] = sorted(table)
            return listener(options, name, table, *args, **kwargs)

        self.patch(tap, "_listener", recording)
        self.market = yield start_market(self)
        seller = Shopper(client(self, self.market.ports["seller-front"]), "seller")
        yield seller.sign_up("sam")

    def counters(self, name):
        return self.market.listeners[name].factory.wrapped.counters

    def db_client(self, name, secret=None):
        return client(self, self.market.ports[name], timeout=2.0, secret=secret)

    @defer.inlineCallbacks
    def test_caller_without_the_secret_gets_nothing_but_a_refusal(self):
        request = encode_frame(Framing.LENGTH_PREFIXED, encode_request(
            "GetCredentials", None, {"role": "seller", "username": "sam"}))
        served = self.counters("customer-db").counts["requests"]
        caller = _RawClient(request)
        yield protocol.ClientCreator(reactor, lambda: caller).connectTCP(
            "127.0.0.1", self.market.ports["customer-db"])
        yield caller.closed.addTimeout(START_TIMEOUT, reactor)
        self.assertEqual(len(caller.received), len(MAGIC) + NONCE_SIZE)
        self.assertTrue(caller.received.startswith(MAGIC))
        self.assertEqual(self.counters("customer-db").counts["auth_refusals"], 1)
        self.assertEqual(self.counters("customer-db").counts["requests"], served)

    @defer.inlineCallbacks
    def test_every_api_of_every_db_service_refuses_a_client_without_the_secret(self):
        # The sweeps' APIs act on money and purchase records: they are no exception.
        self.assertTrue({"PendingVoids", "VoidDone", "OwedRecords", "RecordDone"}
                        <= set(self.apis["product-db"]))
        self.assertIn("Void", self.apis["payments"])
        self.assertIn("RecordOwedPurchase", self.apis["customer-db"])
        for name in DB_PLUGINS:
            served = self.counters(name).counts.get("requests", 0)
            for refused, api in enumerate(self.apis[name], 1):
                yield self.assertFailure(self.db_client(name).call(api, {}), ServiceUnavailable)
                self.assertEqual(self.counters(name).counts["auth_refusals"], refused, api)
            self.assertEqual(self.counters(name).counts.get("requests", 0), served, name)

    @defer.inlineCallbacks
    def test_a_wrong_secret_is_refused(self):
        wrong = self.db_client("payments", secret=b"not the secret of this deployment")
        yield self.assertFailure(wrong.call("Authorize", {}), ServiceUnavailable)
        self.assertEqual(self.counters("payments").counts["auth_refusals"], 1)
        self.assertEqual(self.counters("payments").counts["requests"], 0)

    @defer.inlineCallbacks
    def test_the_secret_lets_a_caller_in(self):
        right = self.db_client("customer-db", secret=b"a service secret for this test only")
        _, reply = yield right.call("GetCredentials", {"role": "seller", "username": "sam"})
        self.assertEqual(reply["user_id"], 1)
        self.assertEqual(self.counters("customer-db").counts.get("auth_refusals", 0), 0)

    @defer.inlineCallbacks
    def test_a_front_end_without_the_secret_gets_no_service(self):
        bare = Market(self.market.store, None, dict(self.market.ports))
        port = yield start_front(self, bare, "seller")
        error = yield self.assertFailure(
            client(self, port).call("Login", {"username": "sam", "password": "secret-pass"}),
            ServiceUnavailable)
        self.assertIn("customer-db is unavailable", error.message)
        self.assertGreater(self.counters("customer-db").counts["auth_refusals"], 0)
