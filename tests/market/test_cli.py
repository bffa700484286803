"""
Tests for the buyer and seller CLIs: argument parsing, rendering, the shell
loop over a StringTransport, and the real program on a pipe.
"""

import os
import re
import sys
from decimal import Decimal

from twisted.internet import defer, protocol, reactor, utils
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from marketplace.market.cli import buyer, seller, views
from marketplace.market.cli.shell import ArgumentError, Shell, format_table
from marketplace.market.errors import ClientError, InvalidSession, ServiceUnavailable
from marketplace.market.rpc import ServiceClient
from marketplace.net import Listener
from protocols.envelope_server import EnvelopeServerFactory, api_router
from tests.support.services import listening_port, start_service

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(commands, name):
    return next(c for c in commands if c.name == name)


class PayloadTests(unittest.TestCase):
    def test_positional_and_rest(self):
        register = command(seller.COMMANDS, "register")
        self.assertEqual(
            register.payload(["red mug", "3", "new", "4.50", "10", "mug", "red"]),
            {"item_name": "red mug", "category": 3, "condition": "new",
             "price": Decimal("4.50"), "quantity": 10, "keywords": ["mug", "red"]},
        )

    def test_options_and_keywords(self):
        search = command(buyer.COMMANDS, "search")
        self.assertEqual(
            search.payload(["category=2", "laptop", "cheap"]),
            {"category": 2, "keywords": ["laptop", "cheap"]},
        )

    def test_missing_argument(self):
        add = command(buyer.COMMANDS, "add")
        error = self.assertRaises(ArgumentError, add.payload, ["5"])
        self.assertEqual(str(error), "missing QUANTITY")

    def test_unexpected_argument(self):
        cart = command(buyer.COMMANDS, "cart")
        self.assertRaises(ArgumentError, cart.payload, ["extra"])

    def test_conversion_errors(self):
        self.assertRaises(ArgumentError, command(buyer.COMMANDS, "item").payload, ["abc"])
        self.assertRaises(ArgumentError, command(seller.COMMANDS, "price").payload, ["1", "lots"])
        self.assertRaises(ArgumentError, command(seller.COMMANDS, "price").payload, ["1", "NaN"])
        self.assertRaises(ArgumentError, command(buyer.COMMANDS, "feedback").payload, ["1", "meh"])

    def test_usage_text(self):
        self.assertEqual(
            command(buyer.COMMANDS, "search").usage,
            "search [category=VALUE] [offset=VALUE] [limit=VALUE] [include_out_of_stock=VALUE] "
            "[KEYWORD ...]",
        )

    def test_every_spec_api_has_a_command(self):
        self.assertEqual(
            {c.api for c in buyer.COMMANDS},
            {"CreateAccount", "Login", "Logout", "SearchItemsForSale", "GetItem", "AddItemToCart",
             "RemoveItemFromCart", "SaveCart", "ClearCart", "DisplayCart", "ProvideFeedback",
             "GetSellerRating", "GetBuyerPurchases", "MakePurchase"},
        )
        self.assertEqual(
            {c.api for c in seller.COMMANDS},
            {"CreateAccount", "Login", "Logout", "GetSellerRating", "RegisterItemForSale",
             "ChangeItemPrice", "UpdateUnitsForSale", "DisplayItemsForSale"},
        )


class ViewTests(unittest.TestCase):
    def test_table_aligned(self):
        self.assertEqual(
            format_table([{"a": 1, "b": "xyz"}, {"a": 22}], [("A", "a"), ("Bee", "b")]),
            "A   Bee\n--  ---\n1   xyz\n22  -",
        )

    def test_empty_table(self):
        self.assertEqual(format_table([], [("A", "a")]), "(none)")

    def test_items_with_feedback(self):
        text = views.items(None, {"items": [
            {"item_id": 1, "item_name": "mug", "keywords": ["a", "b"], "condition_is_new": True,
             "price": 4.5, "quantity": 3, "seller_id": 2, "feedback": {"pos": 5, "neg": 1}},
        ]})
        self.assertIn("a,b", text)
        self.assertIn("yes", text)
        self.assertRegex(text.splitlines()[2], r"\b5\s+1$")

    def test_money_two_decimals_and_never_expanded(self):
        self.assertEqual([views.money(v) for v in (4.5, 12, Decimal("0.1"), None)],
                         ["4.50", "12.00", "0.10", "-"])
        self.assertEqual(views.money(Decimal("1E+999999999")), "1E+999999999")

    def test_purchases_show_utc_time(self):
        text = views.purchases(None, {"items": [
            {"item_id": 3, "quantity": 1, "purchased_at": "2026-11-22T04:38:14+01:00"},
            {"item_id": 4, "quantity": 1, "purchased_at": 1795318694.1},
            {"item_id": 5, "quantity": 1, "purchased_at": "yesterday"}]})
        self.assertEqual(text.count("2026-11-22 03:38:14 UTC"), 2)
        self.assertIn("yesterday", text)

    def test_purchase_total(self):
        text = views.purchase(None, {"status": "success", "total": 22.24, "items": [
            {"item_id": 1, "quantity": 2, "price": 4.5}]})
        self.assertTrue(text.endswith("purchase success: total 22.24"))
        self.assertIn("4.50", text)

    def test_rating(self):
        self.assertEqual(views.rating(None, {"feedback": {"pos": 2, "neg": 1}}),
                         "thumbs up 2, thumbs down 1")


