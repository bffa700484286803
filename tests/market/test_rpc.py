"""
Tests for marketplace.market.rpc against real envelope servers on 127.0.0.1.
"""

import struct

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from marketplace.market.errors import (
    ApiError,
    ClientError,
    NotFound,
    ServiceUnavailable,
)
from marketplace.market.rpc import ServiceClient
from marketplace.metrics import Counters
from marketplace.net import Listener
from protocols.envelope import EncodedPayload, encode_response
from protocols.jsonframe import Framing, encode_frame
from protocols.envelope_server import EnvelopeServerFactory, api_router
from tests.support.services import listening_port, start_service


class _RealNetworkFakeTime:
    """The real reactor's sockets with a test-controlled clock, for timeouts."""

    def __init__(self, clock):
        self._clock = clock

    def callLater(self, *args, **kwargs):
        return self._clock.callLater(*args, **kwargs)

    def seconds(self):
        return self._clock.seconds()

    def __getattr__(self, name):
        return getattr(reactor, name)


class FakeService:
    """An envelope server whose handlers the tests script."""

    def __init__(self, testcase):
        self.testcase = testcase
        self.counters = Counters()
        self.calls = []
        self.arrivals = defer.DeferredQueue()
        self.protocols = []
        self.hanging = []
        self.closed = defer.DeferredQueue()
        handlers = {
            "Echo": self.echo,
            "Refuse": self.refuse,
            "Odd": self.odd,
            "Hang": self.hang_forever,
            "DropOnce": self.drop_once,
        }
        self.factory = EnvelopeServerFactory(
            api_router(handlers), counters=self.counters, max_in_flight=16
        )
        build = self.factory.buildProtocol

        def build_and_track(address):
            protocol = build(address)
            self.protocols.append(protocol)
            lost = protocol.connectionLost

            def connection_lost(reason):
                lost(reason)
                self.closed.put(protocol)

            protocol.connectionLost = connection_lost
            return protocol

        self.factory.buildProtocol = build_and_track

    @defer.inlineCallbacks
    def start(self, port=0):
        self.listener = Listener(f"tcp:{port}:interface=127.0.0.1", self.factory)
        start_service(self.testcase, self.listener)
        self.testcase.addCleanup(self.abort_connections)
        self.port = yield listening_port(self.listener)
        return self.port

    def abort_connections(self):
        """
        Drop what is still open at the end of a test at once: a hanging
        handler never answers, so a stopping listener would wait out its
        grace period for it.
        """
        for protocol in self.protocols:
            if protocol.transport.connected:
                protocol.transport.abortConnection()

    def stop(self):
        for protocol in self.protocols:
            protocol.transport.loseConnection()
        return self.listener.stopService()

    def _arrived(self, request):
        self.calls.append(request)
        self.arrivals.put(request)

    def echo(self, request):
        self._arrived(request)
        return request.session_id, {"echo": request.payload}

    def refuse(self, request):
        self._arrived(request)
        raise ClientError("quantity must be > 0")

    def odd(self, request):
        self._arrived(request)
        error = ApiError("teapot")
        error.code = "I_AM_A_TEAPOT"
        raise error

    def hang_forever(self, request):
        self._arrived(request)
        self.hanging.append(defer.Deferred())
        return self.hanging[-1]

    def drop_once(self, request):
        self._arrived(request)
        if len(self.calls) == 1:
            for protocol in self.protocols:
                protocol.transport.abortConnection()
            return defer.Deferred()
        return None, {"attempt": len(self.calls)}


