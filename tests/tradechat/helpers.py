"""
A server protocol wired to a real service over the embedded store and a
task.Clock, driven through StringTransport: every exchange is synchronous
and deterministic.
"""

from __future__ import annotations

from twisted.internet import defer, reactor, task
from twisted.internet.testing import StringTransport

from marketplace.metrics import Counters
from marketplace.store import make_store
from marketplace.tradechat.auth import Authenticator
from marketplace.tradechat.compat import COMPAT_OPENING_BALANCE
from marketplace.tradechat.rooms import LocalRoomHub
from marketplace.tradechat.service import TradeChatConfig, TradeChatService
from protocols import tradechat_bodies as bodies
from protocols.tradechat_bodies import login_token
from protocols.nsframe import FrameDecoder, Status, encode_frame
from protocols.tradechat import TradeChatServerFactory
from protocols.turns import TurnFlusher
from tests.support.services import listeners_of, listening_port, start_service


class Peer:
    """One client connection seen from the outside of the server protocol."""

    def __init__(self, protocol, transport: StringTransport, clock: task.Clock) -> None:
        self.protocol = protocol
        self.transport = transport
        self.clock = clock
        self._decoder = FrameDecoder()
        self._req_id = 100

    def send_raw(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def send(self, request, req_id=None, flags=0) -> int:
        if req_id is None:
            self._req_id += 1
            req_id = self._req_id
        opcode, body = bodies.encode_request(request)
        self.send_raw(encode_frame(opcode, req_id, 0, body, flags))
        return req_id

    def received(self) -> list:
        """
        Frames written to this connection since the last call, once the
        reactor turn in progress has ended (when queued pushes are flushed).
        """
        self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        self._decoder.receive(data)
        return self._decoder.frames()

    def ask(self, request, req_id=None, flags=0):
        """Send one request and return its one response (pushes are kept out)."""
        req_id = self.send(request, req_id, flags)
        responses = [f for f in self.received() if f.is_response and f.req_id == req_id]
        assert len(responses) == 1, responses
        return responses[0]

    def login(self, name: str, proof=None):
        hello = bodies.decode_hello_reply(self.ask(bodies.Hello()).body)
        response = self.ask(bodies.Login(name, login_token(name, hello.nonce), proof))
        assert response.status == Status.OK, response
        return bodies.decode_login_reply(response.body)

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.disconnected


class WriteCountingTransport(StringTransport):
    """A StringTransport that keeps each write apart, to count them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class Harness:
    def __init__(self, compat: bool = False, authenticator=None, session_ttl: float = 300.0,
                 store=None, config=None, **factory_options) -> None:
        self.clock = task.Clock()
        self.store = make_store("memory", reactor=self.clock) if store is None else store
        self.flusher = TurnFlusher(self.clock)
        self.rooms = LocalRoomHub(self.flusher)
        opening = COMPAT_OPENING_BALANCE if compat else 0
        self.config = TradeChatConfig(compat, opening, session_ttl) if config is None else config
        self.service = TradeChatService(
            self.store, self.rooms, authenticator or Authenticator(), self.clock, self.config)
        self.counters = Counters()
        self.factory = TradeChatServerFactory(self.service, self.clock, self.counters,
                                              flusher=self.flusher, **factory_options)

    def connect(self, transport: StringTransport | None = None) -> Peer:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport() if transport is None else transport
        protocol.makeConnection(transport)
        return Peer(protocol, transport, self.clock)

    def end_turn(self) -> None:
        """What the reactor does once a turn's events are handled: run zero-delay calls."""
        self.clock.advance(0)

    def logged_in(self, name: str, transport: StringTransport | None = None) -> Peer:
        peer = self.connect(transport)
        peer.login(name)
        return peer


@defer.inlineCallbacks
def start_server(testcase, *arguments):
    """Run the plugin's service on a free loopback port; fire with (root service, port)."""
    from marketplace.tradechat.tap import Options, makeService
    options = Options()
    options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", *arguments])
    root = makeService(options)
    start_service(testcase, root)
    [listener] = listeners_of(root)
    port = yield listening_port(listener)
    return root, port


@defer.inlineCallbacks
def connect_client(testcase, description, **kwargs):
    """A TradeChatClient closed at cleanup."""
    from marketplace.tradechat.remote import TradeChatClient
    client = yield TradeChatClient.connect(description, reactor, timeout=10.0, **kwargs)
    testcase.addCleanup(client.close)
    return client
