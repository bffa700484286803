"""
What every console script owes the person running it: a usage line that
starts with its name, the project's version, the ``HOST:PORT`` shorthand,
and connection failures told in one line with their reason, TLS included.
"""

from __future__ import annotations

import configparser
import importlib
import io
import os
import sys

from twisted.internet import defer, protocol, reactor
from twisted.python import usage
from twisted.trial import unittest

from marketplace import __version__
from marketplace.market.errors import ServiceUnavailable
from marketplace.market.rpc import ServiceClient
from marketplace.net import Listener
from marketplace.options import client_endpoint_argument
from marketplace.tradechat import client as tradechat_client
from tests.support.services import listening_port, start_service
from tests.support.tls import make_tls_files

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def console_scripts() -> dict[str, str]:
    """name -> ``module:function`` from setup.cfg."""
    config = configparser.ConfigParser()
    config.read(os.path.join(PROJECT, "setup.cfg"))
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)


class ProgramTests(unittest.TestCase):
    def run_main(self, name, target, *arguments):
        module, function = target.split(":")
        main = getattr(importlib.import_module(module), function)
        out = io.StringIO()
        self.patch(sys, "argv", [f"/usr/local/bin/{name}", *arguments])
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as exited:
            main(list(arguments))
        return exited.exception.code, out.getvalue()

    def test_usage_starts_with_the_programs_name(self):
        for name, target in console_scripts().items():
            code, out = self.run_main(name, target, "--help")
            self.assertIn(code, (0, None), name)
            self.assertTrue(out.startswith(f"Usage: {name} "), f"{name}: {out.splitlines()[0]}")

    def test_version_is_the_projects(self):
        for name, target in console_scripts().items():
            code, out = self.run_main(name, target, "--version")
            self.assertIn(code, (0, None), name)
            self.assertEqual(out, f"{name} {__version__}\n")


class EndpointShorthandTests(unittest.TestCase):
    def test_host_and_port_mean_tcp(self):
        self.assertEqual(client_endpoint_argument("localhost:7011"), "tcp:localhost:7011")
        self.assertEqual(client_endpoint_argument("10.0.0.5:9000"), "tcp:10.0.0.5:9000")

    def test_endpoint_strings_are_kept(self):
        for description in ("tcp:localhost:7011", "tls:shop.example:443",
                            "unix:/tmp/socket"):
            self.assertEqual(client_endpoint_argument(description), description)

    def test_nonsense_is_a_usage_error(self):
        for description in ("localhost", "tcp:7011", "host:port"):
            self.assertRaises(usage.UsageError, client_endpoint_argument, description)


class _Silent(protocol.Protocol):
    """A server that accepts and says nothing (the TLS handshake is what is tested)."""


class TLSFailureTests(unittest.TestCase):
    """A TLS failure names its reason: an unknown CA, or a certificate for another host."""

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):
        self.tls = make_tls_files(self.mktemp())
        server = f"ssl:0:interface=127.0.0.1:privateKey={self.tls.key}:certKey={self.tls.cert}"
        listener = start_service(self, Listener(server, protocol.Factory.forProtocol(_Silent)))
        self.port = yield listening_port(listener)

    def unknown_ca(self):
        other = make_tls_files(self.mktemp())
        return f"tls:localhost:{self.port}:trustRoots={other.ca_dir}"

    def other_host(self):
        return (f"tls:impostor.example:{self.port}:trustRoots={self.tls.ca_dir}"
                f":endpoint=tcp\\:127.0.0.1\\:{self.port}")

    @defer.inlineCallbacks
    def tradechat_client_fails(self, endpoint):
        options = tradechat_client.Options()
        options.parseOptions(["--connect", endpoint, "--timeout", "5"])
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as exited:
            yield tradechat_client._connect(reactor, options, lambda text: None)
        self.assertEqual(exited.exception.code, 1)
        return err.getvalue()

    @defer.inlineCallbacks
    def test_tradechat_client_unknown_ca(self):
        message = yield self.tradechat_client_fails(self.unknown_ca())
        self.assertIn("unknown CA", message)
        self.assertEqual(len(message.splitlines()), 1)

    @defer.inlineCallbacks
    def test_tradechat_client_hostname_mismatch(self):
        message = yield self.tradechat_client_fails(self.other_host())
        self.assertIn("hostname mismatch", message)

    @defer.inlineCallbacks
    def test_tradechat_client_refused(self):
        message = yield self.tradechat_client_fails("tcp:127.0.0.1:1")
        self.assertIn("connection refused", message)

    def marketplace_client_fails(self, endpoint):
        client = ServiceClient(endpoint, timeout=5, retries=0)
        self.addCleanup(client.close)
        failed = self.assertFailure(client.call("Login", {}), ServiceUnavailable)
        return failed.addCallback(lambda error: error.message)

    @defer.inlineCallbacks
    def test_marketplace_client_unknown_ca(self):
        self.assertIn("unknown CA", (yield self.marketplace_client_fails(self.unknown_ca())))

    @defer.inlineCallbacks
    def test_marketplace_client_hostname_mismatch(self):
        message = yield self.marketplace_client_fails(self.other_host())
        self.assertIn("hostname mismatch", message)
