"""
The command-line tools: the interactive client's shell, the stress tool, the
password tool and the plugin's options.
"""

import csv
import io
import os
import socket
import sys
import time
import types

from twisted.internet import defer, reactor, utils
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from marketplace import latency
from marketplace.collector import CollectorSettings
from marketplace.store.ledger_rules import HistoryRetention
from marketplace.tradechat import auth, bench, benchpool, passwd, tap
from marketplace.tradechat.client import Shell, format_push
from protocols import tradechat_bodies as bodies
from protocols.nsframe import Status
from tests.tradechat.helpers import connect_client, start_server

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ShellTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        _, port = yield start_server(self, "--compat")
        self.printed = []
        self.pushes = []
        client = yield connect_client(self, f"tcp:127.0.0.1:{port}",
                                      on_push=lambda push: self.pushes.append(format_push(push)))
        self.quit = []
        self.shell = Shell(client, self.printed.append, lambda: self.quit.append(True))

    @defer.inlineCallbacks
    def run_lines(self, *lines):
        for line in lines:
            yield self.shell.run(line)
        return "".join(self.printed)

    @defer.inlineCallbacks
    def test_session(self):
        output = yield self.run_lines(
            "login alice", "join 1", "say 1 hello bob", "deposit 50", "withdraw 100",
            "transfer 212 150", "withdraw 9999999", "transfer 5000 1", "history 2", "logout",
            "balance")
        self.assertIn("logged in as alice: user 999, balance 100000", output)
        self.assertIn("joined room 1", output)
        self.assertIn("balance 99800", output)
        self.assertIn("refused: INSUFFICIENT_FUNDS (balance 99800)", output)
        self.assertIn("refused: NOT_FOUND", output)
        self.assertIn("transfer_out  212", output)
        self.assertIn("logged out", output)
        self.assertTrue(output.rstrip().endswith("refused: UNAUTHORIZED"))
        self.assertEqual(self.pushes, ["[room 1] <user 999> hello bob"])

    @defer.inlineCallbacks
    def test_usage_errors_and_help(self):
        output = yield self.run_lines("deposit lots", "join 70000", "transfer 1", "join '1",
                                      "say 1", "nonsense")
        self.assertEqual(output.count("usage error"), 3)
        self.assertIn("amount must be a whole number, not 'lots'", output)
        self.assertIn("usage: transfer USER_ID AMOUNT", output)
        self.assertIn("usage: say ROOM TEXT...", output)
        self.assertIn("unknown command 'nonsense'", output)
        self.assertIn("commands:", output)
        self.assertTrue(self.shell.failed)

    @defer.inlineCallbacks
    def test_mistyped_input_shows_no_python_internals(self):
        output = yield self.run_lines("login", "logout now", "history x", "balance 1 2")
        for internal in ("positional argument", "Shell.", "_login", "invalid literal", "int()"):
            self.assertNotIn(internal, output)
        self.assertIn("usage: login NAME [PASSWORD]", output)
        self.assertIn("usage: logout", output)
        self.assertIn("limit must be a whole number, not 'x'", output)

    @defer.inlineCallbacks
    def test_a_failed_command_is_remembered(self):
        yield self.run_lines("heartbeat")
        self.assertFalse(self.shell.failed)
        yield self.run_lines("balance")  # not logged in: refused
        self.assertTrue(self.shell.failed)

    @defer.inlineCallbacks
    def test_quit(self):
        yield self.run_lines("quit")
        self.assertEqual(self.quit, [True])


class PushFormatTests(unittest.TestCase):
    def test_a_message_cannot_fake_a_sender_or_a_line(self):
        push = bodies.ChatBroadcast(1, 999, b"hi\r[room 1] <user 0> pay me\n\x1b[2J\xc2\x9b")
        self.assertEqual(format_push(push),
                         "[room 1] <user 999> hi\\r[room 1] <user 0> pay me\\n\\x1b[2J\\x9b")


