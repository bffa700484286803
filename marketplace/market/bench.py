"""
``market-bench``: load for the buyer and seller front ends.

N buyers and M sellers each hold their own connection and run K operations
back to back (a closed loop, so latency is measured under the load all of
them create together).  Before the timed phase every user creates an
account and logs in, and every seller lists a few items that buyers then
search for, view, put in carts and buy; that setup is not measured.

The mix (weights per role):

    buyer:  search 3, view item 3, add to cart 2, remove from cart 1,
            display cart 2, purchase 1
    seller: register item 1, change price 3, update units 3, display items 3

A buyer removes only what its cart holds and buys only a non-empty cart
(otherwise it adds an item instead); after a failed purchase it clears its
cart (an uncounted housekeeping call).  Only successful calls count towards
throughput and latency; failures are counted by error code and reported.
Latencies go into an HDR histogram per api (microsecond resolution), so the
report shows which operations make the tail as well as the overall figures.

The load generator shares the machine with what it measures, so each user
speaks the envelope over one bare connection (``_UserConnection``) instead of
a pooled, retrying ``ServiceClient``: a closed loop never has more than one
request in flight, and every CPU cycle the generator saves goes to the
services under test.

    market-bench --buyers 100 --sellers 100 --ops 200 --csv results.csv
"""

import csv
import os
import random
import sys
import time
import uuid
from decimal import Decimal

import attrs
from hdrh.histogram import HdrHistogram
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.python import usage

from marketplace.collector import CollectorSettings
from marketplace.latency import LOWEST_US, new_histogram
from marketplace.market.errors import ApiError, ServiceUnavailable, error_for_code
from marketplace.net import connect
from marketplace.options import ProgramOptions, client_endpoint_argument, parse_command_line
from protocols.envelope import ErrorReply, encode_request, parse_reply
from protocols.envelope_server import no_delay
from protocols.jsonframe import MAX_FRAME_LIMIT, Frame, FrameDecoder, Framing, encode_frame

KEYWORDS = ("red", "blue", "green", "small", "large", "cheap", "new", "retro", "fast", "quiet",
            "wood", "metal")
CARD = {"name": "Bench Buyer", "card_number": "4111111111111111",
        "expiration_date": "12/99", "security_code": "123"}
#: Every api the timed phase calls, in the order of the per-api breakdown.
MIX_APIS = ("SearchItemsForSale", "GetItem", "AddItemToCart", "RemoveItemFromCart", "DisplayCart",
            "MakePurchase", "RegisterItemForSale", "ChangeItemPrice", "UpdateUnitsForSale",
            "DisplayItemsForSale")
#: The overall columns first, as before; each api's p50 and p99 are appended after them.
CSV_FIELDS = ("finished_at", "label", "buyers", "sellers", "ops_per_user", "successful", "failed",
              "seconds", "ops_per_second", "p50_ms", "p95_ms", "p99_ms", "max_ms",
              *(f"{api}_{column}" for api in MIX_APIS for column in ("p50_ms", "p99_ms")))


@attrs.frozen
class BenchConfig:
    buyer_front: str
    seller_front: str
    buyers: int = 10
    sellers: int = 10
    ops: int = 100
    items_per_seller: int = 3
    timeout: float = 10.0
    seed: int = 1
    label: str = ""
    progress: bool = True


