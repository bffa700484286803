"""
The marketplace plugins' options, the environment configuration the .tac
files use, and the suite's composition.
"""

import os

from twisted.application.service import IServiceCollection, ServiceMaker, loadApplication
from twisted.internet import task
from twisted.python import usage
from twisted.trial import unittest

from marketplace.market import tap
from marketplace.collector import CollectorSettings
from marketplace.store import make_store
from tests.support.services import listeners_of

PLUGINS = {"customer-db": tap.customer_db, "product-db": tap.product_db, "payments": tap.payments,
           "seller-front": tap.seller_front, "buyer-front": tap.buyer_front}


def parsed(plugin, argv=()):
    options = plugin.Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(unittest.TestCase):
    def test_default_ports(self):
        listens = {name: parsed(plugin)["listen"] for name, plugin in PLUGINS.items()}
        self.assertEqual(listens, {
            "customer-db": "tcp:7001:interface=127.0.0.1", "product-db": "tcp:7002:interface=127.0.0.1",
            "payments": "tcp:7003:interface=127.0.0.1", "seller-front": "tcp:7010",
            "buyer-front": "tcp:7011"})
        buyer = parsed(tap.buyer_front)
        self.assertEqual((buyer["customer-db"], buyer["product-db"], buyer["payments"]),
                         ("tcp:127.0.0.1:7001", "tcp:127.0.0.1:7002", "tcp:127.0.0.1:7003"))

    def test_bad_values_are_usage_errors(self):
        for plugin, argv in [(tap.payments, ["--approve", "sometimes"]),
                             (tap.customer_db, ["--store", "postgres://x"]),
                             (tap.customer_db, ["--session-ttl", "0"]),
                             (tap.product_db, ["--max-frame", "0"]),
                             (tap.product_db, ["--reservation-lease", "0"]),
                             (tap.buyer_front, ["--void-interval", "-1"]),
                             (tap.buyer_front, ["--record-interval", "0"]),
                             (tap.product_db, ["--max-frame", str(64 * 1024 * 1024)]),
                             (tap.buyer_front, ["--payments", "nonsense:1"]),
                             (tap.seller_front, ["--listen", "nonsense:1"]),
                             (tap.seller_front, ["--rpc-pool", "0"]),
                             (tap.buyer_front, ["--kdf-interval", "0"]),
                             (tap.seller_front, ["--kdf-workers", "0"])]:
            self.assertRaises(usage.UsageError, parsed, plugin, argv)

    def test_a_buyer_front_runs_both_of_its_sweeps(self):
        options = parsed(tap.buyer_front, ["--void-interval", "3", "--record-interval", "7"])
        service = tap.make_buyer_front(options, reactor=task.Clock())
        self.assertEqual({name: service.getServiceNamed(name).interval
                          for name in ("payment-voids", "owed-records")},
                         {"payment-voids": 3.0, "owed-records": 7.0})

    def test_service_maker_finds_every_plugin(self):
        for name in PLUGINS:
            maker = ServiceMaker(name, "marketplace.market.tap." + name.replace("-", "_"), "", name)
            self.assertIs(maker.options, PLUGINS[name].Options)
            self.assertIs(maker.makeService, PLUGINS[name].makeService)


class EnvironmentTests(unittest.TestCase):
    def test_options_from_environ(self):
        options = tap.options_from_environ(tap.BuyerFrontOptions, {
            "MARKET_LISTEN": "tcp:0", "MARKET_CUSTOMER_DB": "tcp:db1:7001",
            "MARKET_RPC_TIMEOUT": "0.5", "MARKET_CHEAP_KDF": "yes", "OTHER": "x"})
        self.assertEqual((options["listen"], options["customer-db"], options["rpc-timeout"]),
                         ("tcp:0", "tcp:db1:7001", 0.5))
        self.assertTrue(options["cheap-kdf"])
        self.assertEqual(options["product-db"], "tcp:127.0.0.1:7002")

    def test_environment_values_are_checked(self):
        self.assertRaises(usage.UsageError, tap.options_from_environ, tap.PaymentsOptions,
                          {"MARKET_APPROVE": "maybe"})


class SuiteTests(unittest.TestCase):
    def test_suite_has_every_marketplace_listener_on_one_store(self):
        from marketplace.suite import Options as SuiteOptions
        options = SuiteOptions()
        options.parseOptions(["--buyer-front-port", "7111", "--payments-port", "7103"])
        service = tap.suite_service(options)
        buyer_front = [listener for listener in listeners_of(service)
                       if listener.name == "buyer-front"][0]
        self.assertEqual(buyer_front.description, "tcp:7111")
        names = [listener.name for listener in listeners_of(service)]
        self.assertEqual(names, ["customer-db", "product-db", "payments", "seller-front", "buyer-front"])
        stores = [child for child in service if hasattr(child, "sessions")]
        self.assertEqual(len(stores), 1)

    def test_every_service_runs_with_the_collector_settings(self):
        for name, plugin in PLUGINS.items():
            service = plugin.makeService(parsed(plugin))
            self.assertEqual(len([c for c in service if isinstance(c, CollectorSettings)]), 1, name)

    def test_db_service_brings_its_own_store_unless_given_one(self):
        own = tap.make_product_db(parsed(tap.product_db))
        self.assertEqual(len([c for c in own if hasattr(c, "catalog")]), 1)
        shared = tap.make_product_db(parsed(tap.product_db), store=make_store("memory"))
        self.assertEqual([c for c in shared if hasattr(c, "catalog")], [])


class TacTests(unittest.TestCase):
    def test_every_role_has_a_tac_configured_from_the_environment(self):
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.patch(os, "environ", {**os.environ, "MARKET_LISTEN": "tcp:0:interface=127.0.0.1"})
        for name in PLUGINS:
            application = loadApplication(os.path.join(repo, "tapfiles", f"market-{name}.tac"), "python")
            [listener] = listeners_of(list(IServiceCollection(application))[0])
            self.assertEqual((listener.name, listener.description),
                             (name, "tcp:0:interface=127.0.0.1"))