class ServiceClientTests(unittest.TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):
        self.service = FakeService(self)
        port = yield self.service.start()
        self.client = self.make_client(port)

    def make_client(self, port, **options):
        options.setdefault("retry_delay", 0.01)
        client = ServiceClient(f"tcp:127.0.0.1:{port}", **options)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def test_call_returns_session_and_payload(self):
        result = yield self.client.call("Echo", {"n": 1}, session_id="s1")
        self.assertEqual(result, ("s1", {"echo": {"n": 1}}))

    @defer.inlineCallbacks
    def test_encoded_call_passes_the_payload_on_undecoded(self):
        pipelined = [self.client.call("Echo", {"n": n}, encoded=n % 2 == 1) for n in range(4)]
        results = yield defer.gatherResults(pipelined)
        self.assertEqual(results[0], (None, {"echo": {"n": 0}}))
        self.assertEqual(results[1], (None, b'{"echo":{"n":1}}'))
        self.assertIsInstance(results[3][1], EncodedPayload)
        yield self.assertFailure(self.client.call("Refuse", {}, encoded=True), ClientError)

    @defer.inlineCallbacks
    def test_error_reply_raises_matching_error(self):
        error = yield self.assertFailure(self.client.call("Refuse", {}), ClientError)
        self.assertEqual(error.message, "quantity must be > 0")

    @defer.inlineCallbacks
    def test_unknown_api(self):
        yield self.assertFailure(self.client.call("Nope", {}), NotFound)

    @defer.inlineCallbacks
    def test_unknown_code_kept(self):
        error = yield self.assertFailure(self.client.call("Odd", {}), ApiError)
        self.assertEqual((error.code, error.message), ("I_AM_A_TEAPOT", "teapot"))

    @defer.inlineCallbacks
    def test_error_replies_never_retried(self):
        yield self.assertFailure(self.client.call("Refuse", {}, idempotent=True), ClientError)
        self.assertEqual(len(self.service.calls), 1)

    @defer.inlineCallbacks
    def test_sequential_calls_reuse_one_connection(self):
        for n in range(5):
            yield self.client.call("Echo", {"n": n})
        self.assertEqual(self.service.counters.counts["connections"], 1)

    @defer.inlineCallbacks
    def test_concurrent_calls_bounded_by_pool(self):
        client = self.make_client(self.service.port, pool_size=3)
        results = yield defer.gatherResults(
            [client.call("Echo", {"n": n}) for n in range(30)]
        )
        self.assertEqual([payload["echo"]["n"] for _, payload in results], list(range(30)))
        self.assertLessEqual(self.service.counters.counts["connections"], 3)

    @defer.inlineCallbacks
    def test_concurrent_calls_fill_one_connection_first(self):
        client = self.make_client(self.service.port, pool_size=3)
        yield client.call("Echo", {})
        results = yield defer.gatherResults(
            [client.call("Echo", {"n": n}) for n in range(20)]
        )
        self.assertEqual([payload["echo"]["n"] for _, payload in results], list(range(20)))
        self.assertEqual(self.service.counters.counts["connections"], 1)

    @defer.inlineCallbacks
    def test_service_down_then_recovers(self):
        port = self.service.port
        yield self.client.call("Echo", {})
        yield self.service.stop()
        error = yield self.assertFailure(self.client.call("Echo", {}), ServiceUnavailable)
        self.assertIn("unavailable", error.message)
        self.assertEqual(error.code, "SERVICE_UNAVAILABLE")
        restarted = FakeService(self)
        yield restarted.start(port)
        result = yield self.client.call("Echo", {"back": True})
        self.assertEqual(result[1], {"echo": {"back": True}})

    @defer.inlineCallbacks
    def test_lost_connection_fails_non_idempotent_call_once(self):
        yield self.assertFailure(self.client.call("DropOnce", {}), ServiceUnavailable)
        self.assertEqual(len(self.service.calls), 1)

    @defer.inlineCallbacks
    def test_lost_connection_retries_idempotent_call(self):
        result = yield self.client.call("DropOnce", {}, idempotent=True)
        self.assertEqual(result[1], {"attempt": 2})

    @defer.inlineCallbacks
    def test_close_closes_connections(self):
        yield self.client.call("Echo", {})
        yield self.client.close()
        yield self.assertFailure(self.client.call("Echo", {}), ServiceUnavailable)

    def test_bad_endpoint_description_fails_at_construction(self):
        self.assertRaises(ValueError, ServiceClient, "nonsense:1")