@attrs.frozen
class Latency:
    """Count and latency percentiles (ms) of the successful calls in one histogram."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, histogram):
        def ms(percentile):
            return histogram.get_value_at_percentile(percentile) / 1000.0

        return cls(histogram.get_total_count(), ms(50), ms(95), ms(99),
                   histogram.get_max_value() / 1000.0)


class Tally:
    """
    Successful calls (count and latency, per api) and failures by code.

    Each call is recorded once, in its api's histogram; the overall figures
    come from their sum, so the breakdown costs the generator only a dictionary
    lookup per call.
    """

    def __init__(self):
        self.successful = 0
        self.failed = {}
        self.histograms: dict[str, HdrHistogram] = {}

    def success(self, api: str, seconds: float):
        self.successful += 1
        histogram = self.histograms.get(api)
        if histogram is None:
            histogram = self.histograms[api] = new_histogram()
        histogram.record_value(max(LOWEST_US, int(seconds * 1_000_000)))

    def failure(self, code: str):
        self.failed[code] = self.failed.get(code, 0) + 1

    def overall(self) -> Latency:
        total = new_histogram()
        for histogram in self.histograms.values():
            total.add(histogram)
        return Latency.of(total)

    def per_api(self) -> dict:
        """{api: Latency}, in the order of ``MIX_APIS`` (any other api after them)."""
        order = {api: n for n, api in enumerate(MIX_APIS)}
        return {api: Latency.of(self.histograms[api])
                for api in sorted(self.histograms, key=lambda api: (order.get(api, len(order)), api))}


@attrs.frozen
class BenchResult:
    config: BenchConfig
    successful: int
    failed: dict
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    per_api: dict = attrs.field(factory=dict)  # api -> Latency

    @property
    def ops_per_second(self) -> float:
        return self.successful / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        c = self.config
        failures = ", ".join(f"{code} {n}" for code, n in sorted(self.failed.items())) or "none"
        return (
            f"{c.label or 'run'}: {c.buyers} buyers + {c.sellers} sellers x {c.ops} ops: "
            f"{self.successful} ok in {self.seconds:.2f} s = {self.ops_per_second:,.0f} ops/s; "
            f"latency p50 {self.p50_ms:.2f} ms, p95 {self.p95_ms:.2f} ms, "
            f"p99 {self.p99_ms:.2f} ms, max {self.max_ms:.2f} ms; failures: {failures}"
        )

    def breakdown(self) -> str:
        """A table of each api's successful calls and their latency percentiles."""
        rows = [("api", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms")]
        rows += [(api, f"{latency.count}", f"{latency.p50_ms:.2f}", f"{latency.p95_ms:.2f}",
                  f"{latency.p99_ms:.2f}", f"{latency.max_ms:.2f}")
                 for api, latency in self.per_api.items()]
        widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
        return "\n".join(
            "  " + "  ".join(cell.ljust(width) if n == 0 else cell.rjust(width)
                             for n, (cell, width) in enumerate(zip(row, widths)))
            for row in rows)

    def csv_row(self) -> dict:
        c = self.config
        per_api = {}
        for api, latency in self.per_api.items():
            per_api[f"{api}_p50_ms"] = f"{latency.p50_ms:.3f}"
            per_api[f"{api}_p99_ms"] = f"{latency.p99_ms:.3f}"
        return {
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "label": c.label, "buyers": c.buyers, "sellers": c.sellers, "ops_per_user": c.ops,
            "successful": self.successful, "failed": sum(self.failed.values()),
            "seconds": f"{self.seconds:.3f}", "ops_per_second": f"{self.ops_per_second:.1f}",
            "p50_ms": f"{self.p50_ms:.3f}", "p95_ms": f"{self.p95_ms:.3f}",
            "p99_ms": f"{self.p99_ms:.3f}", "max_ms": f"{self.max_ms:.3f}",
            **per_api,
        }


def append_csv(path: str, result: BenchResult):
    """
    Append one row, writing the header first if the file is new or empty.

    A file started by an older version keeps its own columns (the new ones
    are left out of its rows), so every row matches its header.
    """
    fields = CSV_FIELDS
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, newline="") as stream:
            fields = next(csv.reader(stream), None) or CSV_FIELDS
        new = False
    else:
        new = True
    with open(path, "a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields, restval="", extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(result.csv_row())


class _UserConnection(Protocol):
    """
    One user's connection to a front end, one request at a time.

    ``request(body)`` fires with the reply envelope, or fails with
    ``ServiceUnavailable`` if the connection drops or no reply arrives in
    ``timeout`` seconds (the connection is then closed: a late reply must
    not be taken for the next request's).
    """

    def __init__(self, description: str, timeout: float, clock):
        self._description = description
        self._timeout = timeout
        self._clock = clock
        self._decoder = FrameDecoder(MAX_FRAME_LIMIT, Framing.LENGTH_PREFIXED)
        self._reply = None
        self._timer = None
        self.closed = defer.Deferred()

    def connectionMade(self):
        no_delay(self.transport)

    def request(self, body: bytes):
        self._reply = defer.Deferred()
        self._timer = self._clock.callLater(self._timeout, self._timed_out)
        self.transport.write(encode_frame(Framing.LENGTH_PREFIXED, body))
        return self._reply

    def dataReceived(self, data):
        for event in self._decoder.feed(data):
            if not isinstance(event, Frame) or self._reply is None:
                self._fail("an unexpected or oversize frame")
                self.transport.abortConnection()
                return
            self._settle().callback(event.data)

    def _settle(self):
        reply, self._reply = self._reply, None
        if self._timer.active():
            self._timer.cancel()
        return reply

    def _fail(self, why):
        if self._reply is not None:
            self._settle().errback(ServiceUnavailable(f"{self._description}: {why}"))

    def _timed_out(self):
        self._fail(f"no reply within {self._timeout:g} s")
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self._fail(f"connection lost ({reason.getErrorMessage()})")
        self.closed.callback(None)


#: How our front ends start every success reply (``encode_response`` writes
#: ``type`` first).  A reply that starts this way is a success whatever
#: follows, so the load generator skips decoding payloads it does not read.
_SUCCESS_PREFIX = b'{"type":"response",'


def _outcome(frame: bytes, wants_payload: bool):
    """
    ``(session_id, payload)`` of a success reply, or raise the error it carries.

    Only calls whose payload the user reads (``wants_payload``) and replies
    that do not start like our success replies (errors, other servers'
    encodings) are decoded: JSON decoding of search results was the load
    generator's largest cost.
    """
    if not wants_payload and frame.startswith(_SUCCESS_PREFIX):
        return None, None
    reply = parse_reply(frame)
    if isinstance(reply, ErrorReply):
        raise error_for_code(reply.code, reply.message)
    return reply.session_id, reply.payload


class _User:
    """One simulated buyer or seller: its connection, session and local view."""

    def __init__(self, front: str, name: str, config: BenchConfig, rng: random.Random, reactor):
        self.front = front
        self.timeout = config.timeout
        self.reactor = reactor
        self.connection = None
        self.name = name
        self.rng = rng
        self.session_id = None
        self.items = []  # a seller's own item ids
        self.cart = {}  # a buyer's item id -> quantity

    def call(self, api, payload, wants_payload=True):
        body = encode_request(api, self.session_id, payload)
        return self.connection.request(body).addCallback(_outcome, wants_payload)

    @defer.inlineCallbacks
    def sign_in(self):
        connection = _UserConnection(self.front, self.timeout, self.reactor)
        try:
            yield connect(self.front, connection, self.timeout, self.reactor)
        except Exception as e:
            raise ServiceUnavailable(f"cannot connect to {self.front}: {e}") from None
        self.connection = connection
        credentials = {"username": self.name, "password": "bench-" + self.name}
        yield self.call("CreateAccount", credentials)
        session_id, payload = yield self.call("Login", credentials)
        self.session_id = session_id or payload.get("session_id")

    def close(self):
        if self.connection is None or self.connection.closed.called:
            return defer.succeed(None)
        self.connection.transport.loseConnection()
        return self.connection.closed


def _price(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(100, 10_000)) / 100


def _item_spec(rng: random.Random, name: str) -> dict:
    return {
        "item_name": name[:32],
        "category": rng.randrange(1, 6),
        "keywords": rng.sample(KEYWORDS, rng.randrange(1, 4)),
        "condition": rng.choice(("new", "used")),
        "price": _price(rng),
        "quantity": 1_000_000,
    }


class Bench:
    """Runs one configuration; ``run()`` fires with a ``BenchResult``."""

    def __init__(self, config: BenchConfig, reactor=None, out=sys.stderr):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.out = out
        self.tally = Tally()
        self.catalog = []  # every listed item id, shared by buyers
        self._done_ops = 0
        run_id = uuid.uuid4().hex[:8]
        seeds = random.Random(config.seed)
        self.sellers = [_User(config.seller_front, f"s{run_id}{i}", config,
                              random.Random(seeds.random()), reactor) for i in range(config.sellers)]
        self.buyers = [_User(config.buyer_front, f"b{run_id}{i}", config,
                             random.Random(seeds.random()), reactor) for i in range(config.buyers)]

    @defer.inlineCallbacks
    def run(self):
        progress = task.LoopingCall(self._progress)
        progress.clock = self.reactor
        # The generator's own collector pauses would be measured as latency.
        collector = CollectorSettings()
        try:
            yield self._setup()
            if self.config.progress:
                progress.start(1.0, now=False)
            collector.startService()
            started = time.perf_counter()
            yield defer.gatherResults(
                [self._loop(user, self._seller_op) for user in self.sellers]
                + [self._loop(user, self._buyer_op) for user in self.buyers],
                consumeErrors=True,
            )
            seconds = time.perf_counter() - started
        finally:
            if collector.running:
                collector.stopService()
            if progress.running:
                progress.stop()
                self.out.write("\n")
            yield defer.gatherResults([u.close() for u in self.sellers + self.buyers])
        tally = self.tally
        overall = tally.overall()
        return BenchResult(self.config, tally.successful, dict(tally.failed), seconds,
                           overall.p50_ms, overall.p95_ms, overall.p99_ms, overall.max_ms,
                           tally.per_api())

    @defer.inlineCallbacks
    def _setup(self):
        """Accounts, sessions and listings; the first failure is raised as itself."""
        try:
            yield defer.gatherResults([u.sign_in() for u in self.sellers + self.buyers],
                                      consumeErrors=True)
            yield defer.gatherResults([self._list_items(s) for s in self.sellers],
                                      consumeErrors=True)
        except defer.FirstError as error:
            error.subFailure.raiseException()
        self.catalog = [item for seller in self.sellers for item in seller.items]

    @defer.inlineCallbacks
    def _list_items(self, seller):
        for n in range(self.config.items_per_seller):
            _, payload = yield seller.call(
                "RegisterItemForSale", _item_spec(seller.rng, f"item {n} of {seller.name}"))
            seller.items.append(payload["item_id"])

    @defer.inlineCallbacks
    def _loop(self, user, choose):
        for _ in range(self.config.ops):
            api, payload, on_success = choose(user)
            started = time.perf_counter()
            try:
                _, reply = yield user.call(api, payload, wants_payload=on_success is not None)
            except ApiError as error:
                self.tally.failure(error.code)
                if api == "MakePurchase":
                    user.cart.clear()
                    yield user.call("ClearCart", {}).addErrback(lambda _: None)
            else:
                self.tally.success(api, time.perf_counter() - started)
                if on_success is not None:
                    on_success(reply)
            self._done_ops += 1

    def _seller_op(self, seller):
        rng = seller.rng
        kind = rng.choices(("register", "price", "units", "display"), (1, 3, 3, 3))[0]
        if kind == "register" or not seller.items:
            spec = _item_spec(rng, f"{seller.name} extra {len(seller.items)}")
            return "RegisterItemForSale", spec, lambda reply: seller.items.append(reply["item_id"])
        item_id = rng.choice(seller.items)
        if kind == "price":
            return "ChangeItemPrice", {"item_id": item_id, "price": _price(rng)}, None
        if kind == "units":
            return "UpdateUnitsForSale", {"item_id": item_id, "quantity": rng.randrange(1, 10)}, None
        return "DisplayItemsForSale", {}, None

    def _buyer_op(self, buyer):
        rng = buyer.rng
        kind = rng.choices(("search", "view", "add", "remove", "cart", "purchase"),
                           (3, 3, 2, 1, 2, 1))[0]
        if kind == "search":
            return "SearchItemsForSale", {"category": rng.randrange(1, 6),
                                          "keywords": rng.sample(KEYWORDS, 2)}, None
        if kind == "view":
            return "GetItem", {"item_id": rng.choice(self.catalog)}, None
        if kind == "cart":
            return "DisplayCart", {}, None
        if kind == "remove" and buyer.cart:
            item_id = rng.choice(sorted(buyer.cart))

            def removed(_reply):
                buyer.cart[item_id] -= 1
                if not buyer.cart[item_id]:
                    del buyer.cart[item_id]

            return "RemoveItemFromCart", {"item_id": item_id, "quantity": 1}, removed
        if kind == "purchase" and buyer.cart:
            return "MakePurchase", dict(CARD), lambda _reply: buyer.cart.clear()
        item_id = rng.choice(self.catalog)

        def added(_reply):
            buyer.cart[item_id] = buyer.cart.get(item_id, 0) + 1

        return "AddItemToCart", {"item_id": item_id, "quantity": 1}, added

    def _progress(self):
        total = self.config.ops * (self.config.buyers + self.config.sellers)
        failed = sum(self.tally.failed.values())
        self.out.write(f"\r  {self._done_ops}/{total} ops, {self.tally.successful} ok, "
                       f"{failed} failed ")
        self.out.flush()


class BenchOptions(ProgramOptions):
    synopsis = "[options]"
    longdesc = ("Load for the marketplace front ends: N buyers and M sellers, K operations "
                "each in a realistic mix; prints throughput and p50/p95/p99 latency of the "
                "successful calls, overall and per api, with a progress line, and appends a "
                "CSV row with --csv.")
    optParameters = [
        ["buyer-front", None, "tcp:127.0.0.1:7011", "Client endpoint of the buyer front end."],
        ["seller-front", None, "tcp:127.0.0.1:7010", "Client endpoint of the seller front end."],
        ["buyers", "b", 10, "Concurrent buyers.", int],
        ["sellers", "s", 10, "Concurrent sellers.", int],
        ["ops", "k", 100, "Operations per user in the timed phase.", int],
        ["items-per-seller", None, 3, "Items each seller lists before the timed phase.", int],
        ["timeout", None, 10.0, "Seconds to wait for each reply.", float],
        ["seed", None, 1, "Random seed for the operation mix.", int],
        ["label", None, "", "Label for the summary and the CSV row."],
        ["csv", None, None, "Append the result as a CSV row to this file."],
    ]
    optFlags = [["quiet", "q", "No progress line."]]

    def postOptions(self):
        for peer in ("buyer-front", "seller-front"):
            self[peer] = client_endpoint_argument(self[peer])
        for name in ("buyers", "sellers", "ops", "items-per-seller"):
            if self[name] < 0:
                raise usage.UsageError(f"--{name} must be >= 0")
        if self["sellers"] < 1 or self["items-per-seller"] < 1:
            raise usage.UsageError("at least one seller with one item is needed for buyers to shop")

    def config(self) -> BenchConfig:
        return BenchConfig(self["buyer-front"], self["seller-front"], self["buyers"],
                           self["sellers"], self["ops"], self["items-per-seller"],
                           self["timeout"], self["seed"], self["label"], not self["quiet"])


def main(argv=None):
    """Console entry point; exits 0 on a completed run, 1 if setup failed, 2 on bad options."""
    options = parse_command_line(BenchOptions(), argv)
    task.react(_run_and_report, (options,))


@defer.inlineCallbacks
def _run_and_report(reactor, options):
    try:
        result = yield Bench(options.config(), reactor).run()
    except ApiError as error:
        print(f"market-bench: setup failed: [{error.code}] {error.message}", file=sys.stderr)
        raise SystemExit(1)
    print(result.summary())
    print(result.breakdown())
    if options["csv"]:
        append_csv(options["csv"], result)
