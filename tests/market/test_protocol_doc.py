"""
The exchange documented in docs/protocols/market.md, replayed against a
marketplace started here: each documented request is sent as it stands
(sessions filled in), and each reply must be the documented one.
"""

from __future__ import annotations

import re

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.trial import unittest

from protocols.envelope import decode_json, encode_json
from protocols.jsonframe import Framing, FrameDecoder, encode_frame
from tests.market import market_harness
from tests.test_protocol_docs import section_table

_PLACEHOLDER = re.compile(r"^<([a-z ]+)>$")
_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
REPLY_TIMEOUT = 10.0


class _EnvelopeClient(protocol.Protocol):
    """Sends length-prefixed frames and hands each reply to the waiting Deferred."""

    def __init__(self):
        self._decoder = FrameDecoder()
        self._waiting = []

    def request(self, body: bytes) -> defer.Deferred:
        waiting = defer.Deferred()
        self._waiting.append(waiting)
        self.transport.write(encode_frame(Framing.LENGTH_PREFIXED, body))
        return waiting.addTimeout(REPLY_TIMEOUT, reactor)

    def dataReceived(self, data):
        for frame in self._decoder.feed(data):
            self._waiting.pop(0).callback(frame.data)


def fill(document, bound: dict):
    """C{document} with every bound placeholder string replaced by its value."""
    if isinstance(document, dict):
        return {key: fill(value, bound) for key, value in document.items()}
    if isinstance(document, list):
        return [fill(value, bound) for value in document]
    if isinstance(document, str) and _PLACEHOLDER.match(document):
        return bound.get(_PLACEHOLDER.match(document).group(1), document)
    return document


def match(expected, actual, bound: dict, where: str = "reply") -> None:
    """
    Compare a documented reply with an actual one.  A placeholder string
    binds to the first value it meets and must equal it afterwards; a
    session is 43 URL-safe base64 characters, and C{<time>} an ISO 8601 UTC
    time with whole seconds.
    """
    if isinstance(expected, str) and _PLACEHOLDER.match(expected):
        name = _PLACEHOLDER.match(expected).group(1)
        if name == "time":
            assert isinstance(actual, str) and _ISO_UTC.match(actual), f"{where}: {actual!r}"
        elif name in bound:
            assert actual == bound[name], f"{where}: {actual!r} is not <{name}> {bound[name]!r}"
        else:
            assert isinstance(actual, str) and _SESSION_ID.match(actual), f"{where}: {actual!r}"
            bound[name] = actual
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and list(expected) == list(actual), (
            f"{where}: members {list(actual) if isinstance(actual, dict) else actual!r}, "
            f"documented {list(expected)}")
        for key in expected:
            match(expected[key], actual[key], bound, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(expected) == len(actual), f"{where}: {actual!r}"
        for index, (left, right) in enumerate(zip(expected, actual)):
            match(left, right, bound, f"{where}[{index}]")
    else:
        assert expected == actual and type(expected) is type(actual), (
            f"{where}: {actual!r}, documented {expected!r}")


class DocumentedExchangeTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_the_documented_exchange(self):
        market = yield market_harness.start_market(self)
        clients = {}
        for role in ("seller", "buyer"):
            endpoint = endpoints.TCP4ClientEndpoint(
                reactor, "127.0.0.1", market.ports[f"{role}-front"], timeout=REPLY_TIMEOUT)
            clients[role] = yield endpoints.connectProtocol(endpoint, _EnvelopeClient())
            self.addCleanup(clients[role].transport.loseConnection)
        bound = {}
        rows = section_table("market", "### An exchange")
        self.assertEqual(list(rows), [str(number) for number in range(1, len(rows) + 1)])
        for number, (front, request, reply) in rows.items():
            body = fill(decode_json(request.encode()), bound)
            actual = yield clients[front].request(encode_json(body))
            try:
                match(decode_json(reply.encode()), decode_json(actual), bound)
            except AssertionError as error:
                self.fail(f"row {number}: {error}\n  got {actual.decode()}")