class TimeoutTests(unittest.TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):
        self.service = FakeService(self)
        port = yield self.service.start()
        self.clock = Clock()
        self.client = ServiceClient(
            f"tcp:127.0.0.1:{port}",
            timeout=2.0,
            retries=1,
            retry_delay=0.5,
            reactor=_RealNetworkFakeTime(self.clock),
        )
        self.addCleanup(self.client.close)

    @defer.inlineCallbacks
    def test_no_reply_in_time_is_unavailable_without_retry(self):
        call = self.client.call("Hang", {})
        yield self.service.arrivals.get()
        self.clock.advance(2.0)
        error = yield self.assertFailure(call, ServiceUnavailable)
        self.assertIn("no reply within 2 s", error.message)
        self.assertEqual(len(self.service.calls), 1)

    @defer.inlineCallbacks
    def test_idempotent_call_retried_after_timeout(self):
        call = self.client.call("Hang", {}, idempotent=True)
        yield self.service.arrivals.get()
        self.clock.advance(2.0)
        self.clock.advance(0.5)
        yield self.service.arrivals.get()
        self.clock.advance(2.0)
        yield self.assertFailure(call, ServiceUnavailable)
        self.assertEqual(len(self.service.calls), 2)

    @defer.inlineCallbacks
    def test_cancelled_call_is_not_retried(self):
        call = self.client.call("Hang", {}, idempotent=True)
        yield self.service.arrivals.get()
        call.cancel()
        yield self.assertFailure(call, defer.CancelledError)
        self.clock.advance(10)
        self.assertEqual(len(self.service.calls), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_retired_connection_closes_once_its_calls_are_answered(self):
        slow = self.client.call("Hang", {})
        yield self.service.arrivals.get()
        self.clock.advance(1.5)
        pipelined = self.client.call("Echo", {"n": 1})
        yield self.service.arrivals.get()
        self.clock.advance(0.5)
        yield self.assertFailure(slow, ServiceUnavailable)
        self.service.hanging[0].callback((None, {"late": True}))
        result = yield pipelined
        self.assertEqual(result[1], {"echo": {"n": 1}})
        yield self.service.closed.get()

    @defer.inlineCallbacks
    def test_timed_out_connection_is_not_reused(self):
        call = self.client.call("Hang", {})
        yield self.service.arrivals.get()
        self.clock.advance(2.0)
        yield self.assertFailure(call, ServiceUnavailable)
        yield self.client.call("Echo", {})
        self.assertEqual(self.service.counters.counts["connections"], 2)


class _ScriptedService(Protocol):
    """
    A DB service that answers each request with the next of C{replies}
    (raw bytes, as sent), then with a well-formed echo of nothing.
    """

    def __init__(self, replies):
        self.replies = replies

    def dataReceived(self, data):
        reply = self.replies.pop(0) if self.replies else encode_frame(
            Framing.LENGTH_PREFIXED, encode_response("Echo", None, {"echo": {}}))
        self.transport.write(reply)


class MalformedReplyTests(unittest.TestCase):
    """
    A DB service is a peer like any other: a reply that is no reply fails
    the call it was meant for as unavailable, closes that connection, is
    logged, and leaves the client working on a fresh connection.
    """

    timeout = 20

    @defer.inlineCallbacks
    def serve(self, *replies):
        scripted = list(replies)
        factory = Factory.forProtocol(lambda: _ScriptedService(scripted))
        listener = start_service(self, Listener("tcp:0:interface=127.0.0.1", factory))
        port = yield listening_port(listener)
        client = ServiceClient(f"tcp:127.0.0.1:{port}", retry_delay=0.01)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def assertRefusedThenRecovers(self, reply, logged):
        client = yield self.serve(reply)
        with capturedLogs() as events:
            error = yield self.assertFailure(client.call("Echo", {}), ServiceUnavailable)
        self.assertEqual(error.code, "SERVICE_UNAVAILABLE")
        warnings = [formatEvent(event) for event in events]
        self.assertTrue(any(logged in line for line in warnings), warnings)
        self.assertEqual((yield client.call("Echo", {}))[1], {"echo": {}})

    def test_a_reply_that_is_not_json(self):
        return self.assertRefusedThenRecovers(
            encode_frame(Framing.LENGTH_PREFIXED, b"{not json"), "closing a connection")

    def test_a_reply_that_is_not_an_envelope(self):
        return self.assertRefusedThenRecovers(
            encode_frame(Framing.LENGTH_PREFIXED, b'["a", "list"]'), "closing a connection")

    def test_a_frame_larger_than_any_reply(self):
        return self.assertRefusedThenRecovers(struct.pack(">I", 2**31 - 1) + b"{",
                                              "oversize frame")
