"""
Room membership and chat fan-out.

Membership belongs to a user, not to a connection: a message reaches every
connection of every member, including the sender's other connections.  A
push is encoded once and the same bytes are written to every transport.

L{IRoomHub} is the seam for multi-process workers: this in-process hub
delivers to the connections of this process; a pub/sub hub (membership in
the store, one channel per room, each process delivering to its own
connections) implements the same interface without touching the service or
the protocol.
"""

from __future__ import annotations

from zope.interface import Interface, implementer

from protocols.nsframe import Opcode, encode_frame
from protocols.tradechat_bodies import ChatBroadcast, encode_chat_broadcast


class IPushTarget(Interface):
    """One connection that can receive pushes."""

    def deliver(data):
        """Write already-encoded frame bytes to the connection."""


class IRoomHub(Interface):
    def attach(user_id, target):
        """C{target} (an L{IPushTarget}) is a logged-in connection of C{user_id}."""

    def detach(user_id, target):
        """C{target} logged out or closed; a user with no connection left leaves every room."""

    def join(user_id, room):
        """Make C{user_id} a member of C{room}."""

    def leave(user_id, room):
        """@return: whether C{user_id} was a member of C{room}."""

    def publish(room, from_user_id, message):
        """
        Push C{message} to every connection of every member of C{room}.

        @return: how many connections it was written to (here).
        """


@implementer(IRoomHub)
class LocalRoomHub:
    def __init__(self) -> None:
        self._members: dict[int, set[int]] = {}
        self._rooms_of: dict[int, set[int]] = {}
        self._targets_of: dict[int, set] = {}
        self._fanout: dict[int, tuple] = {}

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
        rooms = self._rooms_of[user_id]
        rooms.discard(room)
        if not rooms:
            del self._rooms_of[user_id]
        self._fanout.pop(room, None)
        return True

    def members(self, room: int) -> frozenset:
        return frozenset(self._members.get(room, ()))

    def publish(self, room: int, from_user_id: int, message: bytes) -> int:
        # The fan-out list holds each target's bound deliver method, rebuilt
        # only when membership or connections change: one chat to a busy room
        # is hundreds of calls, so the loop does nothing else.
        delivers = self._fanout.get(room)
        if delivers is None:
            delivers = self._fanout[room] = tuple(
                target.deliver
                for user_id in self._members.get(room, ())
                for target in self._targets_of.get(user_id, ()))
        if not delivers:
            return 0
        data = encode_frame(Opcode.CHAT_BROADCAST, 0, 0,
                            encode_chat_broadcast(ChatBroadcast(room, from_user_id, message)))
        for deliver in delivers:
            deliver(data)
        return len(delivers)

    def _invalidate(self, rooms) -> None:
        for room in rooms:
            self._fanout.pop(room, None)