class FakeClient:
    """Records calls; the test answers each with a result or an error."""

    def __init__(self):
        self.calls = []

    def call(self, api, payload, session_id=None):
        d = defer.Deferred()
        self.calls.append((api, payload, session_id, d))
        return d


class ShellTests(unittest.TestCase):
    def setUp(self):
        self.client = FakeClient()
        self.shell = Shell("buyer", buyer.COMMANDS, self.client)
        self.transport = StringTransport()
        self.shell.makeConnection(self.transport)
        self.transport.clear()

    def type(self, line):
        self.shell.dataReceived(line.encode() + b"\n")

    def output(self):
        text = self.transport.value().decode()
        self.transport.clear()
        return text

    def test_login_keeps_session_for_later_calls(self):
        self.type("login ann secret")
        api, payload, session_id, d = self.client.calls[0]
        self.assertEqual((api, payload, session_id), ("Login", {"username": "ann", "password": "secret"}, None))
        d.callback(("s-1", {"session_id": "s-1", "buyer_id": 4}))
        self.assertIn("user id 4", self.output())
        self.type("cart")
        self.assertEqual(self.client.calls[1][2], "s-1")
        self.client.calls[1][3].callback((None, {"cart": [{"item_id": 9, "quantity": 2}]}))
        self.assertIn("9     2", self.output())
        self.type("logout")
        self.client.calls[2][3].callback((None, {"status": "ok"}))
        self.type("cart")
        self.assertIsNone(self.client.calls[3][2])

    def test_error_reply_printed_with_code(self):
        self.type("add 1 0")
        self.client.calls[0][3].errback(ClientError("'quantity' must be between 1 and 9"))
        self.assertIn("error [CLIENT_ERROR]: 'quantity' must be between 1 and 9", self.output())

    def test_server_strings_cannot_drive_the_terminal(self):
        self.type("item 1")
        self.client.calls[0][3].callback((None, {"item_id": 1, "item_name": "mug\r\x1b[2Jfree",
                                                 "keywords": ["a\u2028b"], "x\ny": 1}))
        self.type("item 2")
        self.client.calls[1][3].errback(ClientError("no\rfake \x9b31m"))
        shown = self.output()
        self.assertIn("mug\\r\\x1b[2Jfree", shown)
        self.assertIn("a\\u2028b", shown)
        self.assertIn("x\\ny", shown)
        self.assertIn("no\\rfake \\x9b31m", shown)
        self.assertFalse(set(shown) & set("\r\x1b\x9b\u2028"), shown)

    def test_bad_arguments_print_usage_without_calling(self):
        self.type("add one 2")
        self.assertEqual(self.client.calls, [])
        self.assertIn("usage: add ITEM_ID QUANTITY", self.output())

    def test_unknown_command_and_bad_quoting(self):
        self.type("fly away")
        self.type('login "ann')
        text = self.output()
        self.assertIn("unknown command 'fly'", text)
        self.assertIn("cannot read that line", text)
        self.assertEqual(self.client.calls, [])

    def test_undecodable_bytes_do_not_crash(self):
        self.shell.dataReceived(b"\xff\xfe login\n")
        self.assertIn("unknown command", self.output())

    def test_long_pasted_script_of_local_lines(self):
        self.shell.dataReceived(b"fly\n" * 5000 + b"cart\n")
        self.assertEqual(self.output().count("unknown command 'fly'"), 5000)
        self.assertEqual([c[0] for c in self.client.calls], ["DisplayCart"])

    def test_over_long_line_refused_and_session_continues(self):
        self.shell.dataReceived(b"x" * (self.shell.MAX_LENGTH + 10) + b"\n")
        self.assertIn("line too long", self.output())
        self.assertFalse(self.transport.disconnecting)
        self.type("cart")
        self.assertEqual([c[0] for c in self.client.calls], ["DisplayCart"])

    def test_help(self):
        self.type("help")
        text = self.output()
        for name in ("search", "purchase", "seller-rating", "quit"):
            self.assertIn(name, text)
        self.type("help add")
        self.assertIn("add ITEM_ID QUANTITY", self.output())

    def test_help_names_only_this_clients_commands(self):
        self.type("help")
        text = self.output()
        listed = set(re.findall(r"(?m)^  ([a-z-]+)", text))
        self.assertEqual(listed, {c.name for c in buyer.COMMANDS} | {"help", "quit"})
        self.assertNotIn("register", text)  # a seller command, once its quoting example

    def test_expired_session_drops_the_star_from_the_prompt(self):
        self.type("login ann secret")
        self.client.calls[0][3].callback(("s-1", {"session_id": "s-1", "buyer_id": 4}))
        self.assertTrue(self.output().endswith("buyer*> "))
        self.type("cart")
        self.client.calls[1][3].errback(InvalidSession())
        self.assertTrue(self.output().endswith("buyer> "))
        self.type("cart")
        self.assertIsNone(self.client.calls[2][2])

    def test_other_refusals_keep_the_session(self):
        self.type("login ann secret")
        self.client.calls[0][3].callback(("s-1", {"session_id": "s-1", "buyer_id": 4}))
        self.type("add 1 0")
        self.client.calls[1][3].errback(ClientError("'quantity' must be between 1 and 9"))
        self.assertTrue(self.output().endswith("buyer*> "))

    def test_failures_are_remembered_for_the_exit_status(self):
        self.type("help")
        self.assertFalse(self.shell.failed)
        self.type("fly")
        self.assertTrue(self.shell.failed)

    def test_lines_typed_while_busy_wait_their_turn(self):
        self.type("cart")
        self.type("purchases")
        self.assertEqual(len(self.client.calls), 1)
        self.client.calls[0][3].callback((None, {"cart": []}))
        self.assertEqual([c[0] for c in self.client.calls], ["DisplayCart", "GetBuyerPurchases"])

    def test_unavailable_service_reported_and_shell_continues(self):
        self.type("cart")
        self.client.calls[0][3].errback(ServiceUnavailable("service at tcp:x is unavailable"))
        self.assertIn("error [SERVICE_UNAVAILABLE]", self.output())
        self.type("cart")
        self.assertEqual(len(self.client.calls), 2)

    def test_unexpected_failure_reported(self):
        self.type("cart")
        self.client.calls[0][3].errback(RuntimeError("boom"))
        self.assertIn("error: boom", self.output())

    def test_odd_reply_shape_still_shown(self):
        self.type("cart")
        self.client.calls[0][3].callback((None, {"cart": "not a list"}))
        self.assertIn("not a list", self.output())

    def test_purchase_retry_reuses_key_until_settled(self):
        line = 'purchase "Ann Lee" 4111111111111111 12/30 123'
        self.type(line)
        first = self.client.calls[0]
        self.assertEqual(first[1]["name"], "Ann Lee")
        first[3].errback(ServiceUnavailable("down"))
        self.assertIn("repeat the same command", self.output())
        self.type(line)
        second = self.client.calls[1]
        self.assertEqual(second[1]["idempotency_key"], first[1]["idempotency_key"])
        second[3].callback((None, {"status": "ok"}))
        self.type(line)
        self.assertNotEqual(self.client.calls[2][1]["idempotency_key"], first[1]["idempotency_key"])

    def test_quit_closes_then_finishes(self):
        self.type("quit")
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.shell.finished.called)
        self.shell.connectionLost(None)
        self.assertTrue(self.shell.finished.called)

    def test_end_of_input_runs_pending_lines_first(self):
        self.type("cart")
        self.shell.readConnectionLost()
        self.assertFalse(self.transport.disconnecting)
        self.client.calls[0][3].callback((None, {"cart": []}))
        self.assertTrue(self.transport.disconnecting)


