"""
Tests for protocols.envelope_server over StringTransport and a fake clock.
"""

import json
import struct

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from marketplace.market.errors import ClientError, Timeout
from marketplace.metrics import Counters
from protocols.envelope import encode_request
from protocols.envelope_server import EnvelopeServerFactory, api_router
from protocols.jsonframe import Frame, FrameDecoder, Framing, encode_frame


def length_prefixed(api, payload=None, session_id=None):
    return encode_frame(Framing.LENGTH_PREFIXED, encode_request(api, session_id, payload or {}))


def line(api, payload=None, session_id=None):
    return encode_frame(Framing.NEWLINE, encode_request(api, session_id, payload or {}))


class Harness:
    """A protocol on a StringTransport with a dispatch the test controls."""

    def __init__(self, testcase, dispatch=None, **options):
        self.clock = Clock()
        self.counters = Counters()
        self.calls = []
        self.deferreds = {}
        self.factory = EnvelopeServerFactory(
            dispatch or self.dispatch, counters=self.counters, reactor=self.clock, **options
        )
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def dispatch(self, request):
        """Echo, or wait on a Deferred the test fires, keyed by payload "wait"."""
        self.calls.append(request)
        key = request.payload.get("wait")
        if key is not None:
            self.deferreds[key] = defer.Deferred()
            return self.deferreds[key].addCallback(lambda _: (None, {"done": key}))
        if request.api == "Fail":
            raise ClientError("no such item")
        if request.api == "Crash":
            raise RuntimeError("bug")
        if request.api == "Login":
            return defer.succeed(("session-1", {"buyer_id": 7}))
        return (None, {"echo": request.payload})

    def replies(self):
        data = self.transport.value()
        self.transport.clear()
        if data[:1] == b"\x00":
            frames = FrameDecoder(framing=Framing.LENGTH_PREFIXED).feed(data)
        else:
            frames = FrameDecoder(framing=Framing.NEWLINE).feed(data)
        return [json.loads(frame.data) for frame in frames if isinstance(frame, Frame)]

    def send(self, data):
        self.protocol.dataReceived(data)
        return self.replies()