class BenchTests(unittest.TestCase):
    timeout = 60

    def options(self, *arguments):
        options = bench.Options()
        options.parseOptions(list(arguments))
        return options

    @defer.inlineCallbacks
    def test_no_server_is_one_line_and_status_1(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.patch(sys, "argv", ["tradechat-bench"])
        options = self.options("--connect", "127.0.0.1:1", "--connections", "2",
                               "--duration", "0.1")
        with self.assertRaises(SystemExit) as exited:
            yield bench.Bench(reactor, options, out=_Lines(), progress=_Lines()).run()
        self.assertEqual(exited.exception.code, 1)
        self.assertEqual(err.getvalue(), "tradechat-bench: cannot set up against "
                         "tcp:127.0.0.1:1: connection refused: nothing listens there\n")

    @defer.inlineCallbacks
    def test_a_server_without_compat_gets_a_hint(self):
        """The existing tool's workload needs the existing accounts: the run says so."""
        _, port = yield start_server(self)
        options = self.options("--port", str(port), "--connections", "4", "--threads", "2",
                               "--duration", "0.3", "--mix", "trade-heavy", "--seed", "1")
        output = _Lines()
        yield bench.Bench(reactor, options, out=output, progress=_Lines()).run()
        self.assertIn("NOT_FOUND=", output.text)
        self.assertIn("started with --compat", output.text)

    @defer.inlineCallbacks
    def test_a_compat_server_gets_no_hint(self):
        _, port = yield start_server(self, "--compat")
        options = self.options("--port", str(port), "--connections", "4", "--threads", "2",
                               "--duration", "0.3", "--mix", "trade-heavy", "--seed", "1")
        output = _Lines()
        yield bench.Bench(reactor, options, out=output, progress=_Lines()).run()
        self.assertNotIn("--compat", output.text)

    @defer.inlineCallbacks
    def test_short_run_conserves_assets_and_writes_csv(self):
        _, port = yield start_server(self, "--compat")
        out_path = self.mktemp()
        options = self.options("--port", str(port), "--connections", "6", "--threads", "3",
                               "--duration", "0.5", "--out", out_path, "--seed", "1")
        output = _Lines()
        conserved = yield bench.Bench(reactor, options, out=output, progress=_Lines()).run()
        self.assertTrue(conserved, output.text)
        self.assertIn("conservation: OK", output.text)
        [row] = list(csv.DictReader(open(out_path)))
        self.assertEqual(list(row), bench.CSV_COLUMNS)
        self.assertEqual((row["connections"], row["threads"], row["mix"]), ("6", "3", "mixed"))
        self.assertGreater(int(row["total"]), 0)
        self.assertEqual(int(row["total"]), int(row["ok"]) + int(row["err"]))

    def test_never_chooses_a_self_transfer(self):
        options = self.options("--mix", "trade-heavy", "--seed", "3")
        runner = bench.Bench(reactor, options)
        for user_id in (0, 1, 512, 1023):
            targets = {request.to_user_id for op, request in
                       (runner.choose(user_id) for _ in range(4000)) if op == "transfer"}
            self.assertNotIn(user_id, targets)
            self.assertTrue(targets <= set(range(1024)))
            self.assertGreater(len(targets), 700)

    def test_mix_proportions(self):
        runner = bench.Bench(reactor, self.options("--mix", "chat-heavy", "--seed", "5"))
        ops = [runner.choose(7)[0] for _ in range(10000)]
        self.assertTrue(0.67 < ops.count("chat") / len(ops) < 0.73)
        self.assertEqual(set(ops), {"chat", "transfer", "balance"})

    def test_amounts_cover_their_ranges(self):
        runner = bench.Bench(reactor, self.options("--mix", "mixed", "--seed", "6"))
        amounts = {"transfer": set(), "withdraw": set(), "deposit": set()}
        for _ in range(20000):
            op, request = runner.choose(7)
            if op in amounts:
                amounts[op].add(request.amount)
        self.assertEqual(amounts, {"transfer": set(range(1, 51)), "withdraw": set(range(1, 101)),
                                   "deposit": set(range(1, 101))})

    def test_option_checks(self):
        for arguments in (["--mix", "nope"], ["--connections", "0"], ["--payload-size", "70000"],
                          ["--connect", "tcp:nohost"]):
            with self.subTest(arguments):
                self.assertRaises(usage.UsageError, self.options, *arguments)
        self.assertEqual(self.options("--connections", "4", "--threads", "9")["concurrency"], 4)

    def test_reactor_defaults_to_the_faster_one_for_the_mix(self):
        self.assertEqual(self.options("--mix", "mixed")["reactor"], "poll")
        self.assertEqual(self.options("--mix", "chat-heavy")["reactor"], "poll")
        self.assertEqual(self.options("--mix", "trade-heavy")["reactor"], bench.PLATFORM_REACTOR)
        self.assertEqual(self.options("--mix", "mixed", "--reactor", "select")["reactor"], "select")
        self.assertRaises(usage.UsageError, self.options, "--reactor", "nope")

    @defer.inlineCallbacks
    def test_importing_the_tools_installs_no_reactor(self):
        """
        C{--reactor} works only if nothing the tool imports has installed
        the default reactor already (txredisapi does at import, so the
        option parsing must not reach the Redis store).
        """
        script = ("import sys; import marketplace.tradechat.benchmain; "
                  "print('twisted.internet.reactor' in sys.modules)")
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-c", script], env=os.environ, path=REPOSITORY)
        self.assertEqual((out.strip(), code), (b"False", 0), err)

    def test_unanswered_request_counts_as_timeout_and_makes_the_audit_indeterminate(self):
        runner = bench.Bench(reactor, self.options())
        runner.choose = lambda user_id: ("withdraw", bodies.Withdraw(5))
        protocol = _SilentProtocol()
        worker = bench.Worker(runner, [_FakeClient(7, protocol)])
        runner.ledger.expected[7] = 100
        worker.start()
        self.assertEqual(len(protocol.pending), 1)
        runner.stopping = True
        worker.expire(time.perf_counter() + 10, timeout=5.0)
        self.assertEqual(protocol.pending, {})
        self.assertEqual(runner.results.errors, {Status.TIMEOUT: 1})
        self.successResultOf(worker.finished)
        self.assertEqual(runner.ledger.uncertain, 5)

    def replace_module(self, name, module):
        """Make C{import name} give C{module} (None: fail) for this test."""
        self.addCleanup(_restore_module, name, sys.modules.get(name, _ABSENT))
        sys.modules[name] = module

    def test_plot_draws_each_percentile_and_the_throughput_per_second(self):
        pyplot = _RecordingPyplot()
        matplotlib = types.ModuleType("matplotlib")
        matplotlib.backends = []
        matplotlib.use = matplotlib.backends.append
        matplotlib.pyplot = pyplot
        self.replace_module("matplotlib", matplotlib)
        self.replace_module("matplotlib.pyplot", pyplot)
        path, output = "run.png", _Lines()
        timeline = [(1.0, 100, 50, 90, 99), (2.0, 120, 40, 80, 95)]
        bench.plot(self.options("--plot", path, "--mix", "chat-heavy"), timeline, path, output)
        self.assertEqual(matplotlib.backends, ["Agg"])
        latency, throughput = pyplot.axes
        self.assertEqual(latency.lines, [([1.0, 2.0], [50, 40], "p50"), ([1.0, 2.0], [90, 80], "p99"),
                                         ([1.0, 2.0], [99, 95], "p99.9")])
        self.assertEqual(throughput.lines, [([1.0, 2.0], [100, 120], None)])
        self.assertEqual(pyplot.figure.saved, [path])
        self.assertIn("chat-heavy", pyplot.figure.title)
        self.assertIn(f"plot written to {path}", output.text)

    def test_plot_is_skipped_with_a_notice_without_matplotlib(self):
        self.replace_module("matplotlib", None)
        path, output = self.mktemp() + ".png", _Lines()
        bench.plot(self.options("--plot", path), [(1.0, 100, 50, 90, 99)], path, output)
        self.assertIn("--plot skipped: matplotlib is not installed", output.text)
        self.assertFalse(os.path.exists(path))

    def test_conservation_detects_a_wrong_balance(self):
        ledger = bench.Ledger({1: 100, 2: 100})
        ledger.apply("transfer", 1, bodies.Transfer(2, 30), True)
        ledger.apply("transfer", 1, bodies.Transfer(900, 5), True)
        ledger.apply("deposit", 2, bodies.Deposit(7), True)
        ledger.apply("withdraw", 2, bodies.Withdraw(9), False)
        self.assertEqual(ledger.expected, {1: 65, 2: 137})
        self.assertEqual((ledger.sent_outside, ledger.deposited, ledger.withdrawn), (5, 7, 0))

    def test_ledgers_of_several_processes_merge_exactly(self):
        first = bench.Ledger({1: 100, 2: 100})
        second = bench.Ledger({3: 100})
        first.apply("transfer", 1, bodies.Transfer(3, 30), True)
        first.apply("transfer", 2, bodies.Transfer(900, 5), True)
        second.apply("transfer", 3, bodies.Transfer(2, 7), True)
        second.apply("deposit", 3, bodies.Deposit(11), True)
        second.uncertain = 4
        merged = bench.Ledger.merged([bench.Ledger.from_json(first.to_json()),
                                      bench.Ledger.from_json(second.to_json())])
        self.assertEqual(merged.expected, {1: 70, 2: 102, 3: 134})
        self.assertEqual((merged.sent_outside, merged.deposited, merged.uncertain), (5, 11, 4))

    def test_latencies_reach_both_histograms_when_folded(self):
        results = bench.Results()
        for value in (100, 100, 250, 10**9):
            results.record(value)
        self.assertEqual(results.histogram.get_total_count(), 0)
        results.fold()
        for histogram in (results.histogram, results.interval):
            self.assertEqual(histogram.get_total_count(), 4)
            self.assertEqual(histogram.get_count_at_value(100), 2)
            self.assertTrue(histogram.values_are_equivalent(histogram.get_max_value(),
                                                            latency.HIGHEST_US))
        results.fold()
        self.assertEqual(results.histogram.get_total_count(), 4)

    def test_results_of_several_processes_merge_exactly(self):
        first, second = bench.Results(), bench.Results()
        for value in (100, 200, 300):
            first.record(value)
        second.record(5000)
        first.ok, second.ok = 2, 1
        first.errors[Status.INSUFFICIENT_FUNDS] = 1
        second.pushes = 7
        merged = bench.Results()
        for results in (first, second):
            merged.add(bench.Results.from_json(results.to_json()))
        self.assertEqual((merged.ok, merged.errors, merged.pushes, merged.total),
                         (3, {Status.INSUFFICIENT_FUNDS: 1}, 7, 4))
        self.assertEqual(merged.histogram.get_total_count(), 4)
        self.assertEqual(merged.histogram.get_max_value(), second.histogram.get_max_value())

    def test_shares_split_workers_and_keep_the_names(self):
        options = self.options("--connections", "10", "--threads", "4", "--processes", "3")
        shares = [bench.Bench(reactor, options, share=(index, 3)).worker_numbers
                  for index in range(3)]
        self.assertEqual([list(numbers) for numbers in shares], [[0, 3], [1], [2]])
        self.assertRaises(usage.UsageError, self.options, "--threads", "2", "--processes", "3")

    @defer.inlineCallbacks
    def test_several_processes_merge_into_one_report(self):
        _, port = yield start_server(self, "--compat")
        out_path = self.mktemp()
        arguments = ["--port", str(port), "--connections", "6", "--threads", "4",
                     "--processes", "2", "--duration", "0.5", "--out", out_path, "--seed", "2"]
        output = _Lines()
        conserved = yield benchpool.LoadPool(reactor, self.options(*arguments), arguments,
                                             out=output, progress=_Lines()).run()
        self.assertTrue(conserved, output.text)
        self.assertIn("conservation: OK: 6 accounts", output.text)
        [row] = list(csv.DictReader(open(out_path)))
        self.assertEqual((row["connections"], row["threads"]), ("6", "4"))
        self.assertGreater(int(row["total"]), 0)
        self.assertEqual(int(row["total"]), int(row["ok"]) + int(row["err"]))

    @defer.inlineCallbacks
    def test_a_load_process_that_fails_fails_the_run(self):
        # Bound but not listening for the whole test: connections to it are
        # refused, and no other process can take the port meanwhile.
        unused = socket.socket()
        self.addCleanup(unused.close)
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        arguments = ["--port", str(port), "--connections", "2", "--threads", "2",
                     "--processes", "2", "--duration", "0.5", "--timeout", "2"]
        pool = benchpool.LoadPool(reactor, self.options(*arguments), arguments,
                                  out=_Lines(), progress=_Lines())
        yield self.assertFailure(pool.run(), benchpool.LoadProcessFailed)


class _SilentProtocol:
    """A client protocol whose server never answers."""

    closed = False

    def __init__(self):
        self.sent = []
        self.pending = {}

    def send(self, request, on_response):
        self.sent.append(request)
        req_id = len(self.sent)
        self.pending[req_id] = on_response
        return req_id

    def forget(self, req_id):
        del self.pending[req_id]


class _FakeClient:
    def __init__(self, user_id, protocol):
        self.user_id = user_id
        self.protocol = protocol


class _Lines:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


_ABSENT = object()


def _restore_module(name, module):
    if module is _ABSENT:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = module


class _RecordingAxes:
    def __init__(self):
        self.lines = []

    def plot(self, xs, ys, label=None):
        self.lines.append((list(xs), list(ys), label))

    def set_ylabel(self, text):
        pass

    def set_xlabel(self, text):
        pass

    def legend(self):
        pass


class _RecordingFigure:
    def __init__(self):
        self.saved = []
        self.title = None

    def suptitle(self, text):
        self.title = text

    def savefig(self, path):
        self.saved.append(path)


class _RecordingPyplot(types.ModuleType):
    """Stands in for matplotlib.pyplot: records what the plot is drawn from."""

    def __init__(self):
        super().__init__("matplotlib.pyplot")
        self.figure = _RecordingFigure()
        self.axes = (_RecordingAxes(), _RecordingAxes())

    def subplots(self, rows, columns, **keywords):
        assert (rows, columns) == (2, 1)
        return self.figure, self.axes


class PasswdTests(unittest.TestCase):
    def test_set_and_replace(self):
        path = FilePath(self.mktemp())
        path.setContent(b"# accounts\n")
        fast = dict(time_cost=1, memory_cost_kib=8, parallelism=1)
        first = auth.hash_password("alice", "one", **fast)
        passwd.set_password(path, first)
        passwd.set_password(path, auth.hash_password("bob", "two", **fast))
        replacement = auth.hash_password("alice", "three", **fast)
        passwd.set_password(path, replacement)
        text = path.getContent().decode()
        self.assertTrue(text.startswith("# accounts\n"))
        parsed = auth.parse_credentials(text)
        self.assertEqual(sorted(parsed), ["alice", "bob"])
        self.assertEqual(parsed["alice"], replacement)

    def test_the_file_is_owner_only_when_created_and_when_updated(self):
        fast = dict(time_cost=1, memory_cost_kib=8, parallelism=1)
        path = FilePath(self.mktemp())
        path.parent().makedirs(ignoreExistingDirectory=True)
        old_umask = os.umask(0)
        self.addCleanup(os.umask, old_umask)
        passwd.set_password(path, auth.hash_password("alice", "one", **fast))
        self.assertEqual(os.stat(path.path).st_mode & 0o777, 0o600)
        for mode in (0o600, 0o755):
            path.chmod(mode)
            passwd.set_password(path, auth.hash_password("bob", "two", **fast))
            self.assertEqual(os.stat(path.path).st_mode & 0o777, 0o600)
        self.assertEqual(sorted(auth.parse_credentials(path.getContent().decode())),
                         ["alice", "bob"])
        self.assertEqual(path.parent().listdir(), [path.basename()])

    def test_name_is_checked(self):
        self.assertRaises(usage.UsageError, passwd.Options().parseOptions, ["file", "n" * 32])

    def test_kdf_parameters_must_fit_the_hello_reply(self):
        for option, value in (("--parallelism", "256"), ("--parallelism", "0"),
                              ("--time-cost", "0"), ("--time-cost", str(2**32)),
                              ("--memory-kib", "7"), ("--memory-kib", str(2**32))):
            with self.subTest(option=option, value=value):
                self.assertRaises(usage.UsageError, passwd.Options().parseOptions,
                                  [option, value, "file", "alice"])
        options = passwd.Options()
        options.parseOptions(["--parallelism", "255", "--memory-kib", "2040", "file", "alice"])
        self.assertEqual(options["parallelism"], 255)


class OptionsTests(unittest.TestCase):
    def parse(self, *arguments):
        options = tap.Options()
        options.parseOptions(list(arguments))
        return options

    def test_defaults(self):
        options = self.parse()
        self.assertEqual((options["listen"], options["store"], options["compat"],
                          options["opening-balance"]), ("tcp:9000", "memory", False, 0))
        self.assertFalse(options["authenticator"].require_password)

    def test_compat_opens_with_the_existing_balance(self):
        self.assertEqual(self.parse("--compat")["opening-balance"], 100000)
        self.assertEqual(self.parse("--compat", "--opening-balance", "5")["opening-balance"], 5)

    def test_bad_values(self):
        missing = self.mktemp()
        garbled = FilePath(self.mktemp())
        garbled.setContent(b"alice:plain:secret\n")
        for arguments in (["--max-frame-size", "70000"], ["--max-frame-size", "16"],
                          ["--idle-timeout", "0"], ["--opening-balance", "-1"],
                          ["--credentials", missing], ["--credentials", garbled.path],
                          ["--listen", "bogus:1"], ["--store", "ftp://x"],
                          ["--anonymous-lease", "599"], ["--session-ttl", "2000"],
                          ["--max-total-output", "0"]):
            with self.subTest(arguments):
                self.assertRaises(usage.UsageError, self.parse, *arguments)

    def secret_file(self, mode=0o600, content=b"0123456789abcdef0123456789abcdef"):
        path = FilePath(self.mktemp())
        path.setContent(content)
        path.chmod(mode)
        return path.path

    def credentials_file(self):
        path = FilePath(self.mktemp())
        path.setContent(auth.format_credential(auth.hash_password(
            "alice", "s3cret", time_cost=1, memory_cost_kib=8, parallelism=1)).encode())
        return path.path

    def test_decoy_salts_are_the_same_in_every_process_given_the_secret(self):
        credentials, secret = self.credentials_file(), self.secret_file()
        first, second = (self.parse("--credentials", credentials, "--decoy-secret", secret)
                         for _ in range(2))
        decoys = [options["authenticator"].params_for("eve") for options in (first, second)]
        self.assertEqual(decoys[0], decoys[1])
        self.assertNotEqual(decoys[0], first["authenticator"].params_for("mallory"))
        other = self.parse("--credentials", credentials, "--decoy-secret",
                           self.secret_file(content=b"another secret of 16+ bytes"))
        self.assertNotEqual(other["authenticator"].params_for("eve"), decoys[0])

    def test_credentials_need_a_private_decoy_secret(self):
        credentials = self.credentials_file()
        for arguments in (["--credentials", credentials],
                          ["--credentials", credentials, "--decoy-secret",
                           self.secret_file(mode=0o644)],
                          ["--credentials", credentials, "--decoy-secret",
                           self.secret_file(content=b"short")],
                          ["--credentials", credentials, "--decoy-secret", self.mktemp()]):
            with self.subTest(arguments):
                error = self.assertRaises(usage.UsageError, self.parse, *arguments)
                self.assertIn("decoy-secret", str(error))

    def test_make_service_tree(self):
        root = tap.makeService(self.parse("--listen", "tcp:0"))
        self.assertEqual(root.getServiceNamed("tradechat").description, "tcp:0")
        self.assertIsNotNone(root.getServiceNamed("store"))
        self.assertEqual(len([s for s in root if isinstance(s, CollectorSettings)]), 1)




class SuiteTests(unittest.TestCase):
    def test_suite_service_uses_the_suite_store_settings(self):
        from marketplace.suite import Options as SuiteOptions
        suite_options = SuiteOptions()
        suite_options.parseOptions(["--store", "redis://127.0.0.1:1/0", "--store-timeout", "3.5"])
        root = tap.suite_service(suite_options)  # built, never started: no connection is made
        self.assertEqual(root.getServiceNamed("tradechat").description, tap.DEFAULT_LISTEN)
        store = root.getServiceNamed("store")
        self.assertEqual((store.url, store.connection.timeout), ("redis://127.0.0.1:1/0?prefix=tradechat:", 3.5))


class HistoryKeepOptionTests(unittest.TestCase):
    def ledger_retention(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return tap.makeService(options).getServiceNamed("store").ledger._retention

    def test_the_default_keeps_a_thousand_entries_an_account(self):
        self.assertEqual(self.ledger_retention(), HistoryRetention(entries=1000))

    def test_entries_and_days(self):
        self.assertEqual(self.ledger_retention("--history-keep", "50,2d"),
                         HistoryRetention(entries=50, seconds=2 * 86400))
        self.assertEqual(self.ledger_retention("--history-keep", "all"), HistoryRetention())

    def test_a_bad_value_is_a_usage_error(self):
        for bad in ("0", "-3", "x", "3x", "0d"):
            self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--history-keep", bad])