class ShellOverNetworkTests(unittest.TestCase):
    """The shell with the real client against a server that goes away and returns."""

    timeout = 20

    @defer.inlineCallbacks
    def start_server(self, port=0):
        factory = EnvelopeServerFactory(api_router({
            "DisplayCart": lambda request: (None, {"cart": [{"item_id": 1, "quantity": 3}]}),
        }))
        connections = []
        build = factory.buildProtocol
        factory.buildProtocol = lambda address: connections.append(build(address)) or connections[-1]
        listener = Listener(f"tcp:{port}:interface=127.0.0.1", factory)
        start_service(self, listener)
        port = yield listening_port(listener)

        def stop():
            for connection in connections:
                connection.transport.loseConnection()
            return listener.stopService()

        return stop, port

    @defer.inlineCallbacks
    def test_dropped_service_then_recovery(self):
        stop, port = yield self.start_server()
        client = ServiceClient(f"tcp:127.0.0.1:{port}", retry_delay=0.01)
        self.addCleanup(client.close)
        shell = Shell("buyer", buyer.COMMANDS, client)
        transport = StringTransport()
        shell.makeConnection(transport)

        @defer.inlineCallbacks
        def run(line):
            transport.clear()
            yield shell.run_line(line)
            return transport.value().decode()

        self.assertIn("1     3", (yield run("cart")))
        yield stop()
        self.assertIn("error [SERVICE_UNAVAILABLE]", (yield run("cart")))
        yield self.start_server(port)
        self.assertIn("1     3", (yield run("cart")))


