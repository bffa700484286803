"""
Room membership and chat fan-out.

Membership belongs to a user, not to a connection: a message reaches every
connection of every member, including the sender's other connections.  A
push is encoded once and the same bytes are queued for every connection.

Pushes are queued in each connection's outbox and the connections are
flushed by a L{protocols.turns.TurnFlusher} once the reactor has handled the
current turn's events, before it waits for anything: a connection that several
chats (and its own replies) reach in one turn gets them in one write, and
each connection's byte stream keeps the order in which its frames were
produced.

L{IRoomHub} is the seam for multi-process workers: this in-process hub
delivers to the connections of this process; the pub/sub hub
(L{marketplace.tradechat.pubsub}: one channel per room, each process
subscribed to the rooms its own users are in and delivering to its own
connections) implements the same interface without touching the protocol.
One contract suite (tests/tradechat/hub_contract.py) runs against both.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface, implementer

from protocols.nsframe import Opcode, encode_frame
from protocols.tradechat_bodies import ChatBroadcast, encode_chat_broadcast


class IPushTarget(Interface):
    """One connection that can receive pushes."""

    outbox = Attribute(
        "The list of encoded frames queued for this connection, oldest first.  The hub "
        "appends pushes to it; the same list object for the connection's whole life.")

    def flush():
        """
        Write the queued frames to the connection in one write and empty the
        outbox; nothing when it is empty.
        """


class IRoomHub(Interface):
    def attach(user_id, target):
        """C{target} (an L{IPushTarget}) is a logged-in connection of C{user_id}."""

    def detach(user_id, target):
        """C{target} logged out or closed; a user with no connection left leaves every room."""

    def join(user_id, room):
        """
        Make C{user_id} a member of C{room}.

        @return: C{None}, or a Deferred firing once messages published to
            C{room} from now on reach the member (a hub across processes
            must first subscribe).
        """

    def leave(user_id, room):
        """@return: whether C{user_id} was a member of C{room}."""

    def is_member(user_id, room):
        """@return: whether C{user_id} is a member of C{room} (may it chat there)."""

    def publish(room, from_user_id, message):
        """
        Push C{message} to every connection of every member of C{room}, in
        publish order per sender.

        @return: how many connections it was queued for here, or a Deferred
            firing once the message is on its way to other processes (and
            failing if it could not be sent).
        """


@implementer(IRoomHub)
class LocalRoomHub:
    def __init__(self, flusher) -> None:
        self._flusher = flusher
        self._members: dict[int, set[int]] = {}
        self._rooms_of: dict[int, set[int]] = {}
        self._targets_of: dict[int, set] = {}
        # room -> (its targets' outbox appends, their flush methods)
        self._fanout: dict[int, tuple[tuple, tuple]] = {}

    def attach(self, user_id: int, target) -> None:
        self._targets_of.setdefault(user_id, set()).add(target)
        self._invalidate(self._rooms_of.get(user_id, ()))

    def detach(self, user_id: int, target) -> None:
        targets = self._targets_of.get(user_id)
        if targets is None:
            return
        targets.discard(target)
        if targets:
            self._invalidate(self._rooms_of.get(user_id, ()))
            return
        del self._targets_of[user_id]
        for room in self._rooms_of.pop(user_id, ()):
            members = self._members[room]
            members.discard(user_id)
            if not members:
                del self._members[room]
                self._room_vacated(room)
            self._fanout.pop(room, None)

    def join(self, user_id: int, room: int) -> None:
        self._members.setdefault(room, set()).add(user_id)
        self._rooms_of.setdefault(user_id, set()).add(room)
        self._fanout.pop(room, None)

    def leave(self, user_id: int, room: int) -> bool:
        members = self._members.get(room)
        if members is None or user_id not in members:
            return False
        members.discard(user_id)
        if not members:
            del self._members[room]
            self._room_vacated(room)
        rooms = self._rooms_of[user_id]
        rooms.discard(room)
        if not rooms:
            del self._rooms_of[user_id]
        self._fanout.pop(room, None)
        return True

    def is_member(self, user_id: int, room: int) -> bool:
        return user_id in self._members.get(room, ())

    def members(self, room: int) -> frozenset:
        return frozenset(self._members.get(room, ()))

    def publish(self, room: int, from_user_id: int, message: bytes) -> int:
        # The fan-out holds each target's bound outbox append and flush,
        # rebuilt only when membership or connections change: one chat to a
        # busy room is hundreds of appends, so the loop does nothing else.
        fanout = self._fanout.get(room)
        if fanout is None:
            targets = [target
                       for user_id in self._members.get(room, ())
                       for target in self._targets_of.get(user_id, ())]
            fanout = self._fanout[room] = (tuple(t.outbox.append for t in targets),
                                           tuple(t.flush for t in targets))
        appends, flushes = fanout
        if not appends:
            return 0
        data = encode_frame(Opcode.CHAT_BROADCAST, 0, 0,
                            encode_chat_broadcast(ChatBroadcast(room, from_user_id, message)))
        for append in appends:
            append(data)
        self._flusher.schedule(flushes, fan_out=True)
        return len(appends)

    def _room_vacated(self, room: int) -> None:
        """C{room} has no member left in this process (a hook for hubs across processes)."""

    def _invalidate(self, rooms) -> None:
        for room in rooms:
            self._fanout.pop(room, None)