class ReplyTests(unittest.TestCase):
    def test_length_prefixed_request_gets_length_prefixed_reply(self):
        harness = Harness(self)
        harness.protocol.dataReceived(length_prefixed("Login"))
        raw = harness.transport.value()
        (length,) = struct.unpack(">I", raw[:4])
        self.assertEqual(len(raw), 4 + length)
        self.assertEqual(
            json.loads(raw[4:]),
            {"type": "response", "api": "Login", "session_id": "session-1", "payload": {"buyer_id": 7}},
        )

    def test_newline_request_gets_newline_reply(self):
        harness = Harness(self)
        harness.protocol.dataReceived(line("Echo", {"x": 1}))
        raw = harness.transport.value()
        self.assertTrue(raw.endswith(b"\n"))
        self.assertEqual(json.loads(raw)["payload"], {"echo": {"x": 1}})

    def test_api_error_reply_keeps_connection(self):
        harness = Harness(self)
        [reply] = harness.send(line("Fail", session_id="s9"))
        self.assertEqual(
            reply,
            {"type": "error", "api": "Fail", "session_id": "s9",
             "error": {"code": "CLIENT_ERROR", "message": "no such item"}},
        )
        self.assertFalse(harness.transport.disconnecting)
        self.assertEqual(harness.counters.counts["errors.CLIENT_ERROR"], 1)

    def test_unexpected_exception_is_server_error_logged_and_counted(self):
        harness = Harness(self)
        [reply] = harness.send(line("Crash"))
        self.assertEqual(reply["error"]["code"], "SERVER_ERROR")
        self.assertEqual(harness.counters.counts["server_errors"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(harness.transport.disconnecting)

    def test_unencodable_payload_is_server_error(self):
        harness = Harness(self, dispatch=lambda request: (None, {"bad": object()}))
        [reply] = harness.send(line("Any"))
        self.assertEqual(reply["error"]["code"], "SERVER_ERROR")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_malformed_json_is_bad_request(self):
        harness = Harness(self)
        [reply] = harness.send(b"{not json\n")
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply["error"]["code"], "BAD_REQUEST")
        self.assertIsNone(reply["api"])
        self.assertEqual(harness.calls, [])
        self.assertFalse(harness.transport.disconnecting)

    def test_lone_surrogate_is_bad_request_and_the_connection_goes_on(self):
        harness = Harness(self)
        replies = harness.send(
            b'{"type":"request","api":"\\ud800","session_id":"\\udfff","payload":{}}\n'
            + line("Echo"))
        self.assertEqual([reply["type"] for reply in replies], ["error", "response"])
        self.assertEqual(replies[0]["error"]["code"], "BAD_REQUEST")
        self.assertEqual((replies[0]["api"], replies[0]["session_id"]), (None, None))
        self.assertFalse(harness.transport.disconnecting)

    def test_bad_envelope_echoes_api_and_session(self):
        harness = Harness(self)
        [reply] = harness.send(b'{"type":"request","api":"GetItem","session_id":"s1"}\n')
        self.assertEqual((reply["api"], reply["session_id"]), ("GetItem", "s1"))
        self.assertEqual(reply["error"]["code"], "BAD_REQUEST")

    def test_bad_session_id_is_echoed_as_sent(self):
        harness = Harness(self)
        [reply] = harness.send(b'{"type":"request","api":"GetItem","session_id":42,"payload":{}}\n')
        self.assertEqual((reply["api"], reply["session_id"]), ("GetItem", 42))
        self.assertEqual(reply["error"]["code"], "BAD_REQUEST")

    def test_unknown_api_via_router(self):
        harness = Harness(self, dispatch=api_router({"Known": lambda request: (None, {})}))
        [reply] = harness.send(line("Nope"))
        self.assertEqual(reply["error"], {"code": "404_NOT_FOUND", "message": "unknown api 'Nope'"})

    def test_router_calls_handler(self):
        harness = Harness(self, dispatch=api_router({"Known": lambda request: (None, {"ok": 1})}))
        [reply] = harness.send(line("Known"))
        self.assertEqual(reply["payload"], {"ok": 1})

    def test_oversize_frame_is_error_then_connection_continues(self):
        harness = Harness(self, max_frame=64)
        replies = harness.send(b"{" + b" " * 100 + b"}\n" + line("Echo"))
        self.assertEqual([r["type"] for r in replies], ["error", "response"])
        self.assertEqual(replies[0]["error"]["code"], "FRAME_TOO_LARGE")
        self.assertEqual(harness.counters.counts["errors.FRAME_TOO_LARGE"], 1)

    def test_oversize_length_prefixed_frame_skipped(self):
        harness = Harness(self, max_frame=64)
        replies = harness.send(struct.pack(">I", 1000) + b"x" * 1000 + length_prefixed("Echo"))
        self.assertEqual([r["type"] for r in replies], ["error", "response"])


class PipeliningTests(unittest.TestCase):
    def test_replies_in_request_order_and_run_one_at_a_time(self):
        harness = Harness(self)
        harness.protocol.dataReceived(
            line("A", {"wait": "a"}) + line("B", {"wait": "b"}) + b"garbage\n"
        )
        self.assertEqual([c.api for c in harness.calls], ["A"])
        self.assertEqual(harness.replies(), [])
        harness.deferreds["a"].callback(None)
        self.assertEqual([c.api for c in harness.calls], ["A", "B"])
        self.assertEqual([r["payload"] for r in harness.replies()], [{"done": "a"}])
        harness.deferreds["b"].callback(None)
        replies = harness.replies()
        self.assertEqual([r["type"] for r in replies], ["response", "error"])

    def test_concurrent_dispatch_still_replies_in_order(self):
        harness = Harness(self, max_in_flight=8)
        harness.protocol.dataReceived(line("A", {"wait": "a"}) + line("B", {"wait": "b"}))
        self.assertEqual([c.api for c in harness.calls], ["A", "B"])
        harness.deferreds["b"].callback(None)
        self.assertEqual(harness.replies(), [])
        harness.deferreds["a"].callback(None)
        self.assertEqual([r["api"] for r in harness.replies()], ["A", "B"])

    def test_backlog_pauses_reading_then_resumes(self):
        harness = Harness(self, max_queued=2)
        harness.protocol.dataReceived(line("A", {"wait": "a"}) + line("B", {"wait": "b"}))
        self.assertEqual(harness.transport.producerState, "paused")
        harness.deferreds["a"].callback(None)
        self.assertEqual(harness.transport.producerState, "producing")

    def test_peer_not_reading_stops_dispatch(self):
        harness = Harness(self)
        harness.protocol.pauseProducing()
        self.assertEqual(harness.transport.producerState, "paused")
        harness.protocol.dataReceived(line("A"))
        self.assertEqual(harness.calls, [])
        harness.protocol.resumeProducing()
        self.assertEqual([c.api for c in harness.calls], ["A"])
        self.assertEqual(harness.transport.producerState, "producing")

    def test_connection_lost_cancels_running_dispatch(self):
        harness = Harness(self)
        harness.protocol.dataReceived(line("A", {"wait": "a"}) + line("B"))
        harness.protocol.connectionLost(None)
        self.assertTrue(harness.deferreds["a"].called)
        self.assertEqual([c.api for c in harness.calls], ["A"])
        self.assertEqual(harness.transport.value(), b"")


    def test_a_request_cancelled_by_the_disconnect_is_not_a_timeout(self):
        """Its client went away: counted as abandoned, not as a TIMEOUT reply nobody got."""
        harness = Harness(self)
        harness.protocol.dataReceived(line("A", {"wait": "a"}))
        harness.protocol.connectionLost(None)
        counts = harness.counters.counts
        self.assertEqual((counts["abandoned_requests"], counts["errors.TIMEOUT"]), (1, 0))
        self.assertNotIn("requests|UNKNOWN|TIMEOUT", harness.counters.flat())

class TimeoutTests(unittest.TestCase):
    def test_request_timeout_replies_timeout(self):
        harness = Harness(self, request_timeout=5)
        harness.protocol.dataReceived(line("A", {"wait": "a"}) + line("B"))
        harness.clock.advance(5)
        replies = harness.replies()
        self.assertEqual([r["type"] for r in replies], ["error", "response"])
        self.assertEqual(replies[0]["error"]["code"], "TIMEOUT")

    def test_a_dispatch_may_answer_its_timeout_with_its_own_error(self):
        def dispatch(request):
            return defer.Deferred(lambda d: d.errback(Timeout("still going", key="k1")))

        harness = Harness(self, dispatch=dispatch, request_timeout=5)
        harness.protocol.dataReceived(line("A"))
        harness.clock.advance(5)
        [reply] = harness.replies()
        self.assertEqual(reply["error"], {"code": "TIMEOUT", "message": "still going", "key": "k1"})

    def test_idle_connection_closed(self):
        harness = Harness(self, idle_timeout=60)
        harness.clock.advance(59)
        harness.protocol.dataReceived(line("A"))
        harness.clock.advance(59)
        self.assertFalse(harness.transport.disconnecting)
        harness.clock.advance(1)
        self.assertTrue(harness.transport.disconnecting)
        self.assertEqual(harness.counters.counts["idle_timeouts"], 1)

    def test_idle_timer_waits_while_the_peer_does_not_read(self):
        """
        The server stopped reading a peer that does not read its replies:
        that is no idleness of the peer's, and the timer waits.
        """
        harness = Harness(self, idle_timeout=60)
        harness.clock.advance(30)
        harness.protocol.pauseProducing()
        harness.clock.advance(600)
        self.assertFalse(harness.transport.disconnecting)
        harness.protocol.resumeProducing()
        harness.clock.advance(29)
        self.assertFalse(harness.transport.disconnecting)
        harness.clock.advance(1)
        self.assertTrue(harness.transport.disconnecting)

    def test_idle_timer_waits_while_a_reply_is_owed(self):
        """A slow service is no idle client: the timer counts from the reply."""
        harness = Harness(self, idle_timeout=60, request_timeout=600)
        harness.protocol.dataReceived(line("A", {"wait": "k"}))
        harness.clock.advance(300)
        self.assertFalse(harness.transport.disconnecting)
        harness.deferreds["k"].callback(None)
        self.assertEqual(len(harness.replies()), 1)
        harness.clock.advance(59)
        self.assertFalse(harness.transport.disconnecting)
        harness.clock.advance(1)
        self.assertTrue(harness.transport.disconnecting)

    def test_half_sent_frame_times_out(self):
        harness = Harness(self, frame_timeout=10)
        harness.protocol.dataReceived(b'{"type":')
        harness.clock.advance(9)
        harness.protocol.dataReceived(b'"req')
        harness.clock.advance(1)
        [reply] = harness.replies()
        self.assertEqual(reply["error"]["code"], "TIMEOUT")
        self.assertTrue(harness.transport.disconnecting)
        self.assertEqual(harness.counters.counts["frame_timeouts"], 1)

    def test_completed_frame_cancels_frame_timer(self):
        harness = Harness(self, frame_timeout=10)
        harness.protocol.dataReceived(b'{"type":"request",')
        harness.protocol.dataReceived(b'"api":"A","payload":{}}\n')
        harness.clock.advance(10)
        self.assertFalse(harness.transport.disconnecting)
        self.assertEqual(harness.counters.counts["frame_timeouts"], 0)

    def test_steady_sender_in_small_pieces_is_never_cut_off(self):
        harness = Harness(self, frame_timeout=30)
        frame = line("A")
        harness.protocol.dataReceived(frame[:10])
        for _ in range(10):
            harness.clock.advance(20)
            harness.protocol.dataReceived(frame[10:] + frame[:10])
        self.assertFalse(harness.transport.disconnecting)
        self.assertEqual(len(harness.replies()), 10)
        harness.clock.advance(30)
        self.assertTrue(harness.transport.disconnecting)
        self.assertEqual(harness.counters.counts["frame_timeouts"], 1)

    def test_connection_lost_stops_timers(self):
        harness = Harness(self)
        harness.protocol.dataReceived(b'{"partial')
        harness.protocol.connectionLost(None)
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class FactoryTests(unittest.TestCase):
    def test_frame_cap_validated(self):
        self.assertRaises(ValueError, EnvelopeServerFactory, lambda r: None, max_frame=0)

    def test_connections_counted(self):
        harness = Harness(self)
        self.assertEqual(harness.counters.counts["connections"], 1)