class _Child(protocol.ProcessProtocol):
    def __init__(self):
        self.prompted = defer.Deferred()
        self.ended = defer.Deferred()
        self.out = self.err = b""

    def outReceived(self, data):
        self.out += data
        if b"buyer> " in self.out and not self.prompted.called:
            self.prompted.callback(None)

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.ended.callback(None)


class ProgramTests(unittest.TestCase):
    """The installed entry point on real stdin/stdout: never a traceback."""

    timeout = 30

    @defer.inlineCallbacks
    def test_bad_input_and_no_server(self):
        script = "\n".join([
            "help", "fly", "add x y", 'login "unterminated', "\x00\x01", "cart", "quit",
        ]).encode()
        env = dict(os.environ, PYTHONPATH=_REPO)
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            ["-c", "import sys; from marketplace.market.cli.buyer import main; sys.exit(main())",
             "--server", "tcp:127.0.0.1:1", "--timeout", "2"],
            env=env, path=_REPO, stdinBytes=script,
        )
        text = out.decode()
        self.assertEqual(code, 1, err.decode())  # commands failed: the script says so
        self.assertIn("unknown command 'fly'", text)
        self.assertIn("usage: add ITEM_ID QUANTITY", text)
        self.assertIn("error [SERVICE_UNAVAILABLE]", text)
        self.assertNotIn("Traceback", text + err.decode())

    @defer.inlineCallbacks
    def test_terminated_at_the_prompt_exits_cleanly(self):
        """SIGTERM (like Ctrl-C) stops the reactor first; the shell must not stop it twice."""
        child = _Child()
        reactor.spawnProcess(
            child, sys.executable,
            [sys.executable, "-c",
             "import sys; from marketplace.market.cli.buyer import main; sys.exit(main())",
             "--server", "tcp:127.0.0.1:1"],
            env=dict(os.environ, PYTHONPATH=_REPO), path=_REPO)
        yield child.prompted
        child.transport.signalProcess("TERM")
        yield child.ended
        self.assertEqual(child.err, b"")

    @defer.inlineCallbacks
    def test_bad_option(self):
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            ["-c", "import sys; from marketplace.market.cli.seller import main; sys.exit(main())",
             "--server", "bogus:thing"],
            env=dict(os.environ, PYTHONPATH=_REPO), path=_REPO,
        )
        self.assertEqual(code, 2)
        self.assertIn("bad client endpoint", err.decode())

    @defer.inlineCallbacks
    def test_a_script_that_ran_cleanly_exits_zero(self):
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            ["-c", "import sys; from marketplace.market.cli.buyer import main; sys.exit(main())",
             "--server", "127.0.0.1:1"],
            env=dict(os.environ, PYTHONPATH=_REPO), path=_REPO, stdinBytes=b"help\nquit\n",
        )
        self.assertEqual(code, 0, err.decode())
