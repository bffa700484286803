"""
The contract every room hub (L{IRoomHub}) keeps, in-process or across
processes: one suite, mixed into a test case per hub.

A test case provides C{make_hub()}, a Deferred firing with a started hub
whose flushes run on the real reactor.
Deliveries are awaited on the targets themselves; a message that must
not arrive is checked after a later one that must has arrived, on the
same target, which every hub delivers in publish order.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from zope.interface import implementer
from zope.interface.verify import verifyObject

from marketplace.tradechat.rooms import IPushTarget, IRoomHub
from protocols import tradechat_bodies as bodies
from protocols.nsframe import FrameDecoder, Opcode

WAIT = 10.0


@implementer(IPushTarget)
class RecordingTarget:
    """A connection that decodes what it is sent and lets a test wait for it."""

    def __init__(self) -> None:
        self.outbox: list[bytes] = []
        self.pushes: list[bodies.ChatBroadcast] = []
        self._decoder = FrameDecoder()
        self._waiters: list[tuple[int, defer.Deferred]] = []

    def flush(self) -> None:
        self._decoder.receive(b"".join(self.outbox))
        self.outbox.clear()
        for frame in self._decoder.frames():
            assert frame.opcode == Opcode.CHAT_BROADCAST, frame
            self.pushes.append(bodies.decode_chat_broadcast(frame.body))
        waiting, self._waiters = self._waiters, []
        for count, waiter in waiting:
            if len(self.pushes) >= count:
                waiter.callback(self.pushes)
            else:
                self._waiters.append((count, waiter))

    def received(self, count: int) -> defer.Deferred:
        """Fire with the pushes once there are at least C{count} of them."""
        if len(self.pushes) >= count:
            return defer.succeed(self.pushes)
        waiter = defer.Deferred()
        self._waiters.append((count, waiter))
        return waiter.addTimeout(WAIT, reactor)

    def messages(self) -> list[bytes]:
        return [push.message for push in self.pushes]


class RoomHubContract:
    def make_hub(self) -> defer.Deferred:
        raise NotImplementedError

    @defer.inlineCallbacks
    def member(self, hub, user_id: int, room: int) -> defer.Deferred:
        target = RecordingTarget()
        hub.attach(user_id, target)
        yield hub.join(user_id, room)
        return target

    @defer.inlineCallbacks
    def test_provides_the_interface(self):
        hub = yield self.make_hub()
        self.assertTrue(verifyObject(IRoomHub, hub))

    @defer.inlineCallbacks
    def test_every_connection_of_every_member_receives_once(self):
        hub = yield self.make_hub()
        alice = yield self.member(hub, 1, 10)
        alice_again = RecordingTarget()
        hub.attach(1, alice_again)
        bob = yield self.member(hub, 2, 10)
        yield hub.publish(10, 1, b"hello")
        for target in (alice, alice_again, bob):
            pushes = yield target.received(1)
            self.assertEqual(pushes, [bodies.ChatBroadcast(10, 1, b"hello")])

    @defer.inlineCallbacks
    def test_only_members_of_the_room_receive(self):
        hub = yield self.make_hub()
        inside = yield self.member(hub, 1, 10)
        outside = yield self.member(hub, 2, 11)
        yield hub.publish(10, 1, b"for room 10")
        yield hub.publish(11, 1, b"for room 11")
        yield inside.received(1)
        yield outside.received(1)
        self.assertEqual(inside.messages(), [b"for room 10"])
        self.assertEqual(outside.messages(), [b"for room 11"])

    @defer.inlineCallbacks
    def test_publish_order_is_kept_per_sender(self):
        hub = yield self.make_hub()
        listener = yield self.member(hub, 1, 10)
        sent = [f"{sender}:{n}".encode() for n in range(30) for sender in (7, 8)]
        for message in sent:
            yield hub.publish(10, int(message[:1]), message)
        yield listener.received(len(sent))
        for sender in (b"7", b"8"):
            self.assertEqual([m for m in listener.messages() if m.startswith(sender)],
                             [m for m in sent if m.startswith(sender)])

    @defer.inlineCallbacks
    def test_leave_stops_delivery_and_says_whether_one_was_a_member(self):
        hub = yield self.make_hub()
        leaver = yield self.member(hub, 1, 10)
        yield self.member(hub, 1, 12)
        self.assertTrue(hub.leave(1, 10))
        self.assertFalse(hub.leave(1, 10))
        self.assertFalse(hub.leave(1, 99))
        yield hub.publish(10, 2, b"after leaving")
        yield hub.publish(12, 2, b"still here")
        yield leaver.received(1)
        self.assertEqual(leaver.messages(), [b"still here"])

    @defer.inlineCallbacks
    def test_a_user_whose_last_connection_detaches_leaves_every_room(self):
        hub = yield self.make_hub()
        first = yield self.member(hub, 1, 10)
        second = RecordingTarget()
        hub.attach(1, second)
        hub.detach(1, first)
        yield hub.publish(10, 2, b"to the second connection")
        yield second.received(1)
        hub.detach(1, second)
        self.assertFalse(hub.leave(1, 10))
        again = yield self.member(hub, 1, 12)
        yield hub.publish(10, 2, b"nobody")
        yield hub.publish(12, 2, b"marker")
        yield again.received(1)
        self.assertEqual(again.messages(), [b"marker"])
        self.assertEqual(first.messages(), [])

    @defer.inlineCallbacks
    def test_rejoining_after_the_room_emptied_delivers_again(self):
        hub = yield self.make_hub()
        target = yield self.member(hub, 1, 10)
        hub.leave(1, 10)
        yield hub.join(1, 10)
        yield hub.publish(10, 2, b"back")
        yield target.received(1)
        self.assertEqual(target.messages(), [b"back"])
