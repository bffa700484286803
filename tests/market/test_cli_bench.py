"""
Tests for ``market-bench`` against the real marketplace on 127.0.0.1.
"""

import csv
import io

from twisted.internet import defer
from twisted.trial import unittest

from marketplace.market.errors import ClientError, ServiceUnavailable
from marketplace.market.bench import (
    CSV_FIELDS,
    MIX_APIS,
    Bench,
    BenchConfig,
    BenchOptions,
    BenchResult,
    Latency,
    _outcome,
    append_csv,
)
from protocols.envelope import encode_error, encode_response
from tests.market.market_harness import start_market


class BenchTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_small_run_counts_every_operation(self):
        market = yield start_market(self)
        config = BenchConfig(f"tcp:127.0.0.1:{market.ports['buyer-front']}",
                             f"tcp:127.0.0.1:{market.ports['seller-front']}",
                             buyers=3, sellers=2, ops=20, label="test", progress=False)
        out = io.StringIO()
        result = yield Bench(config, out=out).run()
        self.assertEqual(result.failed, {})
        self.assertEqual(result.successful, (3 + 2) * 20)
        self.assertLessEqual(result.p50_ms, result.p95_ms)
        self.assertLessEqual(result.p95_ms, result.p99_ms)
        self.assertLessEqual(result.p99_ms, result.max_ms)
        self.assertGreater(result.ops_per_second, 0)
        self.assertIn("3 buyers + 2 sellers x 20 ops: 100 ok", result.summary())

        self.assertEqual(sum(latency.count for latency in result.per_api.values()), 100)
        self.assertLessEqual(set(result.per_api), set(MIX_APIS))
        for latency in result.per_api.values():
            self.assertLessEqual(latency.p50_ms, latency.p99_ms)
            self.assertLessEqual(latency.max_ms, result.max_ms)
        table = result.breakdown().splitlines()
        self.assertEqual(table[0].split(), ["api", "calls", "p50", "ms", "p95", "ms", "p99", "ms",
                                            "max", "ms"])
        self.assertEqual([row.split()[0] for row in table[1:]],
                         [api for api in MIX_APIS if api in result.per_api])

        path = self.mktemp()
        append_csv(path, result)
        append_csv(path, result)
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
        self.assertEqual(len(rows), 2)
        self.assertEqual((rows[0]["label"], rows[0]["successful"]), ("test", "100"))
        [api, *_] = result.per_api
        self.assertEqual(rows[0][f"{api}_p99_ms"], f"{result.per_api[api].p99_ms:.3f}")

    def test_csv_columns_are_only_appended(self):
        self.assertEqual(CSV_FIELDS[:13], (
            "finished_at", "label", "buyers", "sellers", "ops_per_user", "successful", "failed",
            "seconds", "ops_per_second", "p50_ms", "p95_ms", "p99_ms", "max_ms"))
        self.assertEqual(CSV_FIELDS[13:15], ("SearchItemsForSale_p50_ms", "SearchItemsForSale_p99_ms"))

    def test_a_file_with_the_older_columns_keeps_them(self):
        path = self.mktemp()
        with open(path, "w", newline="") as stream:
            csv.writer(stream).writerow(CSV_FIELDS[:13])
        config = BenchConfig("tcp:127.0.0.1:1", "tcp:127.0.0.1:1", label="old")
        latency = Latency(1, 1.0, 2.0, 3.0, 4.0)
        append_csv(path, BenchResult(config, 1, {}, 1.0, 1.0, 2.0, 3.0, 4.0, {"GetItem": latency}))
        with open(path, newline="") as stream:
            rows = list(csv.reader(stream))
        self.assertEqual([len(row) for row in rows], [13, 13])
        self.assertEqual(rows[1][1], "old")

    @defer.inlineCallbacks
    def test_unreachable_front_end_fails_setup_clearly(self):
        config = BenchConfig("tcp:127.0.0.1:1", "tcp:127.0.0.1:1", buyers=1, sellers=1, ops=1,
                             timeout=1.0, progress=False)
        yield self.assertFailure(Bench(config).run(), ServiceUnavailable)


class OptionsTests(unittest.TestCase):
    def test_defaults(self):
        options = BenchOptions()
        options.parseOptions([])
        config = options.config()
        self.assertEqual((config.buyers, config.sellers, config.ops), (10, 10, 100))

    def test_sellers_required(self):
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, BenchOptions().parseOptions, ["--sellers", "0"])
        self.assertRaises(UsageError, BenchOptions().parseOptions, ["--buyer-front", "bogus:x"])


class OutcomeTests(unittest.TestCase):
    """The load generator counts a call as successful only for a success reply."""

    def test_success_without_payload_needed_is_not_decoded(self):
        frame = encode_response("GetItem", None, {"item_id": 1})
        self.assertEqual(_outcome(frame, wants_payload=False), (None, None))

    def test_success_with_payload_needed_is_decoded(self):
        frame = encode_response("Login", "s1", {"session_id": "s1"})
        self.assertEqual(_outcome(frame, wants_payload=True), ("s1", {"session_id": "s1"}))

    def test_errors_are_always_raised(self):
        frame = encode_error("GetItem", None, "CLIENT_ERROR", "no such item")
        for wants_payload in (False, True):
            self.assertRaises(ClientError, _outcome, frame, wants_payload)

    def test_other_key_orders_are_decoded(self):
        frame = b'{"api":"GetItem","type":"error","session_id":null,' \
                b'"error":{"code":"CLIENT_ERROR","message":"m"}}'
        self.assertRaises(ClientError, _outcome, frame, False)
        frame = b'{"payload":{},"type":"response","api":"GetItem","session_id":null}'
        self.assertEqual(_outcome(frame, wants_payload=False), (None, {}))
